"""/workers and /team: who does the AI Horde's work, and how (every reply is private).

Names, infos and model names are chosen by the workers' owners: markdown in them is escaped, and
nothing is sent with mentions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

import discord
from discord import app_commands
from discord.ext import commands

from bot.app import HordeBot
from bot.errors import HordeUnavailableError
from bot.horde import AIHordeRequestError, TeamDetailsResponse, WorkerDetailsResponse
from bot.horde.consts import WORKER_TYPE
from bot.services.formatting import UNKNOWN, format_kudos, format_number, format_uptime, plain_line, plural
from bot.services.horde_workers import (
    KIND_NAMES,
    MAX_NAME_LENGTH,
    WorkerSearch,
    find_team,
    find_workers,
    kind_label,
    list_teams,
)
from bot.services.paging import paginate
from cogs.pager import Pager, page_footer

WORKERS_PER_PAGE: Final = 10
TEAMS_PER_PAGE: Final = 10
NAMES_PER_PAGE: Final = 20
"""Models or workers in one field: 20 names of at most 45 characters stay within 1,024."""
NAME_CHARS: Final = 45
INFO_CHARS: Final = 500
NO_WORKERS: Final = "No {kind}worker is online right now."
NO_TEAMS: Final = "The AI Horde has no teams."
ONLINE: Final = "🟢"
OFFLINE: Final = "⚫"

_KINDS: Final = [app_commands.Choice(name=label, value=kind.value) for kind, label in KIND_NAMES.items()]


def _text(value: str | None, limit: int = NAME_CHARS) -> str:
    return plain_line(value or "", limit) or UNKNOWN


def _yes_no(value: bool | None) -> str:
    return UNKNOWN if value is None else ("yes" if value else "no")


def _kind(value: object) -> str:
    return KIND_NAMES.get(value, str(value)) if isinstance(value, WORKER_TYPE) else _text(str(value or ""))


def _status(online: bool | None) -> str:
    return OFFLINE if online is False else ONLINE


def worker_line(worker: WorkerDetailsResponse) -> str:
    """One worker in a list: status, name, kind, speed, and what stands out."""
    parts = [f"{_status(worker.online)} **{_text(worker.name)}**", _kind(worker.type_)]
    if worker.performance:
        parts.append(_text(worker.performance, 40))
    if worker.models:
        parts.append(plural(len(worker.models), "model"))
    if worker.trusted:
        parts.append("trusted")
    if worker.maintenance_mode:
        parts.append("🔧 maintenance")
    return " · ".join(parts)


def _capabilities(worker: WorkerDetailsResponse) -> str:
    flags = {
        "img2img": worker.img2img,
        "inpainting": worker.painting,
        "post-processing": worker.post_processing,
        "LoRA": worker.lora,
        "ControlNet": worker.controlnet,
        "SDXL ControlNet": worker.sdxl_controlnet,
    }
    return ", ".join(name for name, on in flags.items() if on) or "none"


def _kudos(worker: WorkerDetailsResponse) -> str:
    total = UNKNOWN if worker.kudos_rewards is None else format_kudos(worker.kudos_rewards)
    details = worker.kudos_details
    parts = []
    if details is not None and details.generated is not None:
        parts.append(f"{format_kudos(details.generated)} generating")
    if details is not None and details.uptime is not None:
        parts.append(f"{format_kudos(details.uptime)} uptime")
    return total + (f" ({', '.join(parts)})" if parts else "")


def _names_field(names: Sequence[str | None], page: int) -> tuple[str, str]:
    """The name and value of a field listing one page of ``names``."""
    shown = paginate(list(names), page=page, page_size=NAMES_PER_PAGE)
    value = "\n".join(f"• {_text(name)}" for name in shown.items) or "none"
    first = shown.page * NAMES_PER_PAGE
    span = f"{first + 1}–{first + len(shown.items)} of {shown.total}" if shown.pages > 1 else str(shown.total)
    return span, value


def worker_embed(worker: WorkerDetailsResponse, *, page: int = 0) -> discord.Embed:
    """A worker's details; ``page`` picks which of its models are listed."""
    embed = discord.Embed(
        title=f"{_status(worker.online)} {_text(worker.name, MAX_NAME_LENGTH)}",
        description=_text(worker.info, INFO_CHARS) if worker.info else None,
        colour=discord.Colour.orange() if worker.maintenance_mode else discord.Colour.blurple(),
    )
    embed.add_field(name="Kind", value=_kind(worker.type_))
    embed.add_field(name="Speed", value=_text(worker.performance, 60))
    embed.add_field(name="Uptime", value=format_uptime(worker.uptime))
    embed.add_field(name="Kudos", value=_kudos(worker))
    embed.add_field(name="Requests done", value=format_number(worker.requests_fulfilled))
    embed.add_field(name="Threads", value=format_number(worker.threads))
    embed.add_field(name="Trusted", value=_yes_no(worker.trusted))
    embed.add_field(name="Maintenance", value="🔧 on" if worker.maintenance_mode else "off")
    embed.add_field(
        name="Team", value=_text(worker.team.name) if worker.team and worker.team.name else "none"
    )
    if worker.owner:
        embed.add_field(name="Owner", value=_text(worker.owner))
    if worker.type_ is WORKER_TYPE.image:
        side = math.isqrt(worker.max_pixels) if worker.max_pixels else None
        embed.add_field(name="Largest image", value=f"{side}×{side}" if side else UNKNOWN)
        embed.add_field(name="NSFW", value=_yes_no(worker.nsfw))
        embed.add_field(name="Can do", value=_capabilities(worker), inline=False)
    elif worker.type_ is WORKER_TYPE.text:
        embed.add_field(
            name="Tokens",
            value=f"{format_number(worker.max_length)} out, "
            f"{format_number(worker.max_context_length)} context",
        )
    if worker.type_ is WORKER_TYPE.interrogation or worker.forms:
        embed.add_field(name="Forms", value=_text(", ".join(worker.forms) or "none", 1000), inline=False)
    if worker.models or worker.type_ is not WORKER_TYPE.interrogation:
        span, value = _names_field(worker.models, page)
        embed.add_field(name=f"Models ({span})", value=value, inline=False)
    return embed


def _pages(*lists: Sequence[object]) -> int:
    return max(1, *(math.ceil(len(names) / NAMES_PER_PAGE) for names in lists))


class WorkerPager(Pager):
    """A worker's details, its models a page at a time."""

    def __init__(self, worker: WorkerDetailsResponse, owner_id: int) -> None:
        super().__init__(owner_id, command="/workers")
        self.worker = worker

    def page_count(self) -> int:
        return _pages(self.worker.models)

    def embed(self) -> discord.Embed:
        return worker_embed(self.worker, page=self.page)


class WorkersPager(Pager):
    def __init__(self, search: WorkerSearch, owner_id: int, *, name: str | None) -> None:
        super().__init__(owner_id, command="/workers")
        self.search = search
        self.name = name

    def page_count(self) -> int:
        return paginate(self.search.workers, page=0, page_size=WORKERS_PER_PAGE).pages

    def embed(self) -> discord.Embed:
        page = paginate(self.search.workers, page=self.page, page_size=WORKERS_PER_PAGE)
        kind = kind_label(self.search.kind)
        what = (kind + "workers").capitalize()
        title = f"{what} matching “{_text(self.name, MAX_NAME_LENGTH)}”" if self.name else f"{what} online"
        embed = discord.Embed(
            title=title,
            description="\n".join(worker_line(worker) for worker in page.items)
            or NO_WORKERS.format(kind=kind),
            colour=discord.Colour.blurple(),
        )
        footer = page_footer(page.page, page.pages, page.total, "worker")
        embed.set_footer(text=f"{footer} · /workers name:… shows one worker's details")
        return embed


def team_embed(team: TeamDetailsResponse, *, page: int = 0) -> discord.Embed:
    """A team's details; ``page`` picks which of its workers and models are listed."""
    online = sum(1 for worker in team.workers if worker.online)
    embed = discord.Embed(
        title=_text(team.name, MAX_NAME_LENGTH),
        description=_text(team.info, INFO_CHARS) if team.info else None,
        colour=discord.Colour.blurple(),
    )
    embed.add_field(name="Workers", value=f"{format_number(team.worker_count)} ({online} online)")
    embed.add_field(name="Requests done", value=format_number(team.requests_fulfilled))
    embed.add_field(name="Kudos", value=UNKNOWN if team.kudos is None else format_kudos(team.kudos))
    embed.add_field(name="Uptime", value=format_uptime(team.uptime))
    embed.add_field(name="Created by", value=_text(team.creator))
    workers = [f"{_status(worker.online)} {worker.name or UNKNOWN}" for worker in team.workers]
    span, value = _names_field(workers, page)
    embed.add_field(name=f"Workers ({span})", value=value, inline=False)
    models = sorted(team.models, key=lambda model: (-(model.count or 0), (model.name or "").casefold()))
    span, value = _names_field([f"{model.name} ×{model.count or 0}" for model in models], page)
    embed.add_field(name=f"Models ({span})", value=value, inline=False)
    return embed


class TeamPager(Pager):
    """A team's details, its workers and models a page at a time."""

    def __init__(self, team: TeamDetailsResponse, owner_id: int) -> None:
        super().__init__(owner_id, command="/team")
        self.team = team

    def page_count(self) -> int:
        return _pages(self.team.workers, self.team.models)

    def embed(self) -> discord.Embed:
        return team_embed(self.team, page=self.page)


def team_line(team: TeamDetailsResponse) -> str:
    return (
        f"**{_text(team.name)}** · {plural(team.worker_count, 'worker')} · "
        f"{UNKNOWN if team.kudos is None else format_kudos(team.kudos)} kudos"
    )


class TeamsPager(Pager):
    def __init__(self, teams: Sequence[TeamDetailsResponse], owner_id: int) -> None:
        super().__init__(owner_id, command="/team")
        self.teams = tuple(teams)

    def page_count(self) -> int:
        return paginate(self.teams, page=0, page_size=TEAMS_PER_PAGE).pages

    def embed(self) -> discord.Embed:
        page = paginate(self.teams, page=self.page, page_size=TEAMS_PER_PAGE)
        embed = discord.Embed(
            title="AI Horde teams",
            description="\n".join(team_line(team) for team in page.items) or NO_TEAMS,
            colour=discord.Colour.blurple(),
        )
        footer = page_footer(page.page, page.pages, page.total, "team")
        embed.set_footer(text=f"{footer} · /team name:… shows one team's details")
        return embed


class HordeWorkers(commands.Cog, name="HordeWorkers"):
    def __init__(self, bot: HordeBot) -> None:
        self.bot = bot

    @app_commands.command(description="The AI Horde's workers online now, or one worker's details.")
    @app_commands.rename(kind="type")
    @app_commands.describe(
        kind="Only workers of this kind.", name="A worker's name, or part of it, for its details."
    )
    @app_commands.choices(kind=_KINDS)
    async def workers(
        self,
        interaction: discord.Interaction[Any],
        kind: str | None = None,
        name: app_commands.Range[str, 1, MAX_NAME_LENGTH] | None = None,
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            search = await find_workers(self.bot.horde, None if kind is None else WORKER_TYPE(kind), name)
        except AIHordeRequestError:
            raise HordeUnavailableError() from None
        pager: Pager = (
            WorkerPager(search.found, interaction.user.id)
            if search.found is not None
            else WorkersPager(search, interaction.user.id, name=name)
        )
        await pager.send(interaction)

    @app_commands.command(description="A team of AI Horde workers by name, or every team.")
    @app_commands.describe(name="The team's name, or part of it.")
    async def team(
        self,
        interaction: discord.Interaction[Any],
        name: app_commands.Range[str, 1, MAX_NAME_LENGTH] | None = None,
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        pager: Pager
        try:
            if name is None:
                pager = TeamsPager(await list_teams(self.bot.horde), interaction.user.id)
            else:
                pager = TeamPager(await find_team(self.bot.horde, name), interaction.user.id)
        except AIHordeRequestError:
            raise HordeUnavailableError() from None
        await pager.send(interaction)


async def setup(bot: commands.Bot) -> None:
    if not isinstance(bot, HordeBot):
        raise TypeError("cogs.horde_workers needs a HordeBot")
    await bot.add_cog(HordeWorkers(bot))
