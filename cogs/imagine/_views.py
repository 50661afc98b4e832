"""The buttons on /imagine messages: Cancel while it runs; Rerun, Same seed, Details and Delete after.

Every button is one persistent :class:`JobButton` whose ``custom_id`` holds the action and the job id
(``imagine:rerun:<job id>``). A click goes to the :data:`HANDLER_NAME` method of the cog named
:data:`COG_NAME`, which reads the job back from the journal, so the buttons work on any message,
also after a restart, without registering anything per message.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Final

import discord
from discord.ext import commands

from bot.tree import report_interaction_error

COG_NAME: Final = "Imagine"
HANDLER_NAME: Final = "on_job_button"
"""The cog's method that handles a click: ``(interaction, action, job_id)``."""


class Action(StrEnum):
    cancel = "cancel"
    rerun = "rerun"
    same_seed = "seed"
    details = "details"
    delete = "delete"


_LOOKS: Final[dict[Action, tuple[str, discord.ButtonStyle, str]]] = {
    Action.cancel: ("Cancel", discord.ButtonStyle.danger, "✖️"),
    Action.rerun: ("Rerun", discord.ButtonStyle.primary, "🔁"),
    Action.same_seed: ("Same seed", discord.ButtonStyle.secondary, "🌱"),
    Action.details: ("Details", discord.ButtonStyle.secondary, "ℹ️"),
    Action.delete: ("Delete", discord.ButtonStyle.danger, "🗑️"),
}
_ACTIONS: Final = "|".join(re.escape(action.value) for action in Action)


def custom_id(action: Action, job_id: str) -> str:
    return f"imagine:{action.value}:{job_id}"


class JobButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=rf"imagine:(?P<action>{_ACTIONS}):(?P<job_id>[0-9a-f]{{32}})",
):
    def __init__(self, action: Action, job_id: str) -> None:
        label, style, emoji = _LOOKS[action]
        super().__init__(
            discord.ui.Button(label=label, style=style, emoji=emoji, custom_id=custom_id(action, job_id))
        )
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> JobButton:
        return cls(Action(match["action"]), match["job_id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        # Dynamic items have no view of ours to route errors through: answer them here.
        try:
            client = interaction.client
            cog = client.get_cog(COG_NAME) if isinstance(client, commands.Bot) else None
            handle = getattr(cog, HANDLER_NAME, None)
            if handle is None:
                raise RuntimeError(f"no {COG_NAME} cog to handle {self.custom_id}")
            await handle(interaction, self.action, self.job_id)
        except Exception as exc:
            await report_interaction_error(interaction, exc)


def progress_view(job_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(JobButton(Action.cancel, job_id))
    return view


def result_view(job_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for action in (Action.rerun, Action.same_seed, Action.details, Action.delete):
        view.add_item(JobButton(action, job_id))
    return view
