"""The test side of ``bot_process.py``: start real bot processes, talk to them, kill them.

``BotProcesses`` (the ``bot_processes`` fixture of the tests that use it) starts each bot with
``sys.executable`` on a ``config.toml`` written by :func:`write_config`, the secrets in its
environment as production reads them, and a file that keeps its virtual Discord between processes.
Every process it started is killed and reaped when the test ends, passed or failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import asyncpg
from bot_process import load_discord_state, summarize_message
from conftest import FAKE_DISCORD_TOKEN, TEST_CLIENT_AGENT, with_search_path

from bot.config import DISCORD_TOKEN_ENV_VAR
from bot.crypto import ENV_VAR as SECRET_KEYS_ENV_VAR
from bot.storage import JobRecord, Storage, open_storage

RUNNER: Final = Path(__file__).with_name("bot_process.py")
REPOSITORY: Final = Path(__file__).resolve().parents[2]
START_TIMEOUT_S: Final = 20.0
REQUEST_TIMEOUT_S: Final = 10.0
POLL_S: Final = 30.0
"""The bots poll the Horde every 30 virtual seconds: between polls they are parked, so jobs stay in
flight until a test moves SimCord's clock (``advance``)."""


def write_config(
    path: Path,
    *,
    api_url: str,
    database_url: str,
    shutdown_deadline_s: float = 5.0,
    bot: Mapping[str, Any] | None = None,
) -> Path:
    """A production ``config.toml``: the simulator's URL, the database and ``[bot]`` extras."""
    bot_lines = [f"shutdown_deadline_s = {shutdown_deadline_s}", 'log_level = "INFO"']
    bot_lines += [f"{name} = {json.dumps(value)}" for name, value in (bot or {}).items()]
    path.write_text(
        "[bot]\n"
        + "\n".join(bot_lines)
        + f'\n\n[horde]\napi_url = "{api_url}"\nclient_agent = "{TEST_CLIENT_AGENT}"\n'
        + "request_timeout_s = 5.0\n"
        + f'\n[database]\nurl = "{database_url}"\n',
        encoding="utf-8",
    )
    return path


class BotProcessError(RuntimeError):
    """The bot process failed a request, or died; carries the tail of its log."""


@dataclass
class BotProcess:
    """One running ``bot_process.py``; see its docstring for the requests."""

    process: asyncio.subprocess.Process
    log_path: Path
    ready: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def _failure(self, what: str) -> BotProcessError:
        return BotProcessError(f"{what}\n--- bot log (tail) ---\n{self.log()[-4000:]}")

    async def read_line(self, limit_s: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), limit_s)
        except TimeoutError:
            raise self._failure(f"no answer within {limit_s}s") from None
        if not line:
            raise self._failure(f"the bot process exited (status {await self.process.wait()})")
        reply = json.loads(line)
        assert isinstance(reply, dict)
        return reply

    async def request(self, op: str, **fields: Any) -> Any:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"op": op, **fields}).encode() + b"\n")
        await self.process.stdin.drain()
        reply = await self.read_line(REQUEST_TIMEOUT_S)
        if "error" in reply:
            raise self._failure(f"{op} failed in the bot process: {reply['error']}")
        return reply["ok"]

    async def slash(
        self, guild: int, member: str, channel: str, command: str, **options: Any
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "slash", guild=guild, member=member, channel=channel, command=command, options=options
        )
        return result

    async def message(self, channel_id: int, message_id: int) -> dict[str, Any]:
        message: dict[str, Any] = await self.request("message", channel=channel_id, message=message_id)
        return message

    async def guild_settings(self, guild_id: int) -> dict[str, str]:
        """The server's settings as this process resolves them now (its cache included)."""
        shown: dict[str, str] = await self.request("guild_settings", guild=guild_id)
        return shown

    async def advance(self, seconds: float = POLL_S) -> None:
        await self.request("advance", seconds=seconds)

    async def assert_no_errors(self) -> None:
        errors = await self.request("errors")
        assert errors == {"logged": [], "raised": []}, self.log()[-4000:]

    async def kill(self) -> int:
        """SIGKILL: no handler runs, nothing is closed, the Horde is not told."""
        self.process.send_signal(signal.SIGKILL)
        return await self.process.wait()

    async def terminate(self, limit_s: float) -> int:
        """SIGTERM, then the exit status; a process still running after ``limit_s`` fails."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), limit_s)
        except TimeoutError:
            raise self._failure(f"still running {limit_s}s after SIGTERM") from None


@dataclass
class BotProcesses:
    """Starts bot processes and guarantees none outlives the test."""

    tmp_path: Path
    started: list[BotProcess] = field(default_factory=list)

    async def start(
        self, *, config: Path, discord_state: Path, world: Mapping[str, Any], name: str, keys: str
    ) -> BotProcess:
        environment = {
            key: value
            for key, value in os.environ.items()
            if key not in (DISCORD_TOKEN_ENV_VAR, SECRET_KEYS_ENV_VAR)
        }
        environment |= {DISCORD_TOKEN_ENV_VAR: FAKE_DISCORD_TOKEN, SECRET_KEYS_ENV_VAR: keys}
        # As `python -m bot` run from the repository: the packages bot and cogs are importable.
        environment["PYTHONPATH"] = os.pathsep.join(
            [str(REPOSITORY), *filter(None, [environment.get("PYTHONPATH")])]
        )
        log_path = self.tmp_path / f"{name}-{len(self.started)}.log"
        with log_path.open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                str(RUNNER),
                "--config",
                str(config),
                "--discord",
                str(discord_state),
                "--world",
                json.dumps(world),
                "--poll-s",
                str(POLL_S),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env=environment,
            )
        bot = BotProcess(process, log_path)
        self.started.append(bot)
        ready = await bot.read_line(START_TIMEOUT_S)
        if "ready" not in ready:
            raise bot._failure(f"unexpected first line {ready!r}")
        bot.ready = ready["ready"]
        return bot

    async def close(self) -> None:
        for bot in self.started:
            if bot.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    bot.process.kill()
            await bot.process.wait()  # reaped: no zombie
            if bot.process.stdin is not None:
                bot.process.stdin.close()


@contextlib.asynccontextmanager
async def bot_processes(tmp_path: Path) -> AsyncIterator[BotProcesses]:
    processes = BotProcesses(tmp_path)
    try:
        yield processes
    finally:
        await processes.close()


# -- reading what the processes left behind ----------------------------------------------------


def saved_message(discord_state: Path, channel_id: int, message_id: int) -> dict[str, Any]:
    """A message as the virtual Discord saved by a process that has exited holds it."""
    messages = load_discord_state(discord_state)["messages"]
    return summarize_message(messages[channel_id][message_id])


async def journal(storage: Storage, messages: Sequence[tuple[int, int]]) -> list[JobRecord]:
    """The journalled job of each ``(channel id, message id)``, read by a storage of the test's own."""
    records = []
    for channel_id, message_id in messages:
        record = await storage.jobs.get_by_message(channel_id, message_id)
        assert record is not None, f"no job journalled for message {message_id}"
        records.append(record)
    return records


@contextlib.asynccontextmanager
async def fresh_schema(postgres_server: str, prefix: str) -> AsyncIterator[str]:
    """A fresh schema of the test's own, named in the URL (asyncpg sends ``search_path`` as a
    server setting); dropped at the end."""
    schema = f"{prefix}_{uuid.uuid4().hex}"
    admin = await asyncpg.connect(postgres_server)
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        yield with_search_path(postgres_server, schema)
    finally:
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()


@contextlib.asynccontextmanager
async def reading_journal(database_url: str) -> AsyncIterator[Storage]:
    """The test's own connection to the bots' database, to read the journal."""
    async with open_storage(database_url) as storage:
        yield storage


async def eventually(
    check: Callable[[], Awaitable[bool]], *, step: Callable[[], Awaitable[None]], tries: int
) -> None:
    """Run ``step`` until ``check`` holds, at most ``tries`` times (a bound, not a sleep)."""
    for _ in range(tries):
        if await check():
            return
        await step()
    assert await check(), f"not reached after {tries} steps"
