"""/horde status, modes and news, /models and /styles: what the AI Horde is doing right now."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import HordeBot
from bot.errors import HordeUnavailableError
from bot.horde import ActiveModel, AIHordeRequestError, HordeModesResponse, Newspiece
from bot.horde.consts import MODEL_TYPE
from bot.services.formatting import clip, format_duration, format_number
from bot.services.horde_info import (
    HordeStatus,
    ModelSort,
    fetch_models,
    fetch_news,
    fetch_styles,
    horde_modes,
    horde_status,
    models_page,
)
from bot.services.paging import Page, paginate
from cogs.pager import NO_MENTIONS, Pager, page_footer

NO_MODELS: Final = "No worker serves a model of this kind right now."
NO_STYLES: Final = "The AI Horde has no public styles on this page."
NO_NEWS: Final = "The AI Horde has no news."
NEWS_PER_PAGE: Final = 4
NEWS_TITLE_CHARS: Final = 256
NEWS_TEXT_CHARS: Final = 900
"""Four pieces of 256 + 900 characters and the footer stay within an embed's 6,000."""
MODE_ON: Final = "🟠 On"
MODE_OFF: Final = "🟢 Off"
MODE_UNKNOWN: Final = "❔ Not reported"


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
        value=f"{format_number(performance.queued_requests)} queued requests\n"
        f"{format_number(performance.worker_count)} workers · "
        f"{format_number(performance.thread_count)} threads",
    )
    embed.add_field(
        name="Text",
        value=f"{format_number(performance.queued_text_requests)} queued requests\n"
        f"{format_number(performance.text_worker_count)} workers · "
        f"{format_number(performance.text_thread_count)} threads",
    )
    embed.add_field(
        name="Alchemy",
        value=f"{format_number(performance.queued_forms)} queued forms\n"
        f"{format_number(performance.interrogator_count)} workers · "
        f"{format_number(performance.interrogator_thread_count)} threads",
    )
    return embed


def modes_embed(modes: HordeModesResponse) -> discord.Embed:
    embed = discord.Embed(
        title="AI Horde modes",
        colour=discord.Colour.orange() if modes.maintenance_mode else discord.Colour.green(),
    )
    embed.add_field(
        name="Maintenance",
        value=_mode(
            modes.maintenance_mode,
            on="the AI Horde takes no new generations; the ones queued still finish.",
            off="new generations are accepted.",
        ),
        inline=False,
    )
    embed.add_field(
        name="Invite-only",
        value=_mode(
            modes.invite_only_mode,
            on="only workers the AI Horde's team invited may join.",
            off="anyone may run a worker.",
        ),
        inline=False,
    )
    return embed


def _mode(state: bool | None, *, on: str, off: str) -> str:
    if state is None:
        return MODE_UNKNOWN
    return f"{MODE_ON} — {on}" if state else f"{MODE_OFF} — {off}"


class NewsPager(Pager):
    """The Horde's news, newest first, a few pieces a page. Their markdown (links) is the Horde's
    own and shown as written; mentions are never sent."""

    def __init__(self, news: Sequence[Newspiece], owner_id: int) -> None:
        super().__init__(owner_id, command="/horde news")
        self.news = tuple(news)

    def _page(self) -> Page[Newspiece]:
        return paginate(self.news, page=self.page, page_size=NEWS_PER_PAGE)

    def page_count(self) -> int:
        return self._page().pages

    def embed(self) -> discord.Embed:
        page = self._page()
        embed = discord.Embed(
            title="AI Horde news",
            colour=discord.Colour.blurple(),
            description=None if page.items else NO_NEWS,
        )
        for piece in page.items:
            heading = " · ".join(part for part in (piece.date_published, piece.importance) if part)
            title = piece.title or "News"
            embed.add_field(
                name=clip(f"{title} ({heading})" if heading else title, NEWS_TITLE_CHARS),
                value=clip(piece.newspiece or "—", NEWS_TEXT_CHARS),
                inline=False,
            )
        embed.set_footer(text=page_footer(page.page, page.pages, page.total, "news item"))
        return embed


class ModelsPager(Pager):
    """Pages through a snapshot of the models, by workers or by queue."""

    def __init__(
        self, models: Sequence[ActiveModel], type_: MODEL_TYPE, sort: ModelSort, owner_id: int
    ) -> None:
        super().__init__(owner_id, command="/models")
        self.models = tuple(models)
        self.type_ = type_
        self.sort = sort

    def _page(self) -> Page[ActiveModel]:
        return models_page(self.models, sort=self.sort, page=self.page)

    def page_count(self) -> int:
        return self._page().pages

    def has_controls(self) -> bool:
        return True  # the sort buttons are useful on one page too

    def embed(self) -> discord.Embed:
        page = self._page()
        lines = [
            f"**{discord.utils.escape_markdown(model.name)}** — {model.count or 0} workers · "
            f"{format_number(model.queued)} queued · ETA {format_duration(model.eta or 0)}"
            for model in page.items
        ]
        embed = discord.Embed(
            title=f"{self.type_.value.capitalize()} models by {self.sort.value}",
            description="\n".join(lines) or NO_MODELS,
            colour=discord.Colour.blurple(),
        )
        embed.set_footer(text=page_footer(page.page, page.pages, page.total, "model"))
        return embed

    def sync(self) -> None:
        super().sync()
        self.by_workers.disabled = self.sort is ModelSort.workers
        self.by_queue.disabled = self.sort is ModelSort.queue

    @discord.ui.button(label="By workers")
    async def by_workers(self, interaction: discord.Interaction[Any], button: discord.ui.Button[Any]) -> None:
        self.sort, self.page = ModelSort.workers, 0
        await self.show(interaction)

    @discord.ui.button(label="By queue")
    async def by_queue(self, interaction: discord.Interaction[Any], button: discord.ui.Button[Any]) -> None:
        self.sort, self.page = ModelSort.queue, 0
        await self.show(interaction)


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

    @horde.command(name="modes", description="Is the AI Horde in maintenance, or invite-only?")
    async def modes(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            modes = await horde_modes(self.bot.horde)
        except AIHordeRequestError:
            raise HordeUnavailableError() from None
        await interaction.followup.send(embed=modes_embed(modes), ephemeral=True)

    @horde.command(name="news", description="The AI Horde's news, newest first.")
    async def news(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            news = await fetch_news(self.bot.horde)
        except AIHordeRequestError:
            raise HordeUnavailableError() from None
        await NewsPager(news, interaction.user.id).send(interaction)

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
        await ModelsPager(models, MODEL_TYPE(kind), ModelSort(sort), interaction.user.id).send(interaction)

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
        await interaction.followup.send(embed=embed, ephemeral=True, allowed_mentions=NO_MENTIONS)


async def setup(bot: commands.Bot) -> None:
    if not isinstance(bot, HordeBot):
        raise TypeError("cogs.horde_info needs a HordeBot")
    await bot.add_cog(HordeInfo(bot))
