from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import discord
import pytest
import simcord

from bot.__main__ import EXIT_CONFIG_ERROR, build_parser, main, run_until_stopped, sync_commands
from bot.app import app_version, create_bot
from bot.config import Settings
from bot.crypto import ENV_VAR, KeyRing, binding, generate_key_value
from bot.storage import UserRecord, open_storage


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No secrets from the outside, and the root logger restored after main() configured it."""
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    monkeypatch.delenv(ENV_VAR, raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("config_text", "expected"),
    [
        (None, "config.toml: file not found"),
        ("[bot]\nlog_level = 'LOUD'\n", "bot.log_level"),
        ("[horde]\nrequest_timeout_s = 'soon'\n", "horde.request_timeout_s"),
    ],
)
def test_a_configuration_error_is_one_line_and_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], config_text: str | None, expected: str
) -> None:
    path = tmp_path / "config.toml" if config_text is None else _write_config(tmp_path, config_text)

    code = main(["--config", str(path), "run"])

    out, err = capsys.readouterr()
    assert code == EXIT_CONFIG_ERROR
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("error: ")
    assert expected in err


@pytest.mark.parametrize(
    ("command", "environment", "missing"),
    [
        ("run", {}, ["DISCORD_TOKEN", ENV_VAR]),
        ("sync", {}, ["DISCORD_TOKEN", ENV_VAR]),
        ("run", {"DISCORD_TOKEN": "t"}, [ENV_VAR]),
        ("run", {ENV_VAR: generate_key_value(1)}, ["DISCORD_TOKEN"]),
        ("rotate-key", {"DISCORD_TOKEN": "t"}, [ENV_VAR]),
    ],
)
def test_every_missing_secret_is_named_at_once_with_how_to_get_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    environment: dict[str, str],
    missing: list[str],
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    code = main(["--config", str(_write_config(tmp_path, "")), command])

    out, err = capsys.readouterr()
    assert (code, out) == (EXIT_CONFIG_ERROR, "")
    lines = err.splitlines()
    assert [line.split()[3] for line in lines] == missing  # "error: environment variable NAME is not set…"
    for line in lines:
        assert line.startswith("error: environment variable ")
        if ENV_VAR in line:
            assert "horde-bot gen-key" in line
        else:
            assert "https://discord.com/developers/applications" in line


def test_help_names_the_environment_and_the_playground(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])

    assert exited.value.code == 0
    text = capsys.readouterr().out
    for needed in ("DISCORD_TOKEN", ENV_VAR, "horde-bot gen-key", "playground"):
        assert needed in text


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])

    assert exited.value.code == 0
    assert capsys.readouterr().out == f"horde-bot {app_version()}\n"
    assert app_version() != "unknown"


def test_a_start_does_not_warn_about_voice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """discord.py warns once per process that PyNaCl and davey are missing: noise for a bot with no voice."""
    monkeypatch.setattr(discord.VoiceClient, "warn_nacl", True)
    monkeypatch.setattr(discord.VoiceClient, "warn_dave", True)
    monkeypatch.setenv("DISCORD_TOKEN", "t")
    monkeypatch.setenv(ENV_VAR, generate_key_value(1))
    config = _write_config(tmp_path, f"[database]\nurl = 'sqlite:///{tmp_path / 'bot.sqlite3'}'\n")
    started: list[discord.Client] = []

    async def started_and_stopped(bot: discord.Client, token: str) -> None:
        started.append(bot)
        await bot.close()

    monkeypatch.setattr("bot.__main__.run_until_stopped", started_and_stopped)
    caplog.set_level(logging.WARNING)

    assert main(["--config", str(config), "run"]) == 0

    assert len(started) == 1
    assert "voice will NOT be supported" not in caplog.text


def test_gen_key_prints_a_valid_key_ring_entry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gen-key"]) == 0
    assert main(["gen-key", "--key-version", "3"]) == 0

    first, second = capsys.readouterr().out.splitlines()
    assert KeyRing.from_env_value(first).versions == (1,)
    assert KeyRing.from_env_value(second).versions == (3,)
    assert KeyRing.from_env_value(f"{second},{first}").current_version == 3
    assert first.partition(":")[2] != second.partition(":")[2]


def test_gen_key_refuses_a_bad_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gen-key", "--key-version", "0"]) == EXIT_CONFIG_ERROR
    assert capsys.readouterr().err.startswith("error: ")


def test_the_command_line_shape() -> None:
    parser = build_parser()

    default = parser.parse_args([])
    sync = parser.parse_args(["--config", "prod.toml", "sync", "--guild", "123"])

    assert (default.command, default.config) == ("run", "config.toml")
    assert (sync.command, sync.config, sync.guild) == ("sync", "prod.toml", 123)
    assert parser.parse_args(["sync"]).guild is None


def test_rotate_key_re_encrypts_the_stored_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'bot.sqlite3'}"
    config = _write_config(tmp_path, f"[database]\nurl = '{url}'\n")
    old_entry, new_entry = generate_key_value(1), generate_key_value(2)
    old = KeyRing.from_env_value(old_entry)

    async def store_users() -> None:
        async with open_storage(url) as storage:
            for discord_id in (11, 12):
                record = UserRecord(
                    discord_id=discord_id,
                    encrypted_api_key=old.encrypt(
                        f"key-of-{discord_id}", bound_to=binding("user", discord_id)
                    ),
                    horde_user_id=discord_id,
                    horde_username=f"user#{discord_id}",
                )
                await storage.users.upsert(record)

    async def stored_keys() -> dict[int, str]:
        async with open_storage(url) as storage:
            users = [await storage.users.get(discord_id) for discord_id in (11, 12)]
            return {user.discord_id: user.encrypted_api_key for user in users if user is not None}

    asyncio.run(store_users())
    monkeypatch.setenv(ENV_VAR, f"{new_entry},{old_entry}")

    assert main(["--config", str(config), "rotate-key"]) == 0
    assert main(["--config", str(config), "rotate-key"]) == 0

    first, second = capsys.readouterr().out.splitlines()
    assert first == "Re-encrypted 2 stored value(s) with key version 2, each bound to its row."
    assert second == "Re-encrypted 0 stored value(s) with key version 2, each bound to its row."
    new = KeyRing.from_env_value(new_entry)
    tokens = asyncio.run(stored_keys())
    assert {discord_id: new.version_of(token) for discord_id, token in tokens.items()} == {11: 2, 12: 2}
    assert {
        discord_id: new.decrypt(token, bound_to=binding("user", discord_id))
        for discord_id, token in tokens.items()
    } == {
        11: "key-of-11",
        12: "key-of-12",
    }


async def test_sync_publishes_the_commands_globally(settings: Settings) -> None:
    bot = await create_bot(settings)
    async with simcord.run(bot) as env:
        guild = env.create_guild()
        channel = guild.create_text_channel("general")
        member = guild.add_member(env.create_user("alice"))
        assert member.available_commands(channel) == ()

        synced = await sync_commands(bot, None)

        assert {command.name for command in synced} == {command.name for command in bot.tree.get_commands()}
        assert "help" in {command.name for command in synced}
        assert [entry.path for entry in env.http_requests if entry.method == "PUT"] == [
            f"/applications/{bot.application_id}/commands"
        ]
        assert set(member.available_commands(channel)) >= {"about", "help"}
    await bot.close()


async def test_sync_to_one_guild_copies_the_global_commands_there(settings: Settings) -> None:
    bot = await create_bot(settings)
    async with simcord.run(bot) as env:
        guild = env.create_guild()
        other = env.create_guild("Other")
        member = guild.add_member(env.create_user("alice"))
        outsider = other.add_member(env.create_user("bob"))

        synced = await sync_commands(bot, guild.id)

        assert {command.guild_id for command in synced} == {guild.id}
        assert [entry.path for entry in env.http_requests if entry.method == "PUT"] == [
            f"/applications/{bot.application_id}/guilds/{guild.id}/commands"
        ]
        channel = guild.create_text_channel("general")
        assert set(member.available_commands(channel)) >= {"about", "help"}
        assert outsider.available_commands(other.create_text_channel("general")) == ()
        result = await member.slash(channel, "help")
        assert result.response is not None
    await bot.close()


class _Bot:
    """Stands in for the bot in the signal tests: ``start`` runs until ``close`` is called."""

    def __init__(self) -> None:
        self.closed = asyncio.Event()
        self.close_calls = 0
        self.token: str | None = None

    async def start(self, token: str) -> None:
        self.token = token
        await self.closed.wait()

    async def close(self) -> None:
        self.close_calls += 1
        self.closed.set()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_stop_signal_closes_the_bot_gracefully(sig: signal.Signals) -> None:
    bot = _Bot()
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, os.kill, os.getpid(), sig)

    await asyncio.wait_for(run_until_stopped(bot, "token"), timeout=5)

    assert bot.token == "token"
    assert bot.close_calls == 2  # once for the signal, once more (a no-op for HordeBot) on the way out
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) == signal.default_int_handler


async def test_the_bot_is_closed_when_it_stops_on_its_own() -> None:
    class FailsToLogIn(_Bot):
        async def start(self, token: str) -> None:
            raise discord.LoginFailure("Improper token has been passed.")

    bot = FailsToLogIn()
    with pytest.raises(discord.LoginFailure):
        await run_until_stopped(bot, "token")
    assert bot.close_calls == 1
