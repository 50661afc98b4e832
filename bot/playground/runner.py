"""``horde-bot playground``: the real bot, in a simulated Discord shown in the browser.

:class:`Playground` wires it up in one process: the AI Horde simulator (unless a Horde URL is
given), the bot from :func:`~bot.app.create_bot` on a temporary SQLite database, SimCord running
it with the :mod:`~bot.playground.world`, SimCord's preview of a channel, the
:class:`~bot.playground.live.LiveSync` loop and the :class:`~bot.playground.server.PlaygroundServer`
in front. Stopping closes the bot as its own shutdown does: running generations are cancelled on
the Horde.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import tempfile
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiohttp
import discord
import simcord
from pydantic import ValidationError
from simcord import Env

from bot.app import HordeBot, create_bot
from bot.config import DatabaseSettings, HordeSettings, Settings, load_settings
from bot.crypto import KeyRing, generate_key_value
from bot.horde import PollPolicy
from bot.logging import SecretRedactor
from bot.playground._simcord_live import name_the_bot, republish, start_clock_now, verify
from bot.playground.horde_waits import declaring_response_class
from bot.playground.live import LiveSync
from bot.playground.server import BadRequest, PlaygroundServer, Upstream
from bot.playground.world import World, build_world, mark_age_restricted, post_welcome, welcome_text
from horde_simulator import Knobs, SimulatorConfig, default_users, run_simulator

log = logging.getLogger(__name__)

# Seconds a simulated worker spends on an image: long enough to watch the queue and the progress.
DEFAULT_SPEED_S: Final = 3.0
# How long SimCord lets the bot work after an action before it answers the browser. The bot's
# Horde waits are declared external (horde_waits), so this only bounds its own work.
SETTLE_S: Final = 1.0
# Ctrl-C must end the process within 5 s: the bot gets this much to cancel its generations.
SHUTDOWN_DEADLINE_S: Final = 3.0
# How long the start waits for the AI Horde to accept --apikey.
LOGIN_TIMEOUT_S: Final = 60.0
LOGIN_POLL_S: Final = 0.05
BOT_NAME: Final = "Horde Bot"
# Against the simulator the bot may poll fast, and at once after a submission: the page shows each
# change within about a second.
SIMULATOR_POLL_POLICY: Final = PollPolicy(max_interval=2.0, processing_max_interval=2.0, first_poll_delay=0)
# Without a config file, progress edits every second (the default, 3 s, spares Discord's limits).
EDIT_INTERVAL_S: Final = 1.0
REACTIONS: Final = ("🔁", "🎲", "❌", "⭐", "✉️")
MENUS: Final = ("Describe image", "Upscale image")


class PlaygroundError(Exception):
    """The playground cannot start; the message is one line for the terminal."""


@dataclass(frozen=True)
class PlaygroundOptions:
    port: int = 0
    config: Path | None = None
    speed: float = DEFAULT_SPEED_S
    horde_url: str | None = None
    apikey: str | None = field(default=None, repr=False)
    timezone: str | None = None


def demo_key() -> str:
    """The simulator's key of a user with kudos to spare, shown on the page for ``/login``."""
    return next(user.api_key for user in default_users() if user.alias == "alice")


def local_timezone() -> str:
    """This machine's time zone name (``TZ``, ``/etc/timezone``, ``/etc/localtime``), else UTC."""
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    with contextlib.suppress(OSError):
        candidates.append(Path("/etc/timezone").read_text(encoding="utf-8").strip())
    with contextlib.suppress(OSError):
        candidates.append(str(Path("/etc/localtime").resolve()).partition("zoneinfo/")[2])
    for name in candidates:
        with contextlib.suppress(ZoneInfoNotFoundError, ValueError):
            if name:
                ZoneInfo(name)
                return name
    return "UTC"


def _text_input(modal: Mapping[str, Any] | None) -> str:
    """The ``custom_id`` of the (only) text input of a modal's raw payload."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            if node.get("type") == discord.ComponentType.text_input.value:
                found.append(str(node["custom_id"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(modal)
    if len(found) != 1:
        raise PlaygroundError("/login did not open its form")
    return found[0]


def _answer(result: simcord.InteractionResult) -> str:
    """What the bot answered to an interaction so far ("" while it is still thinking)."""
    messages = [result.response, *result.followups]
    return " ".join(message.content for message in messages if message is not None and message.content)


def _with_api_url(horde: HordeSettings, api_url: str) -> HordeSettings:
    try:
        return HordeSettings.model_validate({**horde.model_dump(), "api_url": api_url})
    except ValidationError as exc:
        reason = "; ".join(error["msg"] for error in exc.errors())
        raise PlaygroundError(f"--horde-url: {reason}") from None


class Playground:
    """``async with Playground(options, note=print) as playground:`` then ``playground.url``.

    ``note`` receives the lines a person should read (what runs, what is spent); the URL is for
    the caller to print.
    """

    def __init__(
        self,
        options: PlaygroundOptions,
        *,
        note: Callable[[str], None],
        redactor: SecretRedactor | None = None,
    ) -> None:
        self.options = options
        self.note = note
        self.redactor = redactor if redactor is not None else SecretRedactor()
        self.token = secrets.token_urlsafe(32)
        self.lock = asyncio.Lock()
        self.timezone = options.timezone or local_timezone()
        self._stack = AsyncExitStack()
        self._stopped = asyncio.Event()
        self._upstream: Upstream | None = None
        self.env: Env | None = None
        self.bot: HordeBot | None = None
        self.world: World | None = None
        self.server: PlaygroundServer | None = None
        self.simulator_url: str | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def request_stop(self) -> None:
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def __aenter__(self) -> Playground:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    # -- start-up ---------------------------------------------------------------------------------

    async def _start(self) -> None:
        verify()
        stack = self._stack
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="horde-playground-")))
        if self.options.horde_url is None:
            knobs = Knobs(speed=self.options.speed, worker_delay=1.0)
            simulator = await stack.enter_async_context(run_simulator(SimulatorConfig(knobs=knobs)))
            self.simulator_url = simulator.base_url
        settings = self._settings(self.options.horde_url or str(self.simulator_url), workdir)
        for secret in settings.secret_values():
            self.redactor.register_secret(secret)
        if self.options.apikey:
            self.redactor.register_secret(self.options.apikey)

        # The bot's HTTP session declares its waits on the Horde to SimCord (horde_waits).
        session = aiohttp.ClientSession(response_class=declaring_response_class(lambda: self.env))
        stack.push_async_callback(session.close)
        poll_policy = SIMULATOR_POLL_POLICY if self.options.horde_url is None else PollPolicy()
        bot = self.bot = await create_bot(
            settings, http_session=session, redactor=self.redactor, poll_policy=poll_policy
        )
        env = simcord.Env(bot, check_errors=False, settle_timeout=SETTLE_S)
        start_clock_now(env)
        name_the_bot(env, BOT_NAME)
        await env.start()
        self.env = env
        stack.push_async_callback(self._stop_world)
        await bot.tree.sync()  # as `horde-bot sync` would, into the simulated Discord
        world = self.world = build_world(env)
        mark_age_restricted(bot, world.after_dark)
        await self._log_in_with_apikey(bot, world)
        for channel in world.channels:
            await post_welcome(world, channel, self._welcome(world))

        self._upstream = await self._open_preview(world.general)
        live = LiveSync(env, lambda: self._current().preview, self.lock)
        live.start()
        self._live = live
        server = self.server = PlaygroundServer(
            token=self.token, upstream=self._current, api=self, lock=self.lock, port=self.options.port
        )
        await server.start()
        stack.push_async_callback(server.close)

    def _settings(self, api_url: str, workdir: Path) -> Settings:
        base = load_settings(self.options.config) if self.options.config is not None else Settings()
        keyring = base.secret_keys
        if keyring is None:
            keyring = KeyRing.from_env_value(generate_key_value(1))
            self.note(
                "Using a throw-away encryption key: API keys stored in this playground are "
                "unreadable once it stops."
            )
        database = (
            base.database
            if self.options.config is not None
            else DatabaseSettings(url=f"sqlite:///{workdir / 'playground.sqlite3'}")
        )
        deadline = min(base.bot.shutdown_deadline_s, SHUTDOWN_DEADLINE_S)
        progress = (
            base.progress
            if self.options.config is not None
            else base.progress.model_copy(update={"edit_interval_s": EDIT_INTERVAL_S})
        )
        return base.model_copy(
            update={
                "progress": progress,
                "bot": base.bot.model_copy(update={"shutdown_deadline_s": deadline}),
                "horde": _with_api_url(base.horde, api_url),
                "database": database,
                "secret_keys": keyring,
            }
        )

    async def _log_in_with_apikey(self, bot: HordeBot, world: World) -> None:
        """Log "you" in with ``--apikey`` the way a member does: ``/login`` and its form.

        Through SimCord, not by calling the bot's services from here: the bot's rate limiter reads
        SimCord's clock inside the bot and the real one outside, and must see one of them only.
        """
        if self.options.horde_url is None:
            return
        if not self.options.apikey:
            self.note(f"AI Horde at {self.options.horde_url}, with its anonymous key.")
            return
        self.note(
            f"AI Horde at {self.options.horde_url}: generations here spend REAL kudos of the "
            "--apikey account."
        )
        shown = await world.you.slash(world.general, "login")
        submitted = await world.you.submit_modal(shown, {_text_input(shown.modal): self.options.apikey})
        answer = ""
        for _ in range(int(LOGIN_TIMEOUT_S / LOGIN_POLL_S)):
            # The bot waits for the Horde after SimCord's action returned: its answer comes later.
            answer = _answer(submitted)
            if answer:
                break
            await asyncio.sleep(LOGIN_POLL_S)
        record = await bot.storage.users.get(world.you.id)
        if record is None:
            raise PlaygroundError(f"the AI Horde refused the --apikey key: {answer or 'no answer'}")
        self.note(f"You are logged in as {record.horde_username}.")

    def _welcome(self, world: World) -> str:
        if self.options.horde_url is None:
            return welcome_text(world, demo_key=demo_key(), horde="a local AI Horde simulator (no kudos)")
        return welcome_text(world, demo_key=None, horde=f"the AI Horde at {self.options.horde_url}")

    async def _open_preview(self, channel: simcord.ChannelHandle) -> Upstream:
        assert self.env is not None
        assert self.world is not None
        preview = self.env.preview(
            channel,
            viewers=list(self.world.members),
            layout="channel",
            timezone=self.timezone,
            port=0,
        )
        await preview.__aenter__()
        return Upstream.of(preview)

    def _current(self) -> Upstream:
        assert self._upstream is not None
        return self._upstream

    async def _stop_world(self) -> None:
        """Close the bot (cancelling its generations on the Horde), then SimCord."""
        assert self.env is not None
        assert self.bot is not None
        await self.bot.close()
        live = getattr(self, "_live", None)
        if live is not None:
            await live.stop()
        if self._upstream is not None:
            await self._upstream.preview.close()
        await self.env.shutdown()

    # -- what the playground's bar asks (server.PlaygroundApi) ---------------------------------------

    def state(self) -> Mapping[str, Any]:
        assert self.world is not None
        current = self._current().preview.channel.id
        return {
            "channels": [
                {"id": str(channel.id), "name": channel.name, "current": channel.id == current}
                for channel in self.world.channels
            ],
            "ageRestricted": str(self.world.after_dark.id),
            "horde": "simulator" if self.options.horde_url is None else "real",
            "demoKey": demo_key() if self.options.horde_url is None else None,
            "reactions": list(REACTIONS),
            "menus": list(MENUS),
        }

    async def switch_channel(self, channel_id: int) -> None:
        assert self.world is not None
        channel = self.world.channel(channel_id)
        if channel is None:
            raise BadRequest("There is no such channel here.")
        if channel.id == self._current().preview.channel.id:
            return
        await self._current().preview.close()
        self._upstream = await self._open_preview(channel)

    async def message_action(self, viewer_id: int, message_id: int, action: str) -> None:
        assert self.world is not None
        assert self.env is not None
        member = self.world.member(viewer_id)
        channel = self._current().preview.channel
        message = next((item for item in channel.history() if item.id == message_id), None)
        if member is None or message is None:
            raise BadRequest("That message or member is not here any more.")
        kind, _, name = action.partition(":")
        try:
            if kind == "react" and name in REACTIONS:
                await member.react(message, name)
            elif kind == "menu" and name in MENUS:
                await member.context_menu(channel, name, message)
            else:
                raise BadRequest(f"Unknown action {action!r}.")
        except (simcord.SetupError, simcord.BackendError) as exc:
            raise BadRequest(str(exc)) from None
        except TimeoutError:
            log.debug("The bot is still working on %s", action)  # it goes on; the page will show it
        republish(self._current().preview)
