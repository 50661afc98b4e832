"""The one place that decides whether a generation may start, and with which key.

Every way of starting a job (a slash command, a button, a reaction) builds a
:class:`GenerationContext` and goes through :meth:`Policy.admit`, so a server's rules hold the same
everywhere. Checks run cheapest first: where, what, who pays, how much, how often.
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from bot import clock
from bot.config import GenerationDefaults
from bot.errors import BotError, NotLoggedInError
from bot.services.accounts import AccountService
from bot.services.keys import ResolvedKey
from bot.services.settings.config import GuildConfig
from bot.services.settings.registry import MAX_COOLDOWN_S, Visibility
from bot.services.settings.service import GuildSettingsService
from bot.storage import JobKind, JobRecord, KeyOwner, Storage
from bot.storage.base import utcnow

Origin = Literal["command", "button", "reaction"]

DEFAULT_MAX_TRACKED: Final = 100_000
"""Members whose last start ``Policy`` remembers for cooldowns (about 150 bytes each)."""

SHARED_KEY_OWNERS: Final[tuple[KeyOwner, ...]] = ("sponsor", "anonymous")
"""Budgets count only jobs on keys the server provides; members with their own key pay themselves."""

CHANNEL_BLOCKED: Final = "Generating images isn't allowed in this channel."
COMMAND_BLOCKED: Final = "`/{command}` isn't allowed in this channel."
NSFW_BLOCKED: Final = "NSFW generations aren't allowed here."
NO_KEY: Final = (
    "This server doesn't allow generating with the anonymous key. "
    "Use /login with your own AI Horde API key (free at https://aihorde.net/register)."
)


class PolicyError(BotError):
    """A server rule refuses the generation; the message says which and what is allowed."""

    default_message = "This server's settings don't allow that generation."


@dataclass(frozen=True, slots=True)
class GenerationContext:
    """What is about to be generated, where, by whom, and how it was started.

    The image limits (``max_prompt_length`` on the prompts' characters, steps, size, count) apply
    to ``kind="image"`` only. For text, the request builder checks ``max_prompt_length`` on what the
    member typed and ``max_text_tokens`` on the length to write (here ``prompt`` may be a continued
    text that grew past the limit); alchemy has neither prompt nor model.
    """

    origin: Origin
    command: str
    user_id: int
    guild_id: int | None
    channel_id: int | None
    age_restricted: bool
    prompt: str
    kind: JobKind = "image"
    negative_prompt: str = ""
    model: str | None = None
    """``None``: the job names no model (the Horde picks one, or the job takes none)."""
    steps: int = 0
    width: int = 0
    height: int = 0
    n: int = 1
    nsfw: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    """The generation may start: with ``key``, its result shown ``visibility``."""

    key: ResolvedKey
    config: GuildConfig
    visibility: Visibility

    @property
    def ephemeral(self) -> bool:
        return self.visibility == "private"


def can_manage_job(job: JobRecord, user_id: int, *, manages_messages: bool) -> bool:
    """Cancel and Delete: the member who started the job, or one who may manage messages here."""
    return user_id == job.user_id or manages_messages


def start_of_day(now: datetime) -> datetime:
    """Midnight (UTC) of ``now``'s day: the daily budgets restart then."""
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


class Policy:
    """Checks a :class:`GenerationContext` against its server's :class:`GuildConfig`."""

    def __init__(
        self,
        settings: GuildSettingsService,
        accounts: AccountService,
        storage: Storage,
        *,
        monotonic: Callable[[], float] = clock.monotonic,
        wall_clock: Callable[[], datetime] = utcnow,
        max_tracked: int = DEFAULT_MAX_TRACKED,
    ) -> None:
        if max_tracked < 1:
            raise ValueError("max_tracked must be at least 1")
        self._settings = settings
        self._accounts = accounts
        self._storage = storage
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        # (guild, member) → when their last generation was admitted, oldest first. Entries older
        # than the longest cooldown can never refuse anyone and are dropped; past max_tracked
        # members the oldest goes first (it is also the one closest to the end of its cooldown).
        self._last_start: OrderedDict[tuple[int | None, int], float] = OrderedDict()
        self._max_tracked = max_tracked
        # Admitted but not journalled yet: counted with the journal's unfinished jobs, so two
        # simultaneous starts cannot both take the last slot.
        self._starting: Counter[tuple[int | None, int | None]] = Counter()
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"Policy(starting={sum(self._starting.values())})"

    async def check_generation(self, context: GenerationContext) -> Decision:
        """The decision for ``context``, or :class:`PolicyError` (or :class:`NotLoggedInError`)."""
        config = await self._settings.get(context.guild_id)
        self._check_where(config, context)
        self._check_what(config, context)
        key = await self._choose_key(config, context)
        await self._check_budget(config, context, key)
        self._check_cooldown(config, context)
        await self._check_concurrency(config, context)
        return Decision(key=key, config=config, visibility=config.visibility_in(context.channel_id))

    @asynccontextmanager
    async def admit(self, context: GenerationContext) -> AsyncIterator[Decision]:
        """Check ``context`` and hold its slot while the caller starts (journals) the job.

        The cooldown starts when the generation is admitted, whether or not it then succeeds.
        """
        async with self._lock:
            decision = await self.check_generation(context)
            self._started((context.guild_id, context.user_id))
            slots = [(context.guild_id, context.user_id), (context.guild_id, None)]
            self._starting.update(slots)
        try:
            yield decision
        finally:
            self._starting.subtract(slots)
            self._starting += Counter()  # drops the zero counts

    def _started(self, member: tuple[int | None, int]) -> None:
        now = self._monotonic()
        self._last_start[member] = now
        self._last_start.move_to_end(member)
        while self._last_start and (
            len(self._last_start) > self._max_tracked
            or now - next(iter(self._last_start.values())) >= MAX_COOLDOWN_S
        ):
            self._last_start.popitem(last=False)

    # -- the checks ------------------------------------------------------------------------------

    @staticmethod
    def _check_where(config: GuildConfig, context: GenerationContext) -> None:
        channel = context.channel_id
        if channel is not None and (
            channel in config.blocked_channels
            or (config.allowed_channels and channel not in config.allowed_channels)
        ):
            allowed = ", ".join(f"<#{c}>" for c in sorted(config.allowed_channels - config.blocked_channels))
            raise PolicyError(CHANNEL_BLOCKED + (f" Try {allowed}." if allowed else ""))
        commands = config.commands_in(channel)
        if commands is not None and context.command not in commands:
            raise PolicyError(COMMAND_BLOCKED.format(command=context.command))
        if context.nsfw and not config.nsfw_allowed(channel, age_restricted=context.age_restricted):
            raise PolicyError(NSFW_BLOCKED)

    @staticmethod
    def _check_what(config: GuildConfig, context: GenerationContext) -> None:
        model = context.model
        if model is not None and (
            model in config.blocked_models or (config.allowed_models and model not in config.allowed_models)
        ):
            allowed = sorted(config.allowed_models - config.blocked_models)
            hint = f" Allowed here: {', '.join(allowed)}." if allowed else ""
            raise PolicyError(f"The model “{model[:100]}” isn't allowed on this server.{hint}")
        if context.kind == "image":
            Policy._check_image_limits(config.generation, context)
        for label, text in (("prompt", context.prompt), ("negative prompt", context.negative_prompt)):
            found = config.blocked_term_in(text) if text else None
            if found is not None:
                raise PolicyError(
                    f"The {label} contains {found}, which this server blocks. Please rephrase it."
                )

    @staticmethod
    def _check_image_limits(limits: GenerationDefaults, context: GenerationContext) -> None:
        text_length = len(context.prompt) + len(context.negative_prompt)
        if text_length > limits.max_prompt_length:
            raise PolicyError(
                f"The prompt and negative prompt may have at most {limits.max_prompt_length:,} characters "
                f"together here; they have {text_length:,}."
            )
        if context.steps > limits.max_steps:
            raise PolicyError(f"Steps must be between 1 and {limits.max_steps} on this server.")
        if context.width * context.height > limits.max_pixels:
            raise PolicyError(
                f"Width × height may be at most {limits.max_pixels:,} pixels on this server "
                f"({context.width}×{context.height} is {context.width * context.height:,})."
            )
        if context.n > limits.max_n:
            raise PolicyError(f"Count must be between 1 and {limits.max_n} on this server.")

    async def _choose_key(self, config: GuildConfig, context: GenerationContext) -> ResolvedKey:
        """The member's own key, else the server's sponsor key, else the anonymous key if allowed."""
        own = await self._accounts.resolve_key(context.user_id, context.guild_id)
        if not own.is_anonymous:
            return own
        if config.has_sponsor_key:
            sponsor = await self._settings.sponsor_key(context.guild_id)
            if sponsor is not None:
                return sponsor
        if not config.allow_anonymous:
            raise NotLoggedInError(NO_KEY)
        return own

    async def _check_budget(self, config: GuildConfig, context: GenerationContext, key: ResolvedKey) -> None:
        if context.guild_id is None or key.owner not in SHARED_KEY_OWNERS:
            return
        now = self._wall_clock()
        since = start_of_day(now)
        budgets = (
            (config.daily_kudos_member, context.user_id, "your daily"),
            (config.daily_kudos_server, None, "this server's daily"),
        )
        for budget, user_id, whose in budgets:
            if budget <= 0:
                continue
            spent = await self._storage.jobs.kudos_spent(
                since=since, guild_id=context.guild_id, user_id=user_id, key_owners=SHARED_KEY_OWNERS
            )
            if spent >= budget:
                hours = max(1, round((since + timedelta(days=1) - now).total_seconds() / 3600))
                raise PolicyError(
                    f"{whose.capitalize()} kudos budget ({budget:,}) is used up ({spent:,.0f} spent). "
                    f"It resets at midnight UTC (in about {hours} h); with your own key (/login) you can "
                    "generate meanwhile."
                )

    def _check_cooldown(self, config: GuildConfig, context: GenerationContext) -> None:
        if config.cooldown_seconds <= 0:
            return
        last = self._last_start.get((context.guild_id, context.user_id))
        if last is None:
            return
        wait = last + config.cooldown_seconds - self._monotonic()
        if wait > 0:
            seconds = max(1, round(wait))
            raise PolicyError(
                f"This server has a {config.cooldown_seconds} s cooldown between generations. "
                f"Try again in {seconds} second{'s' if seconds != 1 else ''}."
            )

    async def _check_concurrency(self, config: GuildConfig, context: GenerationContext) -> None:
        if config.max_jobs_member <= 0 and config.max_jobs_server <= 0:
            return
        mine, everyone = await self._storage.jobs.count_unfinished(context.guild_id, context.user_id)
        mine += self._starting[(context.guild_id, context.user_id)]
        everyone += self._starting[(context.guild_id, None)]
        if 0 < config.max_jobs_member <= mine:
            raise PolicyError(
                f"You can run at most {config.max_jobs_member} generation(s) at once here. "
                "Wait for one to finish (or cancel it)."
            )
        if 0 < config.max_jobs_server <= everyone:
            raise PolicyError(
                f"This server runs at most {config.max_jobs_server} generation(s) at once. "
                "Please try again when one has finished."
            )
