"""Previous / Next buttons that page through a list the bot fetched once (models, workers, news…).

A :class:`Pager` holds a snapshot, so turning pages never asks the Horde again, and only the
member who asked can turn them. A list that fits on one page is sent without buttons. Pages show
text others chose (worker names, the Horde's news): each goes through ``fit_embed`` as well.
"""

from __future__ import annotations

from typing import Any, Final

import discord

from bot.services.delivery.limits import fit_embed
from bot.services.formatting import plural
from bot.tree import report_interaction_error

PAGER_TIMEOUT_S: Final = 600.0
NO_MENTIONS: Final = discord.AllowedMentions.none()


class Pager(discord.ui.View):
    """Subclasses say how many pages there are and draw the current one (``self.page``, zero-based)."""

    def __init__(self, owner_id: int, *, command: str) -> None:
        super().__init__(timeout=PAGER_TIMEOUT_S)
        self.owner_id = owner_id
        self.command = command
        """The command to name to a member who clicks someone else's pager."""
        self.page = 0

    def page_count(self) -> int:
        raise NotImplementedError

    def embed(self) -> discord.Embed:
        raise NotImplementedError

    def has_controls(self) -> bool:
        """Whether to send the buttons at all."""
        return self.page_count() > 1

    def page_embed(self) -> discord.Embed:
        return fit_embed(self.embed())

    def sync(self) -> None:
        """Clamp the page and enable the buttons that lead somewhere."""
        self.page = min(max(0, self.page), self.page_count() - 1)
        self.previous.disabled = self.page == 0
        self.next.disabled = self.page + 1 >= self.page_count()

    async def send(self, interaction: discord.Interaction[Any]) -> None:
        """The first page, as the private answer to a deferred ``interaction``."""
        self.sync()
        if self.has_controls():
            await interaction.followup.send(
                embed=self.page_embed(), view=self, ephemeral=True, allowed_mentions=NO_MENTIONS
            )
        else:
            self.stop()
            await interaction.followup.send(
                embed=self.page_embed(), ephemeral=True, allowed_mentions=NO_MENTIONS
            )

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        if interaction.user.id != self.owner_id:
            await interaction.response.send_message(
                f"Run {self.command} to page through your own list.", ephemeral=True
            )
            return False
        return True

    async def show(self, interaction: discord.Interaction[Any]) -> None:
        self.sync()
        await interaction.response.edit_message(
            embed=self.page_embed(), view=self, allowed_mentions=NO_MENTIONS
        )

    @discord.ui.button(label="Previous", emoji="◀️")
    async def previous(self, interaction: discord.Interaction[Any], button: discord.ui.Button[Any]) -> None:
        self.page -= 1
        await self.show(interaction)

    @discord.ui.button(label="Next", emoji="▶️")
    async def next(self, interaction: discord.Interaction[Any], button: discord.ui.Button[Any]) -> None:
        self.page += 1
        await self.show(interaction)

    async def on_error(
        self, interaction: discord.Interaction[Any], error: Exception, item: discord.ui.Item[Any]
    ) -> None:
        await report_interaction_error(interaction, error)


def page_footer(page: int, pages: int, total: int, noun: str) -> str:
    """``Page 2/5 · 43 workers`` (``noun`` in the singular)."""
    return f"Page {page + 1}/{pages} · {plural(total, noun)}"
