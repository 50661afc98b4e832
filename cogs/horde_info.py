"""/horde status, /models and /styles: what the AI Horde is doing right now."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import HordeBot
from bot.errors import HordeUnavailableError
from bot.horde import ActiveModel, AIHordeRequestError
from bot.horde.consts import MODEL_TYPE
from bot.services.formatting import format_duration
from bot.services.horde_info import (
    HordeStatus,
    ModelSort,
    fetch_models,
    fetch_styles,
    horde_status,
    models_page,
)
from bot.tree import report_interaction_error

PAGER_TIMEOUT_S: Final = 600.0
NO_MODELS: Final = "No worker serves a model of this kind right now."
NO_STYLES: Final = "The AI Horde has no public styles on this page."


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def status_embed(status: HordeStatus) -> discord.Embed:
    heartbeat, performance = status.heartbeat, status.performance
    healthy = status.healthy
    embed = discord.Embed(
        title="AI Horde status",
        description=f"{'🟢' if healthy else '🔴'} **{discord.utils.escape_markdown(heartbeat.message)}** "
        f"· version {discord.utils.escape_markdown(heartbeat.version)}",
        colour=discord.Colour.green() if healthy else discord.Colour.red(),
    )
    embed.add_field(
        name="Images",
        value=f"{_number(performance.queued_requests)} queued requests\n"
        f"{_number(performance.worker_count)} workers · {_number(performance.thread_count)} threads",
    )
    embed.add_field(
        name="Text",
        value=f"{_number(performance.queued_text_requests)} queued requests\n"
        f"{_number(performance.text_worker_count)} workers · "
        f"{_number(performance.text_thread_count)} threads",
    )
    embed.add_field(
        name="Alchemy",
        value=f"{_number(performance.queued_forms)} queued forms\n"
        f"{_number(performance.interrogator_count)} workers · "
        f"{_number(performance.interrogator_thread_count)} threads",
    )
    return embed


class ModelsPager(discord.ui.View):
    """Pages through a snapshot of the models; only the member who asked can turn the pages."""

    def __init__(
        self, models: Sequence[ActiveModel], type_: MODEL_TYPE, sort: ModelSort, owner_id: int
    ) -> None:
        super().__init__(timeout=PAGER_TIMEOUT_S)
        self.models = tuple(models)
        self.type_ = type_
        self.sort = sort
        self.page = 0
        self.owner_id = owner_id
        self._sync()

    def embed(self) -> discord.Embed:
        page = models_page(self.models, sort=self.sort, page=self.page)
        lines = [
            f"**{discord.utils.escape_markdown(model.name)}** — {model.count or 0} workers · "
            f"{_number(model.queued)} queued · ETA {format_duration(model.eta or 0)}"
            for model in page.models
        ]
        embed = discord.Embed(
            title=f"{self.type_.value.capitalize()} models by {self.sort.value}",
            description="\n".join(lines) or NO_MODELS,
            colour=discord.Colour.blurple(),
        )
        embed.set_footer(text=f"Page {page.page + 1}/{page.pages} · {page.total} models")
        return embed

    def _sync(self) -> None:
        page = models_page(self.models, sort=self.sort, page=self.page)
        self.page = page.page
        self.previous.disabled = not page.has_previous
        self.next.disabled = not page.has_next
        self.by_workers.disabled = self.sort is ModelSort.workers
        self.by_queue.disabled = self.sort is ModelSort.queue

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        if interaction.user.id != self.owner_id:
            await interaction.response.send_message(
                "Run /models to page through your own list.", ephemeral=True
            )
            return False
        return True

    async def _show(self, interaction: discord.Interaction[Any]) -> None:
        self._sync()
        await interaction.response.edit_message(embed=self.embed(), view=self)

    @discord.ui.button(label="Previous", emoji="◀️", custom_id="models:previous")
    async def previous(self, interaction: discord.Interaction[Any], button: discord.ui.Button[Any]) -> None:
        self.page -= 1
        await self._show(interaction)

    @discord.ui.button(label="Next", emoji="▶️", custom_id="models:next")
    async def next(self, interaction: discord.Interaction[Any], button: discord.ui.Button[Any]) -> None:
        self.page += 1
        await self._show(interaction)

    @discord.ui.button(label="By workers", custom_id="models:sort:workers")
    async def by_workers(self, interaction: discord.Interaction[Any], button: discord.ui.Button[Any]) -> None:
        self.sort, self.page = ModelSort.workers, 0
        await self._show(interaction)

    @discord.ui.button(label="By queue", custom_id="models:sort:queue")
    async def by_queue(self, interaction: discord.Interaction[Any], button: discord.ui.Button[Any]) -> None:
        self.sort, self.page = ModelSort.queue, 0
        await self._show(interaction)

    async def on_error(
        self, interaction: discord.Interaction[Any], error: Exception, item: discord.ui.Item[Any]
    ) -> None:
        await report_interaction_error(interaction, error)


_TYPES: Final = [app_commands.Choice(name=kind.value, value=kind.value) for kind in MODEL_TYPE]


class HordeInfo(commands.Cog, name="HordeInfo"):
    horde = app_commands.Group(name="horde", description="The AI Horde itself.")

    def __init__(self, bot: HordeBot) -> None:
        self.bot = bot

    @horde.command(name="status", description="Is the AI Horde up, and how busy is it?")
    async def status(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            status = await horde_status(self.bot.horde)
        except* AIHordeRequestError:
            raise HordeUnavailableError() from None
        await interaction.followup.send(embed=status_embed(status), ephemeral=True)

    @app_commands.command(description="The models workers serve now, with their queues.")
    @app_commands.rename(kind="type")
    @app_commands.describe(kind="Image or text models.", sort="Most workers first, or longest queue first.")
    @app_commands.choices(
        kind=_TYPES, sort=[app_commands.Choice(name=s.value, value=s.value) for s in ModelSort]
    )
    async def models(
        self, interaction: discord.Interaction[Any], kind: str = "image", sort: str = "workers"
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            models = await fetch_models(self.bot.horde, MODEL_TYPE(kind))
        except AIHordeRequestError:
            raise HordeUnavailableError() from None
        pager = ModelsPager(models, MODEL_TYPE(kind), ModelSort(sort), interaction.user.id)
        await interaction.followup.send(embed=pager.embed(), view=pager, ephemeral=True)

    @app_commands.command(description="Public styles on the AI Horde, most used first.")
    @app_commands.rename(kind="type")
    @app_commands.describe(kind="Image or text styles.", page="Which page (25 styles each).")
    @app_commands.choices(kind=_TYPES)
    async def styles(
        self,
        interaction: discord.Interaction[Any],
        kind: str = "image",
        page: app_commands.Range[int, 1, 1000] = 1,
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            styles = await fetch_styles(self.bot.horde, MODEL_TYPE(kind), page=page)
        except AIHordeRequestError:
            raise HordeUnavailableError() from None
        lines = [
            f"**{discord.utils.escape_markdown(style.name)}** · used {style.use_count or 0}×"
            + (f" · {discord.utils.escape_markdown(', '.join(style.models[:3]))}" if style.models else "")
            for style in styles
        ]
        embed = discord.Embed(
            title=f"{kind.capitalize()} styles, page {page}",
            description="\n".join(lines)[:4096] or NO_STYLES,
            colour=discord.Colour.blurple(),
        )
        embed.set_footer(text="Use a style's name in the style option of a generation.")
        await interaction.followup.send(
            embed=embed, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
        )


async def setup(bot: commands.Bot) -> None:
    if not isinstance(bot, HordeBot):
        raise TypeError("cogs.horde_info needs a HordeBot")
    await bot.add_cog(HordeInfo(bot))
