"""The per-image buttons and selects of an /imagine result and of an upscaled image's reply (not a
cog: /imagine draws them on its results, /alchemy on the reply of an Upscale #n).

Each is persistent like :class:`cogs._jobs.JobButton`: its ``custom_id`` holds the action, the
image's number and the /imagine job's id (``image:v:2:<job id>``), so it works on any message,
also after a restart. A click reads the job back and goes to the ``on_image_action(interaction,
action, job, number)`` method of the /imagine cog (found by name: cogs don't import each other).

Layout within Discord's 5 rows of 5 (a result shows at most 10 images, one message's files):

- 1–5 images: a row ``U1 … Un`` (Upscale #n) and a row ``V1 … Vn`` (Vary, strong);
- 6–10 images: a select "Upscale image #…" and a select "Vary image #…", one row each;
- then the row for the whole result (Rerun, Same seed, Edit, Details, Delete).

An upscaled image's reply: Vary (Subtle), Vary (Strong), Zoom out 1.5×, Zoom out 2×, Details,
then Pan ⬅️ ➡️ ⬆️ ⬇️.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import StrEnum
from typing import Any, Final, Self

import discord

from bot.app import HordeBot
from bot.tree import report_interaction_error
from cogs._jobs import find_job, job_view

IMAGINE_COG: Final = "Imagine"
MAX_IMAGE_BUTTONS: Final = 5
"""Up to this many images get buttons (one row each for U and V); more get two selects."""


class ImageAction(StrEnum):
    upscale = "u"
    vary = "v"
    vary_subtle = "vs"
    zoom_1_5 = "z15"
    zoom_2 = "z2"
    pan_left = "pl"
    pan_right = "pr"
    pan_up = "pu"
    pan_down = "pd"
    details = "d"


_ACTIONS: Final = "|".join(re.escape(action.value) for action in ImageAction)
_JOB_ID: Final = r"(?P<job_id>[0-9a-f]{32})"

LOOKS: Final[dict[ImageAction, tuple[str, discord.ButtonStyle, str]]] = {
    ImageAction.upscale: ("U{n}", discord.ButtonStyle.secondary, "🔍"),
    ImageAction.vary: ("V{n}", discord.ButtonStyle.secondary, "🎨"),
    ImageAction.vary_subtle: ("Vary (Subtle)", discord.ButtonStyle.primary, "🪶"),
    ImageAction.zoom_1_5: ("Zoom out 1.5×", discord.ButtonStyle.secondary, "🔭"),
    ImageAction.zoom_2: ("Zoom out 2×", discord.ButtonStyle.secondary, "🔭"),
    ImageAction.pan_left: ("Pan", discord.ButtonStyle.secondary, "⬅️"),
    ImageAction.pan_right: ("Pan", discord.ButtonStyle.secondary, "➡️"),
    ImageAction.pan_up: ("Pan", discord.ButtonStyle.secondary, "⬆️"),
    ImageAction.pan_down: ("Pan", discord.ButtonStyle.secondary, "⬇️"),
    ImageAction.details: ("Details", discord.ButtonStyle.secondary, "ℹ️"),
}
UPSCALED_VARY_STRONG: Final = ("Vary (Strong)", discord.ButtonStyle.primary, "🎨")
"""The V action on an upscaled image's reply, where it sits beside Vary (Subtle)."""


async def _dispatch(
    interaction: discord.Interaction[Any], action: ImageAction, job_id: str, number: int
) -> None:
    # Dynamic items have no view of ours to route errors through: answer them here.
    try:
        bot = interaction.client
        if not isinstance(bot, HordeBot):
            raise RuntimeError("no HordeBot to handle an image action")
        job = await find_job(bot, job_id, "image")
        handle = getattr(bot.get_cog(IMAGINE_COG), "on_image_action", None)
        if handle is None:
            raise RuntimeError(f"no {IMAGINE_COG} cog to handle an image action")
        await handle(interaction, action, job, number)
    except Exception as exc:
        await report_interaction_error(interaction, exc)


class ImageActionButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=rf"image:(?P<action>{_ACTIONS}):(?P<number>[0-9]{{1,2}}):{_JOB_ID}",
):
    """One action on image ``number`` of /imagine job ``job_id``."""

    def __init__(self, action: ImageAction, number: int, job_id: str, *, row: int | None = None) -> None:
        label, style, emoji = LOOKS[action]
        super().__init__(
            discord.ui.Button(
                label=label.format(n=number),
                style=style,
                emoji=emoji,
                custom_id=f"image:{action.value}:{number}:{job_id}",
                row=row,
            )
        )
        self.action, self.number, self.job_id = action, number, job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> Self:
        return cls(ImageAction(match["action"]), int(match["number"]), match["job_id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _dispatch(interaction, self.action, self.job_id, self.number)


class ImagePick(
    discord.ui.DynamicItem[discord.ui.Select[discord.ui.View]],
    template=rf"image-pick:(?P<action>[uv]):(?P<count>[0-9]{{1,2}}):{_JOB_ID}",
):
    """Upscale or Vary on a result with more images than buttons: pick the image."""

    def __init__(
        self, action: ImageAction, numbers: Sequence[int], job_id: str, *, row: int | None = None
    ) -> None:
        verb = "Upscale" if action is ImageAction.upscale else "Vary"
        super().__init__(
            discord.ui.Select(
                custom_id=f"image-pick:{action.value}:{len(numbers)}:{job_id}",
                placeholder=f"{verb} image #…",
                options=[
                    discord.SelectOption(label=f"{verb} image #{number}", value=str(number))
                    for number in numbers[:25]
                ],
                row=row,
            )
        )
        self.action, self.job_id = action, job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> Self:
        # The options themselves come back with the click: only the count is needed to rebuild.
        return cls(ImageAction(match["action"]), range(1, int(match["count"]) + 1), match["job_id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        data: Any = interaction.data or {}
        values = data.get("values") or []
        number = int(values[0]) if values and str(values[0]).isdigit() else 0
        await _dispatch(interaction, self.action, self.job_id, number)


DYNAMIC_ITEMS: Final = (ImageActionButton, ImagePick)


def image_rows(job_id: str, numbers: Sequence[int]) -> Sequence[discord.ui.Item[Any]]:
    """Rows 0 and 1 of a result with images ``numbers`` (1-based): U and V for each."""
    if not numbers:
        return []
    if len(numbers) <= MAX_IMAGE_BUTTONS:
        return [ImageActionButton(ImageAction.upscale, n, job_id, row=0) for n in numbers] + [
            ImageActionButton(ImageAction.vary, n, job_id, row=1) for n in numbers
        ]
    return [
        ImagePick(ImageAction.upscale, numbers, job_id, row=0),
        ImagePick(ImageAction.vary, numbers, job_id, row=1),
    ]


UPSCALED_ACTIONS: Final = (
    (
        ImageAction.vary_subtle,
        ImageAction.vary,
        ImageAction.zoom_1_5,
        ImageAction.zoom_2,
        ImageAction.details,
    ),
    (ImageAction.pan_left, ImageAction.pan_right, ImageAction.pan_up, ImageAction.pan_down),
)


def upscaled_view(job_id: str, number: int) -> discord.ui.View:
    """The buttons of the reply to Upscale #``number`` of /imagine job ``job_id``."""
    buttons: list[discord.ui.Item[Any]] = []
    for row, actions in enumerate(UPSCALED_ACTIONS):
        for action in actions:
            button = ImageActionButton(action, number, job_id, row=row)
            if action is ImageAction.vary:
                label, style, emoji = UPSCALED_VARY_STRONG
                button.item.label, button.item.style, button.item.emoji = label, style, emoji
            buttons.append(button)
    return job_view(*buttons)
