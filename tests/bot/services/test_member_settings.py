"""A member's /settings: precedence (option > member > server), what the server's limits refuse,
validation, and a document that can't be read any more."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import GenerationDefaults
from bot.errors import UserInputError
from bot.services.image.aspect import AspectPreset
from bot.services.image.request import ImagineOptions
from bot.services.member_settings import MemberSettings, MemberSettingsService, conflicts, imagine_options
from bot.services.settings.config import build_config
from bot.storage import open_storage

SERVER = build_config(None, GenerationDefaults(), {"max_steps": "40", "negative_prompt": "lowres"})


def test_an_option_given_beats_the_members_default_which_beats_the_servers() -> None:
    member = MemberSettings(steps=20, n=2, negative_prompt="blur", aspect=AspectPreset.wide)

    given = imagine_options(
        ImagineOptions(prompt="a fox", steps=10, width=512, height=512), member, SERVER, style_given=False
    )
    defaulted = imagine_options(ImagineOptions(prompt="a fox"), member, SERVER, style_given=False)
    plain = imagine_options(ImagineOptions(prompt="a fox"), MemberSettings(), SERVER, style_given=False)

    assert (given.steps, given.n, given.aspect, given.width) == (10, 2, None, 512)
    assert (defaulted.steps, defaulted.aspect, defaulted.negative_prompt) == (
        20,
        AspectPreset.wide,
        "lowres, blur",
    )
    assert (plain.steps, plain.n, plain.negative_prompt) == (None, None, "lowres")  # build_request fills them


def test_only_the_defaults_a_command_takes_are_checked_against_the_server() -> None:
    member = MemberSettings(steps=50)

    with pytest.raises(UserInputError) as refused:
        imagine_options(ImagineOptions(prompt="a fox"), member, SERVER, style_given=False)
    assert "Your default of 50 steps is above this server's 40." in refused.value.user_message
    assert (
        imagine_options(ImagineOptions(prompt="a fox", steps=30), member, SERVER, style_given=False).steps
        == 30
    )


def test_a_blocked_default_style_is_refused_only_when_the_command_gives_none() -> None:
    strict = build_config(None, GenerationDefaults(), {"blocked_styles": "gloomy"})
    member = MemberSettings(style="Gloomy")

    with pytest.raises(UserInputError) as refused:
        imagine_options(ImagineOptions(prompt="a fox"), member, strict, style_given=False)
    assert "Your default style “Gloomy” isn't allowed on this server." in refused.value.user_message
    assert imagine_options(ImagineOptions(prompt="a fox"), member, strict, style_given=True).prompt == "a fox"


def test_conflicts_name_the_model_count_and_size_a_server_refuses() -> None:
    strict = build_config(
        None, GenerationDefaults(), {"allowed_models": "stable_diffusion", "max_pixels": "262144"}
    )
    member = MemberSettings(model="Deliberate", n=9, width=1024, height=1024)

    assert conflicts(member, strict) == [
        "Your default model “Deliberate” isn't allowed on this server.",
        "Your default count of 9 is above this server's 4.",
        "Your default size 1024×1024 is above this server's 262,144 pixels.",
    ]


@pytest.mark.parametrize(
    "changes", [{"steps": 0}, {"n": 21}, {"width": 100, "height": 512}, {"width": 512}, {"model": "x" * 101}]
)
def test_invalid_defaults_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(UserInputError) as refused:
        MemberSettings().changed(**changes)
    assert refused.value.user_message.startswith("That isn't a valid default: ")


async def test_saving_the_defaults_deletes_the_row_and_an_unreadable_one_reads_as_defaults(
    tmp_path: Path,
) -> None:
    async with open_storage(f"sqlite:///{tmp_path / 'bot.sqlite3'}") as storage:
        service = MemberSettingsService(storage)
        await service.save(1, MemberSettings(steps=12))
        assert await storage.member_settings.get(1) == '{"steps":12}'

        await service.save(1, MemberSettings())
        assert await storage.member_settings.get(1) is None

        await storage.member_settings.set(2, '{"steps": "many"}')
        assert await service.get(2) == MemberSettings()
