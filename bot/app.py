"""The bot: one ``commands.Bot`` subclass wired with shared resources, and the factory that builds it.

Every shared resource (the aiohttp session, the storage, the key ring, the AI Horde client session and
simple client) is created once, in :func:`create_bot`, and injected; tests pass their own.
``setup_hook`` connects them and loads :data:`EXTENSIONS`; :meth:`HordeBot.close` is the one place
that shuts everything down. Slash commands are never synced at start (see ``python -m bot sync``).

With ``[bot] shard_count`` set, :func:`create_bot` builds a :class:`ShardedHordeBot` (discord.py's
``AutoShardedBot``) running ``shard_ids`` (all shards when unset) in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

import aiohttp
import discord
from discord.ext import commands

from bot.config import Settings
from bot.crypto import KeyRing
from bot.horde import (
    AIHordeAPIAsyncClientSession,
    AIHordeAPIAsyncSimpleClient,
    HordeRateLimits,
    PollPolicy,
    RateLimit,
)
from bot.logging import SecretRedactor
from bot.services.accounts import AccountService
from bot.services.delivery.service import Delivery
from bot.services.jobs import JobManager
from bot.services.kinds import job_kinds
from bot.services.kudos import KudosService
from bot.services.policy import Policy
from bot.services.proxied import ProxiedAccounts
from bot.services.settings.service import GuildSettingsService
from bot.storage import Storage, open_storage
from bot.tree import HordeCommandTree

log = logging.getLogger(__name__)

# The extensions loaded at start, in order. Add new cogs here.
EXTENSIONS: Final[tuple[str, ...]] = (
    "cogs.meta",
    "cogs.accounts",
    "cogs.write",
    "cogs.alchemy",
    "cogs.horde_info",
    "cogs.horde_workers",
    "cogs.kudos",
    "cogs.imagine",
    "cogs.config",
    "cogs.member_settings",
    "cogs.member_jobs",
)

DISTRIBUTION: Final = "horde-discord-bot"

ShutdownHook = Callable[[], Awaitable[None]]

# The share of ``shutdown_deadline_s`` kept, after the shutdown hooks, for disconnecting from Discord
# and the AI Horde session's last DELETEs; the storage closes after them.
CLOSING_RESERVE: Final = 0.1
# The storage is given at least this long to close, even once the deadline has passed.
STORAGE_CLOSE_FLOOR_S: Final = 0.25


def app_version() -> str:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def bot_intents() -> discord.Intents:
    """Only what the bot uses: guilds (channels, permissions) and reactions (re-run by reacting).

    No message content and no members: both are privileged, and slash commands need neither.
    """
    return discord.Intents(guilds=True, guild_reactions=True)


class HordeBot(commands.Bot):
    """The bot. Construct it with :func:`create_bot`, which creates and injects the resources.

    Unfinished jobs of the journal are resumed once, on the first READY, after every extension has
    registered its kind's listener factory (``jobs.set_listener_factory`` in ``cog_load``). Not in
    ``setup_hook``: REST would already work there, but ``python -m bot sync`` logs in too (which
    runs ``setup_hook``) and must not adopt, then cancel on exit, the jobs of the running bot. A
    process that is not connected to its shards does not claim their jobs.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        http_session: aiohttp.ClientSession,
        storage: Storage,
        keyring: KeyRing,
        horde_session: AIHordeAPIAsyncClientSession,
        horde: AIHordeAPIAsyncSimpleClient,
        redactor: SecretRedactor,
        owns_http_session: bool,
        extensions: Sequence[str] = EXTENSIONS,
    ) -> None:
        super().__init__(
            # No prefix commands: without the message content intent a mention is the only prefix
            # that could ever match, and the bot registers none.
            command_prefix=commands.when_mentioned,
            help_command=None,
            description=settings.bot.description,
            intents=bot_intents(),
            owner_ids=set(settings.bot.owner_ids),
            tree_cls=HordeCommandTree,
            # Prompts are user text: nothing the bot posts may ping anyone unless a call opts in.
            allowed_mentions=discord.AllowedMentions.none(),
            **self._client_options(settings),
        )
        self.settings: Final = settings
        self.http_session: Final = http_session
        self.storage: Final = storage
        self.keyring: Final = keyring
        self.horde_session: Final = horde_session
        self.horde: Final = horde
        self.redactor: Final = redactor
        # Services: built on the shared resources, no I/O until used.
        self.accounts: Final = AccountService(storage, keyring, horde, redactor=redactor)
        # One per bot: /kudos give and gifting reactions share what was sent lately (shown by /me).
        self.kudos: Final = KudosService(storage, self.accounts, horde)
        self.proxied: Final = ProxiedAccounts(horde, keyring)
        self.jobs: Final = JobManager.from_settings(storage, horde, settings, kinds=job_kinds())
        self.guild_settings: Final = GuildSettingsService(
            storage,
            settings.defaults,
            keyring=keyring,
            horde=horde,
            redactor=redactor,
            cache_ttl_s=settings.bot.settings_cache_ttl_s,
        )
        self.policy: Final = Policy(self.guild_settings, self.accounts, storage)
        # One per bot: every job listener shares its per-channel edit budget.
        self.delivery: Final = Delivery(self, storage, settings.progress)
        self.extensions_to_load: Final = tuple(extensions)
        self.version: Final = app_version()
        self.started_at: float | None = None
        self._shutdown_hooks: list[ShutdownHook] = []
        self._shutdown_task: asyncio.Task[None] | None = None
        # The loop time by which the shutdown hooks must be done (set when close() begins).
        self._hooks_deadline: float | None = None
        self._deadline: float | None = None
        self._resume_task: asyncio.Task[None] | None = None
        self.add_shutdown_hook(self._shutdown_jobs)
        # Hooks run last-added first: results queued for their channel's turn go out before jobs end.
        self.add_shutdown_hook(self.delivery.stop_waiting)
        # Closed last-in first-out: the Horde session (which DELETEs every generation still
        # pending), then the storage, then the HTTP session they both used. Each is safe to close
        # even if setup_hook never ran.
        self._resources = contextlib.AsyncExitStack()
        if owns_http_session:
            self._resources.push_async_callback(http_session.close)
        self._resources.push_async_callback(self._close_storage)
        self._resources.push_async_callback(self._close_horde_session)

    @staticmethod
    def _client_options(settings: Settings) -> dict[str, Any]:
        """Extra keyword arguments for the discord.py client class."""
        return {}

    @property
    def uptime(self) -> datetime.timedelta:
        if self.started_at is None:
            return datetime.timedelta(0)
        return datetime.timedelta(seconds=time.monotonic() - self.started_at)

    def add_shutdown_hook(self, hook: ShutdownHook) -> None:
        """Run ``hook`` first thing in :meth:`close` (hooks run last-added first).

        All hooks share ``settings.bot.shutdown_deadline_s``; a hook still running then is cancelled.
        Services use this to stop accepting work and wind down what is in flight while Discord,
        the AI Horde session and the storage are still open.
        """
        self._shutdown_hooks.append(hook)

    async def _shutdown_jobs(self) -> None:
        if self._resume_task is not None:
            self._resume_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resume_task
        # A margin inside the hooks' deadline, so the journal is written before the hook is cut off.
        await self.jobs.shutdown(self._seconds_left(self._hooks_deadline) * 0.9)

    def _seconds_left(self, deadline: float | None) -> float:
        if deadline is None:
            return self.settings.bot.shutdown_deadline_s
        return max(0.0, deadline - asyncio.get_running_loop().time())

    async def _close_horde_session(self) -> None:
        # Whatever the jobs left pending is DELETEd in the time left of the one deadline; a job
        # whose DELETE did not go through was released by the jobs engine, for the next start.
        # Half of what is left: the storage closes after it.
        await self.horde_session.close(cleanup_timeout=self._seconds_left(self._deadline) / 2)

    async def _close_storage(self) -> None:
        # Everything is journalled by now (each write committed); closing only lets go of the
        # connections, so a hung close is cut at the deadline, with a last short chance.
        left = max(self._seconds_left(self._deadline), STORAGE_CLOSE_FLOOR_S)
        try:
            async with asyncio.timeout(left):
                await self.storage.close()
        except TimeoutError:
            log.warning("Closing the storage did not finish within the shutdown deadline")

    async def on_ready(self) -> None:
        # READY comes again after every new gateway session; the journal is read once per process.
        if self._resume_task is None and self.jobs.accepting:
            self._resume_task = asyncio.create_task(self._resume_jobs(), name="HordeBot.resume_jobs")

    async def _resume_jobs(self) -> None:
        try:
            await self.jobs.resume_unfinished()
        except Exception:
            log.exception("Could not resume the unfinished generations")

    async def setup_hook(self) -> None:
        self.started_at = time.monotonic()
        await self.storage.connect()
        for extension in self.extensions_to_load:
            await self.load_extension(extension)
        log.info(
            "Loaded %d extension(s): %s", len(self.extensions_to_load), ", ".join(self.extensions_to_load)
        )
        if self.settings.bot.shard_count is not None:
            ids = self.settings.bot.shard_ids
            log.info(
                "Sharded: running shard(s) %s of %d",
                "all" if ids is None else ", ".join(map(str, ids)),
                self.settings.bot.shard_count,
            )

    async def close(self) -> None:
        """Shut down once, in order: services, Discord, the Horde session, storage, the HTTP session.

        Safe to call again and concurrently: later calls wait for the first one to finish.
        """
        if self._shutdown_task is None:
            self._shutdown_task = asyncio.create_task(self._shutdown(), name="HordeBot.shutdown")
        # Shielded so a caller being cancelled (a second Ctrl-C) does not abandon half the cleanup.
        await asyncio.shield(self._shutdown_task)

    async def _shutdown(self) -> None:
        """Everything within ``shutdown_deadline_s``, one deadline for the whole exit.

        The hooks (jobs DELETEd and journalled) get all of it but a reserve
        (:data:`CLOSING_RESERVE`); Discord and the AI Horde session's own cleanup share the
        reserve, each cut off at the deadline; then the storage and the HTTP session close.
        """
        log.info("Shutting down")
        loop = asyncio.get_running_loop()
        total = self.settings.bot.shutdown_deadline_s
        self._deadline = loop.time() + total
        self._hooks_deadline = self._deadline - total * CLOSING_RESERVE
        await self._run_shutdown_hooks(self._hooks_deadline)
        try:
            # Services have wound down; stop taking new interactions before their resources go.
            async with asyncio.timeout_at(max(self._deadline, loop.time())):
                await super().close()
        except TimeoutError:
            log.warning("Disconnecting from Discord did not finish within the shutdown deadline")
        finally:
            try:
                await self._resources.aclose()
            except Exception:
                log.exception("Error while closing the bot's resources")
        log.info("Shut down")

    async def _run_shutdown_hooks(self, deadline: float) -> None:
        while self._shutdown_hooks:
            hook = self._shutdown_hooks.pop()
            try:
                async with asyncio.timeout_at(deadline):
                    await hook()
            except TimeoutError:
                log.warning(
                    "Shutdown hook %r did not finish within %gs",
                    hook,
                    self.settings.bot.shutdown_deadline_s,
                )
            except Exception:
                log.exception("Shutdown hook %r failed", hook)


class ShardedHordeBot(HordeBot, commands.AutoShardedBot):
    """The bot on discord.py's ``AutoShardedBot``: ``[bot] shard_ids`` of ``shard_count`` shards
    (all of them when ``shard_ids`` is unset) in this process."""

    @staticmethod
    def _client_options(settings: Settings) -> dict[str, Any]:
        ids = settings.bot.shard_ids
        return {"shard_count": settings.bot.shard_count, "shard_ids": None if ids is None else list(ids)}


async def create_bot(
    settings: Settings,
    *,
    http_session: aiohttp.ClientSession | None = None,
    storage: Storage | None = None,
    keyring: KeyRing | None = None,
    redactor: SecretRedactor | None = None,
    poll_policy: PollPolicy = PollPolicy(),  # noqa: B008 - frozen, so one shared default is safe
    extensions: Sequence[str] = EXTENSIONS,
) -> HordeBot:
    """Build the bot and its shared resources; nothing is connected until the bot logs in.

    Anything not passed is created from ``settings``. The bot closes everything on :meth:`HordeBot.close`,
    except an ``http_session`` passed in, which stays the caller's. The settings' secrets are
    registered with ``redactor`` (a new one if not given; pass the one from ``setup_logging``).
    ``poll_policy`` paces the polling of generations (tests pass a fast one).
    """
    if keyring is None:
        keyring = settings.require_keyring()
    if storage is None:
        storage = open_storage(settings.database.url)
    if redactor is None:
        redactor = SecretRedactor()
    for secret in settings.secret_values():
        redactor.register_secret(secret)
    owns_http_session = http_session is None
    if http_session is None:
        http_session = aiohttp.ClientSession()
    horde_session = AIHordeAPIAsyncClientSession(
        http_session,
        base_url=settings.horde.api_url,
        client_agent=settings.horde.client_agent,
        request_timeout=settings.horde.request_timeout_s,
        # The process's own limiter holds the same per-IP budget as the bot's shared queue (a
        # whitelisted IP's is looser), so it never waits on a turn the queue granted.
        rate_limits=replace(
            HordeRateLimits(),
            generate_async_per_ip=tuple(
                RateLimit(calls, period) for calls, period in settings.horde.submit_windows
            ),
        ),
    )
    horde = AIHordeAPIAsyncSimpleClient(
        horde_client_session=horde_session,
        aiohttp_session=http_session,
        poll_policy=poll_policy,
    )
    bot_class = ShardedHordeBot if settings.bot.shard_count is not None else HordeBot
    return bot_class(
        settings,
        http_session=http_session,
        storage=storage,
        keyring=keyring,
        horde_session=horde_session,
        horde=horde,
        redactor=redactor,
        owns_http_session=owns_http_session,
        extensions=extensions,
    )
