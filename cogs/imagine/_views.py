"""The buttons on /imagine messages: Cancel while it runs; after, a row of Upscale (U1 …) and a
row of Vary (V1 …) for its images (:mod:`cogs._image_actions`) and a row for the whole result
(Rerun, Same seed, Edit, Details, Delete); the Edit modal, and the Upscale image picker of results
posted before the per-image buttons.

Every whole-result button is one persistent :class:`ImagineButton` (``imagine:rerun:<job id>``; see
:class:`cogs._jobs.JobButton`): Cancel is handled there, the rest by the ``Imagine`` cog.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from enum import StrEnum
from typing import Any, ClassVar, Final

import discord

from bot.storage import JobKind
from bot.tree import report_interaction_error
from cogs._image_actions import IMAGINE_COG, image_rows
from cogs._jobs import CANCEL, CANCEL_LOOK, JobButton, job_view

COG_NAME: Final = IMAGINE_COG


class Action(StrEnum):
    cancel = CANCEL
    rerun = "rerun"
    same_seed = "seed"
    edit = "edit"
    upscale = "upscale"
    """Only on results posted before the per-image buttons (U1 …): still answered."""
    details = "details"
    delete = "delete"


_ACTIONS: Final = "|".join(re.escape(action.value) for action in Action)


class ImagineButton(JobButton, template=rf"imagine:(?P<action>{_ACTIONS}):(?P<job_id>[0-9a-f]{{32}})"):
    prefix: ClassVar[str] = "imagine"
    kind: ClassVar[JobKind] = "image"
    cog_name: ClassVar[str] = COG_NAME
    looks: ClassVar[dict[str, tuple[str, discord.ButtonStyle, str]]] = {
        Action.cancel: CANCEL_LOOK,
        Action.rerun: ("Rerun", discord.ButtonStyle.primary, "🔁"),
        Action.same_seed: ("Same seed", discord.ButtonStyle.secondary, "🌱"),
        Action.edit: ("Edit", discord.ButtonStyle.secondary, "✏️"),
        Action.upscale: ("Upscale", discord.ButtonStyle.secondary, "🔍"),
        Action.details: ("Details", discord.ButtonStyle.secondary, "ℹ️"),
        Action.delete: ("Delete", discord.ButtonStyle.danger, "🗑️"),
    }


class ImagineViews:
    """The buttons of an /imagine message (a :class:`~bot.services.delivery.listener.JobViews`)."""

    def progress(self, job_id: str) -> discord.ui.View:
        return job_view(ImagineButton(Action.cancel, job_id))

    def result(self, job_id: str, *, private: bool = False, images: Sequence[int] = ()) -> discord.ui.View:
        """U and V for each of ``images`` (their 1-based numbers), then the whole result's row. A
        ``private`` (ephemeral) reply has no Delete: the channel endpoint can't delete it, and
        Discord lets its member dismiss it."""
        actions = [Action.rerun, Action.same_seed, Action.edit, Action.details]
        if not private:
            actions.append(Action.delete)
        whole = []
        for action in actions:
            button = ImagineButton(action, job_id)
            button.row = 2
            whole.append(button)
        return job_view(*image_rows(job_id, images), *whole)


VIEWS: Final = ImagineViews()


PROMPT_INPUT_ID: Final = "prompt"
NEGATIVE_INPUT_ID: Final = "negative_prompt"
UPSCALE_SELECT_ID: Final = "imagine:upscale-pick"
PICKER_TIMEOUT_S: Final = 300.0
MAX_PROMPT_INPUT: Final = 4000
"""Discord's longest modal text input."""

EditHandler = Callable[[discord.Interaction[Any], str, str], Awaitable[None]]
"""Called with the submitted prompt and negative prompt."""
PickHandler = Callable[[discord.Interaction[Any], discord.Attachment], Awaitable[None]]


class EditModal(discord.ui.Modal, title="Edit and rerun"):
    prompt: discord.ui.TextInput[EditModal] = discord.ui.TextInput(
        label="Prompt",
        style=discord.TextStyle.paragraph,
        custom_id=PROMPT_INPUT_ID,
        max_length=MAX_PROMPT_INPUT,
    )
    negative_prompt: discord.ui.TextInput[EditModal] = discord.ui.TextInput(
        label="Negative prompt",
        style=discord.TextStyle.paragraph,
        custom_id=NEGATIVE_INPUT_ID,
        required=False,
        max_length=MAX_PROMPT_INPUT,
    )

    def __init__(self, prompt: str, negative_prompt: str, on_submit: EditHandler) -> None:
        super().__init__()
        self.prompt.default = prompt[:MAX_PROMPT_INPUT]
        self.negative_prompt.default = negative_prompt[:MAX_PROMPT_INPUT] or None
        self._handler = on_submit

    async def on_submit(self, interaction: discord.Interaction, /) -> None:
        await self._handler(interaction, self.prompt.value, self.negative_prompt.value)

    # discord.py's Modal.on_error drops BaseView's `item` argument; mypy sees the base signature.
    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:  # type: ignore[override]
        await report_interaction_error(interaction, error)


class UpscalePicker(discord.ui.View):
    """A private select of a result's images; choosing one upscales it."""

    def __init__(self, images: Sequence[discord.Attachment], on_pick: PickHandler) -> None:
        super().__init__(timeout=PICKER_TIMEOUT_S)
        self._images = list(images)
        self._handler = on_pick
        select: discord.ui.Select[UpscalePicker] = discord.ui.Select(
            custom_id=UPSCALE_SELECT_ID,
            placeholder="Choose the image to upscale",
            options=[
                discord.SelectOption(
                    label=f"Image {index + 1}", value=str(index), description=image.filename[:100]
                )
                for index, image in enumerate(self._images[:25])
            ],
        )
        select.callback = self._picked  # type: ignore[method-assign]
        self._select = select
        self.add_item(select)

    async def _picked(self, interaction: discord.Interaction[Any]) -> None:
        await self._handler(interaction, self._images[int(self._select.values[0])])

    async def on_error(
        self, interaction: discord.Interaction[Any], error: Exception, item: discord.ui.Item[Any], /
    ) -> None:
        await report_interaction_error(interaction, error)
