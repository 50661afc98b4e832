"""One real bot process for the crash, shutdown and sharding tests (run as a script, not collected).

::

    python tests/reliability/bot_process.py --config CONFIG --discord STATE --world WORLD_JSON [--poll-s S]

The process starts like production (``python -m bot``): :func:`bot.config.load_settings` reads
``CONFIG`` and the secrets from the environment (``DISCORD_TOKEN``, ``HORDE_BOT_SECRET_KEYS``),
:func:`bot.logging.setup_logging` installs the redacting stderr handler, :func:`bot.app.create_bot`
builds the real bot, and :func:`bot.__main__.run_until_stopped` runs it, so SIGINT/SIGTERM go through
the production signal handlers and ``HordeBot.close``. Only Discord is simulated: the bot runs in a
SimCord ``Env`` of its own (SimCord is in-process only). The one test-only knob is ``--poll-s``, the
Horde poll interval in *virtual* seconds (the bot parks between polls; the test moves SimCord's clock
with the ``advance`` command), which production cannot set.

**Discord outlives the bot.** Real Discord keeps users, guilds, channels, messages and commands when
the bot dies, and a restarted bot must find its old progress messages by id. SimCord keeps that
state in its ``Backend``; this harness pickles the Backend's state dicts to ``STATE`` (atomically:
write then rename) after every command, on ``snapshot`` and when the process exits cleanly, and a
process started on an existing ``STATE`` restores them into its ``Env`` *before* the bot attaches.
``simcord.Backend`` is importable but not public API; this relies on SimCord 3.2.1 internals
(``Env.backend``, the ``BackendBase`` attributes, the handle constructors) and is acceptable only in
this harness (SimCord is pinned exactly in pyproject.toml). A SIGKILL loses what the bot did after
the last saved command, which the tests avoid by asking for a ``snapshot`` right before the kill
(between commands the bot is parked: its clock only moves on ``advance``).

The world (``WORLD_JSON``) is built on the first start only::

    {"guilds": [{"id": 123, "name": "A", "channels": ["general"], "admins": ["admin"],
                 "members": ["alice", "bob"]}],
     "clock_offset_s": 86400}

``clock_offset_s`` starts this virtual Discord's clock later, so that processes sharing a
database (the shards of one bot) never hand out the same channel or message ids.

``admins`` get a role with Manage Server. Commands are synced on the first start (as
``python -m bot sync`` would have done once); a restarted process finds them in the restored state.

The control channel is JSON lines: one request per line on stdin, one reply per line on stdout
(``{"ok": ...}`` or ``{"error": "Type: text"}``); logs go to stderr. The first line on stdout is
``{"ready": ...}``. Requests (``op``):

* ``world`` → ``{guild id: {"channels": {name: id}, "members": {name: id}}}``
* ``slash`` (``guild``, ``member``, ``channel``, ``command``, ``options``) → the interaction result
* ``message`` (``channel``, ``message``) → the message as :func:`summarize_message` shows it
* ``advance`` (``seconds``) → moves SimCord's virtual clock (the bot's timers fire)
* ``guild_settings`` (``guild``) → ``{name: shown value}`` as this process's
  ``GuildSettingsService`` resolves it now, cache included (what ``/config show`` would print
  here). A direct call, since Discord sends a process only its own shards' interactions: how
  another shard's process sees a server's settings can't be asked through Discord.
* ``errors`` → unhandled errors so far (logged with a traceback, or raised and not expected)
* ``snapshot`` → saves ``STATE`` now

Closing stdin (the test is gone) shuts the bot down as SIGTERM would.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import pickle
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import discord
import simcord
from simcord.backend import Backend
from simcord.backend.models import Message
from simcord.builders import ChannelHandle, GuildHandle, UserHandle

from bot.__main__ import run_until_stopped
from bot.app import HordeBot, create_bot
from bot.config import load_settings
from bot.horde import PollPolicy
from bot.logging import SecretRedactor, setup_logging
from bot.tree import is_expected_error

# Backend attributes that are not Discord's state: live listeners (closures) and per-run logs.
_TRANSIENT: Final = frozenset({"subscribers", "http_requests", "transcript"})
_WATCHED_LOGGERS: Final = ("bot", "cogs", "discord", "asyncio")


def save_discord_state(backend: Backend, path: Path) -> None:
    state = {name: value for name, value in vars(backend).items() if name not in _TRANSIENT}
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(pickle.dumps(state))
    os.replace(temporary, path)  # a kill mid-write leaves the previous state whole


def load_discord_state(path: Path) -> dict[str, Any]:
    state = pickle.loads(path.read_bytes())  # our own file, written by this harness
    assert isinstance(state, dict)
    return state


def restore_discord_state(backend: Backend, path: Path) -> None:
    for name, value in load_discord_state(path).items():
        setattr(backend, name, value)


def summarize_message(message: Message) -> dict[str, Any]:
    """What a member sees of a message (JSON-safe): also used by the tests on a saved state."""
    return {
        "id": message.id,
        "channel_id": message.channel_id,
        "author_id": message.author_id,
        "content": message.content,
        "edited": message.edited_timestamp is not None,
        "embeds": message.embeds,
        "attachments": [attachment["filename"] for attachment in message.attachments],
        "custom_ids": [
            component["custom_id"]
            for row in message.components
            for component in row.get("components", ())
            if "custom_id" in component
        ],
    }


class _ErrorCollector(logging.Handler):
    """ERROR records with a traceback from the bot's loggers: an exception nobody handled."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        watched = any(record.name == name or record.name.startswith(f"{name}.") for name in _WATCHED_LOGGERS)
        if watched and record.exc_info is not None:
            self.records.append(f"{record.name}: {record.getMessage()}")


class SimulatedDiscord:
    """The bot attached to a SimCord ``Env``, shaped like what ``run_until_stopped`` runs:
    ``start`` returns once the bot has closed; ``close`` closes it (once)."""

    def __init__(self, bot: HordeBot, *, state_path: Path, world: Mapping[str, Any]) -> None:
        self.bot = bot
        self.state_path = state_path
        self.world = world
        self.env = simcord.Env(bot, check_errors=False)
        self.errors = _ErrorCollector()
        self._stopped = asyncio.Event()
        self._closing: asyncio.Task[None] | None = None
        self._control: asyncio.Task[None] | None = None

    async def start(self, token: str) -> None:
        del token  # SimCord logs the bot in with its own fake token
        logging.getLogger().addHandler(self.errors)
        restored = self.state_path.exists()
        if restored:
            restore_discord_state(self.env.backend, self.state_path)
        else:
            # Snowflakes come from the virtual clock: worlds of different processes built at the same
            # virtual instant would reuse each other's channel and message ids, which real Discord
            # never does. The bot's own user (made at the Backend's creation) stays the same.
            self.env.backend.advance_clock(float(self.world.get("clock_offset_s", 0.0)))
        await self.env.start()
        if not restored:
            self._build_world()
            await self.bot.tree.sync()
        self.save()
        self._control = asyncio.create_task(self._serve(), name="bot_process.control")
        _reply({"ready": {"pid": os.getpid(), "restored": restored, "bot_id": self.env.backend.bot_user.id}})
        await self._stopped.wait()
        self._control.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._control
        await self.env.shutdown()
        self.save()

    async def close(self) -> None:
        if self._closing is None:
            self._closing = asyncio.create_task(self._close(), name="bot_process.close")
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        try:
            await self.bot.close()
        finally:
            self._stopped.set()

    def save(self) -> None:
        save_discord_state(self.env.backend, self.state_path)

    # -- the world ---------------------------------------------------------------------------------

    def _build_world(self) -> None:
        env = self.env
        for spec in self.world["guilds"]:
            guild = env.create_guild(spec.get("name", "Test Guild"), id=spec["id"])
            for name in spec.get("channels", ("general",)):
                guild.create_text_channel(name)
            admins = guild.create_role("Admins", permissions=discord.Permissions(manage_guild=True))
            for name in spec.get("admins", ()):
                guild.add_member(env.create_user(name), roles=[admins])
            for name in spec.get("members", ()):
                guild.add_member(env.create_user(name))

    def _guild(self, guild_id: int) -> GuildHandle:
        return GuildHandle(self.env, self.env.backend.get_guild(guild_id))

    def _channel(self, guild: GuildHandle, name: str) -> ChannelHandle:
        backend = self.env.backend
        for channel_id in backend.get_guild(guild.id).channel_ids:
            if backend.channels[channel_id].name == name:
                return ChannelHandle(self.env, guild, backend.channels[channel_id])
        raise KeyError(f"no channel {name!r} in guild {guild.id}")

    def _member(self, guild: GuildHandle, name: str) -> simcord.MemberActor:
        backend = self.env.backend
        for user_id in backend.get_guild(guild.id).members:
            user = backend.users[user_id]
            if user.name == name:
                return simcord.MemberActor(self.env, guild, UserHandle(self.env, user))
        raise KeyError(f"no member {name!r} in guild {guild.id}")

    def _describe_world(self) -> dict[str, Any]:
        backend = self.env.backend
        described = {}
        for spec in self.world["guilds"]:
            guild = backend.get_guild(spec["id"])
            described[str(guild.id)] = {
                "channels": {backend.channels[cid].name: cid for cid in guild.channel_ids},
                "members": {backend.users[uid].name: uid for uid in guild.members},
            }
        return described

    # -- the control channel -----------------------------------------------------------------------

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            request = json.loads(line)
            try:
                reply = {"ok": await self._handle(request)}
            except Exception as exc:
                traceback.print_exc(file=sys.stderr)
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            self.save()
            _reply(reply)
        # stdin closed: the test is gone, so stop as on SIGTERM.
        await self.close()

    async def _handle(self, request: Mapping[str, Any]) -> Any:
        op = request["op"]
        if op == "world":
            return self._describe_world()
        if op == "slash":
            guild = self._guild(request["guild"])
            member = self._member(guild, request["member"])
            channel = self._channel(guild, request["channel"])
            result = await member.slash(channel, request["command"], **request.get("options", {}))
            response = result.response
            return {
                "acknowledged": result.acknowledged,
                "deferred": result.deferred,
                "ephemeral": result.ephemeral,
                "response": None if response is None else self._message(response.channel_id, response.id),
                "followups": [self._message(each.channel_id, each.id) for each in result.followups],
            }
        if op == "message":
            return self._message(request["channel"], request["message"])
        if op == "advance":
            await self.env.advance_time(float(request["seconds"]))
            return None
        if op == "guild_settings":
            service = self.bot.guild_settings
            shown = service.show(await service.get(request["guild"]))
            return {setting.name: setting.value for setting in shown}
        if op == "errors":
            unexpected = [repr(error) for error in self.env.errors if not is_expected_error(error)]
            return {"logged": self.errors.records, "raised": unexpected}
        if op == "snapshot":
            self.save()
            return None
        raise ValueError(f"unknown op {op!r}")

    def _message(self, channel_id: int, message_id: int) -> dict[str, Any]:
        return summarize_message(self.env.backend.get_message(channel_id, message_id))


def _reply(payload: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def poll_policy(interval_s: float) -> PollPolicy:
    return PollPolicy(
        min_interval=interval_s,
        max_interval=interval_s,
        processing_max_interval=interval_s,
        unknown_wait_interval=interval_s,
    )


async def serve(args: argparse.Namespace) -> None:
    settings = load_settings(args.config)
    redactor = setup_logging(settings.bot.log_level, redactor=SecretRedactor(settings.secret_values()))
    bot = await create_bot(settings, redactor=redactor, poll_policy=poll_policy(args.poll_s))
    discord_ = SimulatedDiscord(bot, state_path=Path(args.discord), world=json.loads(args.world))
    await run_until_stopped(discord_, settings.require_token())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--discord", required=True, help="the file that keeps the virtual Discord's state")
    parser.add_argument("--world", required=True, help="JSON: the guilds to create on the first start")
    parser.add_argument("--poll-s", type=float, default=30.0, help="Horde poll interval, virtual seconds")
    asyncio.run(serve(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
