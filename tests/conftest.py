"""Shared fixtures. See docs/TESTING.md for how to use them.

- ``error_logs`` (autouse): fails the test if an unhandled exception was logged.
- ``horde_sim_config`` / ``horde_sim``: a running AI Horde simulator.
- ``keyring`` / ``settings``: test settings pointing at the simulator and a temporary SQLite file.
- ``simcord_bot`` / ``simcord_env``: the real bot from ``create_bot(settings)``, running in SimCord,
  its commands synced.
- ``server``: a guild with a normal and an age-restricted channel, an admin, a moderator and two members.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import discord
import hypothesis
import pg_server
import pytest
import simcord
from discord_limits import LimitedDiscord
from discord_limits import install as install_discord_limits
from pydantic import SecretStr

from bot.app import EXTENSIONS, HordeBot, create_bot
from bot.config import DatabaseSettings, HordeSettings, ProgressSettings, Settings
from bot.crypto import KeyRing, generate_key_value
from bot.horde import PollPolicy
from bot.tree import is_expected_error
from horde_simulator import Knobs, Simulator, SimulatorConfig, run_simulator

# CI must not fail on an example no local run has seen: there, hypothesis draws the same examples
# every run (locally it keeps exploring, and prints how to reproduce what it finds).
hypothesis.settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis.settings.load_profile("ci")

ALLOW_UNHANDLED_ERRORS = "allow_unhandled_errors"
# Loggers whose ERROR-with-traceback records mean an exception nobody handled.
WATCHED_LOGGERS = ("bot", "cogs", "horde_simulator", "discord", "asyncio")
# Shaped like a real bot token, so log-redaction tests can look for it; Discord never issued it.
FAKE_DISCORD_TOKEN = "MTA5ODc2NTQzMjEwOTg3NjU0Mw.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB"
TEST_CLIENT_AGENT = "horde-discord-bot-tests:0:tests@example.invalid"
# Polls every 50-200 ms instead of every 1-15 s, so a whole generation fits in one SimCord action.
# The first poll at once and always a check, then one status at the end (first_poll_delay=0,
# final_status_polls=0): the bot tests count checks, status fetches and progress edits, and at
# this pace a job's rounded countdown reads 0 for its last half second.
# tests/horde/test_polling_policy.py covers the real-Horde cadence.
TEST_POLL_POLICY = PollPolicy(
    min_interval=0.05,
    max_interval=0.2,
    processing_max_interval=0.1,
    unknown_wait_interval=0.05,
    first_poll_delay=0,
    final_status_polls=0,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{ALLOW_UNHANDLED_ERRORS}: the test provokes an unhandled exception on purpose and asserts on it "
        "(through the `error_logs` fixture or `simcord_env.errors`)",
    )


# -- unhandled errors ---------------------------------------------------------------------------


class _UnhandledErrorCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        watched = any(record.name == name or record.name.startswith(f"{name}.") for name in WATCHED_LOGGERS)
        if watched and record.exc_info is not None:
            self.records.append(record)


@pytest.fixture(autouse=True)
def error_logs(request: pytest.FixtureRequest) -> Iterator[list[logging.LogRecord]]:
    """The records of unhandled exceptions logged during the test.

    Any such record fails the test, unless it is marked ``@pytest.mark.allow_unhandled_errors``
    (then assert on this list instead).
    """
    collector = _UnhandledErrorCollector()
    root = logging.getLogger()
    root.addHandler(collector)
    try:
        yield collector.records
    finally:
        root.removeHandler(collector)
    if collector.records and request.node.get_closest_marker(ALLOW_UNHANDLED_ERRORS) is None:
        formatter = logging.Formatter("%(name)s %(levelname)s: %(message)s")
        details = "\n\n".join(formatter.format(record) for record in collector.records)
        pytest.fail(f"unhandled exception(s) logged during the test:\n{details}", pytrace=False)


# -- the AI Horde simulator and settings --------------------------------------------------------


@pytest.fixture
def horde_sim_config() -> SimulatorConfig:
    """Override in a test module to start the simulator with other users, knobs or faults.

    The default workers take 0.05 s per job, so a generation finishes within a test's settle time.
    """
    return SimulatorConfig(knobs=Knobs(speed=0.05))


@pytest.fixture
async def horde_sim(horde_sim_config: SimulatorConfig) -> AsyncIterator[Simulator]:
    """A running simulator: ``horde_sim.base_url``, ``horde_sim.state``, ``horde_sim.counters``."""
    async with run_simulator(horde_sim_config) as sim:
        yield sim


@pytest.fixture
def keyring() -> KeyRing:
    return KeyRing.from_env_value(generate_key_value(1))


@pytest.fixture
def settings(horde_sim: Simulator, tmp_path: Path, keyring: KeyRing) -> Settings:
    """Defaults, except: the simulator, a fresh SQLite file, a fake token and a fresh key ring.

    Settings are frozen; derive variants with ``settings.model_copy(update={...})``.
    """
    return Settings(
        horde=HordeSettings(
            api_url=horde_sim.base_url, client_agent=TEST_CLIENT_AGENT, request_timeout_s=5.0
        ),
        database=DatabaseSettings(url=f"sqlite:///{tmp_path / 'bot.sqlite3'}"),
        # A wait for the channel's turn is real time to SimCord when it falls inside an action's
        # settling: tests of other things must not queue. The budget's own tests set it.
        progress=ProgressSettings(channel_edits=50),
        discord_token=SecretStr(FAKE_DISCORD_TOKEN),
        secret_keys=keyring,
    )


# -- PostgreSQL -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a database the tests may create schemas in: ``TEST_DATABASE_URL`` when set (CI),
    else a throwaway server started once for the session (``tests/pg_server.py``), else a skip."""
    url = os.environ.get(pg_server.URL_ENV)
    if url:
        yield url
        return
    try:
        server = pg_server.start(owner_pid=os.getpid())
    except pg_server.PostgresUnavailable as exc:
        pytest.skip(f"needs PostgreSQL: {exc}")
    try:
        yield server.url
    finally:
        server.stop()


def with_search_path(url: str, schema: str) -> str:
    """``url`` with its connections' ``search_path`` set to ``schema`` (asyncpg sends unknown query
    parameters as server settings)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "search_path"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("search_path", schema)])))


# -- the bot in SimCord -------------------------------------------------------------------------


async def build_bot(settings: Settings, **overrides: Any) -> HordeBot:
    """``create_bot`` as the fixtures call it: as in production, but polling the Horde fast."""
    return await create_bot(settings, **{"poll_policy": TEST_POLL_POLICY, **overrides})


@pytest.fixture
async def simcord_bot(settings: Settings) -> AsyncIterator[HordeBot]:
    """The real bot, built like production (see ``build_bot``); closed at the end."""
    bot = await build_bot(settings)
    try:
        yield bot
    finally:
        await bot.close()


def _check_bot_errors(env: simcord.Env, request: pytest.FixtureRequest) -> None:
    # SimCord records every error the bot raised, even those the tree answered on purpose; only
    # the others are bugs.
    unexpected = [error for error in env.errors if not is_expected_error(error)]
    if unexpected and request.node.get_closest_marker(ALLOW_UNHANDLED_ERRORS) is None:
        raise ExceptionGroup("the bot raised unhandled error(s) during the test", unexpected)


@pytest.fixture
async def simcord_env(simcord_bot: HordeBot, request: pytest.FixtureRequest) -> AsyncIterator[simcord.Env]:
    """SimCord running ``simcord_bot``, logged in and READY, with the commands synced globally.

    Options for ``simcord.Env`` come from ``@pytest.mark.simcord(...)``. The bot may have been
    replaced by ``server.restart()``; the current one (``simcord_env.bot``) is closed at the end.
    """
    marker = request.node.get_closest_marker("simcord")
    options = {"check_errors": False, **(marker.kwargs if marker else {})}
    env = simcord.Env(simcord_bot, **options)
    await env.start()
    try:
        # Production syncs deliberately (`python -m bot sync`); here every test starts synced.
        await simcord_bot.tree.sync()
        yield env
        _check_bot_errors(env, request)
    finally:
        bot = env.bot
        await bot.close()
        await env.shutdown()


def set_age_restricted(bot: discord.Client, channel: simcord.ChannelHandle, value: bool = True) -> None:
    """Mark ``channel`` age-restricted (NSFW) as the bot sees it.

    SimCord 3.2.1 does not model the channel ``nsfw`` flag, so this sets it in the bot's cache,
    which is where ``interaction.channel`` comes from. A ``CHANNEL_UPDATE`` or a restart resets it
    (``Server.restart`` reapplies it).
    """
    cached = bot.get_channel(channel.id)
    if not isinstance(cached, discord.TextChannel):
        raise TypeError(f"{channel!r} is not a text channel the bot can see")
    cached.nsfw = value


@dataclass
class Server:
    """A guild ready for tests. Act as a member with ``await server.alice.slash(server.channel, ...)``."""

    env: simcord.Env
    settings: Settings
    guild: simcord.GuildHandle
    channel: simcord.ChannelHandle
    nsfw_channel: simcord.ChannelHandle
    admin: simcord.MemberActor
    moderator: simcord.MemberActor
    alice: simcord.MemberActor
    bob: simcord.MemberActor
    discord_limits: LimitedDiscord | None = None
    """Discord's rate limits (tests/discord_limits.py) when a test asked for them; kept on restarts."""

    @property
    def bot(self) -> HordeBot:
        bot = self.env.bot
        assert isinstance(bot, HordeBot)
        return bot

    async def restart(self, *, extensions: Sequence[str] = EXTENSIONS) -> HordeBot:
        """Replace the bot by a new one built from the same settings, as a process restart would.

        The virtual Discord (messages, components, commands) persists and the database file is
        the same, so persistent views and journalled jobs can be tested. The old bot is closed
        first, as on a real shutdown.
        """
        await self.bot.close()
        new_bot = await build_bot(self.settings, extensions=extensions)
        await self.env.restart_bot(new_bot)
        set_age_restricted(new_bot, self.nsfw_channel)
        if self.discord_limits is not None:
            self.discord_limits = install_discord_limits(
                self.env, channel_messages=self.discord_limits.channel_messages
            )
        return new_bot


@pytest.fixture
def server(simcord_env: simcord.Env, settings: Settings) -> Server:
    env = simcord_env
    guild = env.create_guild("Horde Test Server")
    channel = guild.create_text_channel("general")
    nsfw_channel = guild.create_text_channel("after-dark")
    admins = guild.create_role("Admins", permissions=discord.Permissions(manage_guild=True))
    moderators = guild.create_role("Moderators", permissions=discord.Permissions(manage_messages=True))
    server = Server(
        env=env,
        settings=settings,
        guild=guild,
        channel=channel,
        nsfw_channel=nsfw_channel,
        admin=guild.add_member(env.create_user("admin"), roles=[admins]),
        moderator=guild.add_member(env.create_user("moderator"), roles=[moderators]),
        alice=guild.add_member(env.create_user("alice")),
        bob=guild.add_member(env.create_user("bob")),
    )
    set_age_restricted(server.bot, nsfw_channel)
    return server


@pytest.fixture
def discord_limits(server: Server) -> LimitedDiscord:
    """Discord's rate limits in front of SimCord, with discord.py's own handling of them
    (tests/discord_limits.py); ``.stats`` counts every 429 and any that reached the bot."""
    server.discord_limits = install_discord_limits(server.env)
    return server.discord_limits
