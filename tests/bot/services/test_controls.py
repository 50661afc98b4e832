"""The one list of buttons and reactions (/help, Details, README) against what the bot draws and
does: a button or reaction added, renamed or given another emoji must be documented."""

from __future__ import annotations

import discord

from bot.config import GenerationDefaults
from bot.services.controls import (
    BUTTONS,
    IMAGE_BUTTONS,
    RESULT_BUTTONS,
    UPSCALED_BUTTONS,
    details_legend,
    reactions,
)
from bot.services.image.reactions import ReactionAction, action_for
from bot.services.settings.config import build_config
from cogs._image_actions import upscaled_view
from cogs.alchemy import AlchemyButton
from cogs.imagine import _views as imagine_views
from cogs.write import WriteButton

JOB_ID = "0" * 32


def _looks(item: discord.ui.Item[discord.ui.View]) -> tuple[str, str]:
    button = item.item if isinstance(item, discord.ui.DynamicItem) else item
    assert isinstance(button, discord.ui.Button)
    return (str(button.emoji), button.label or "")


def test_every_button_the_bot_draws_is_documented() -> None:
    documented = {(control.emoji, control.name) for control in BUTTONS}
    drawn = {(emoji, label) for label, _, emoji in imagine_views.ImagineButton.looks.values()}
    drawn |= {(emoji, label) for label, _, emoji in WriteButton.looks.values()}
    drawn |= {(emoji, label) for label, _, emoji in AlchemyButton.looks.values()}
    drawn |= {_looks(item) for item in imagine_views.VIEWS.result(JOB_ID, images=[1]).children}
    drawn |= {_looks(item) for item in upscaled_view(JOB_ID, 1).children}

    assert drawn == documented


def test_the_result_buttons_are_those_under_a_result_in_their_order() -> None:
    view = imagine_views.VIEWS.result(JOB_ID, images=[1])
    shown = [_looks(item) for item in view.children]

    assert shown == [(control.emoji, control.name) for control in IMAGE_BUTTONS + RESULT_BUTTONS]


def test_four_images_have_a_row_of_upscale_and_a_row_of_vary_then_the_result_row() -> None:
    view = imagine_views.VIEWS.result(JOB_ID, images=[1, 2, 3, 4])
    rows: dict[int, list[str]] = {}
    for item in view.children:
        rows.setdefault(item.row or 0, []).append(_looks(item)[1])

    assert rows == {
        0: ["U1", "U2", "U3", "U4"],
        1: ["V1", "V2", "V3", "V4"],
        2: [control.name for control in RESULT_BUTTONS],
    }
    custom_ids = [getattr(item, "custom_id", None) for item in view.children]
    assert custom_ids[:2] == [f"image:u:1:{JOB_ID}", f"image:u:2:{JOB_ID}"]
    assert custom_ids[4] == f"image:v:1:{JOB_ID}"


def test_more_than_five_images_get_two_selects_listing_every_image() -> None:
    view = imagine_views.VIEWS.result(JOB_ID, images=list(range(1, 11)))
    selects = [
        item.item
        for item in view.children
        if isinstance(item.item if isinstance(item, discord.ui.DynamicItem) else item, discord.ui.Select)
    ]

    assert [select.placeholder for select in selects] == ["Upscale image #…", "Vary image #…"]
    assert [option.value for option in selects[0].options] == [str(n) for n in range(1, 11)]
    assert len(view.children) == 2 + len(RESULT_BUTTONS)


def test_an_upscaled_image_has_vary_zoom_out_pan_and_details_in_two_rows() -> None:
    view = upscaled_view(JOB_ID, 3)

    assert [_looks(item) for item in view.children] == [
        (control.emoji, control.name) for control in UPSCALED_BUTTONS
    ]
    assert {getattr(item, "custom_id", "").split(":")[2] for item in view.children} == {"3"}
    assert max(item.row or 0 for item in view.children) == 1


def test_every_documented_reaction_does_what_it_says() -> None:
    everything_on = build_config(
        None, GenerationDefaults(), {"kudos_reactions": "on", "rerun_emoji": "🔄", "kudos_emoji": "💖"}
    )
    expected = {
        "Same seed": ReactionAction.rerun,
        "New seed": ReactionAction.new_seed,
        "Delete": ReactionAction.delete,
        "Gift kudos": ReactionAction.gift,
    }
    documented = reactions(everything_on)

    assert {control.name: action_for(control.emoji, everything_on) for control in documented} == expected
    assert [control.emoji for control in documented] == ["🔄", "🎲", "❌", "💖"]


def test_reactions_a_server_switched_off_are_not_offered() -> None:
    quiet = build_config(None, GenerationDefaults(), {"rerun_reactions": "off"})

    assert [control.name for control in reactions(quiet)] == ["Delete"]  # gifting is off by default
    assert all(action_for(control.emoji, quiet) is not None for control in reactions(quiet))


def test_the_defaults_name_every_reaction_and_say_gifting_needs_the_server() -> None:
    names = [control.name for control in reactions(None)]

    assert names == ["Same seed", "New seed", "Delete", "Gift kudos"]
    assert "where the server turned it on" in reactions(None)[-1].does


def test_the_details_legend_names_the_result_buttons_and_the_default_reactions() -> None:
    assert details_legend() == (
        "Buttons: 🔍 U1 · 🎨 V1 · 🔁 Rerun · 🌱 Same seed · ✏️ Edit · ℹ️ Details · 🗑️ Delete\n"
        "Reactions: 🔁 same seed · 🎲 new seed · ❌ delete · ⭐ gift kudos "
        "(defaults; /help shows this server's)"
    )
