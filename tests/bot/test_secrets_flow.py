"""Secrets across a whole flow: no API key (a member's or the server's sponsor key) and no Discord
token ever shows up in a log record, a message, an embed, a component or an error; keys at rest are
ciphertext; a wrong encryption secret stops the start with one clear line; rotation re-encrypts
every stored key and the bot keeps working with the new key.

Unit-level guarantees live elsewhere (``test_logging.py``: the redactor; ``test_crypto.py``: the key
ring and ``rotate_all``; ``storage/test_storage_users.py``: ciphertext columns). Here the real bot
runs end to end at DEBUG, and the raw records are checked *before* any redaction: the redactor is a
safety net, nothing may rely on it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import traceback
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import FAKE_DISCORD_TOKEN

from bot.__main__ import EXIT_FAILURE, main
from bot.config import Settings
from bot.crypto import ENV_VAR, KeyRing, binding, generate_key_value
from bot.storage import UserRecord, open_storage
from bot.storage.keys_at_rest import WrongSecretError, check_keyring, rotate_all
from cogs.accounts import APIKEY_INPUT_ID
from horde_simulator import Simulator

if TYPE_CHECKING:
    import simcord
    from conftest import Server

ALICE_KEY = "sim-alice-key-00000001"
SPONSOR = "sim-bob-key-0000000002"  # the Horde user bob's key, lent to the server
UNKNOWN_KEY = "sim-unknown-key-000042"
SECRETS = (ALICE_KEY, SPONSOR, UNKNOWN_KEY, FAKE_DISCORD_TOKEN)


class _Everything(logging.Handler):
    """Every record of every logger, at every level (caplog's handler sits below some loggers'
    own levels; this one is installed with the root at DEBUG)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def all_logs() -> Iterator[list[logging.LogRecord]]:
    handler = _Everything()
    root = logging.getLogger()
    level = root.level
    quiet = {name: logging.getLogger(name).level for name in ("discord", "aiohttp", "asyncio", "bot", "cogs")}
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in quiet:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield handler.records
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        for name, old in quiet.items():
            logging.getLogger(name).setLevel(old)


_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def record_texts(record: logging.LogRecord) -> list[str]:
    """Everything a handler could print from ``record``: the message, its raw parts, the traceback."""
    texts = [
        str(record.msg),
        repr(record.args),
        record.getMessage(),
        record.exc_text or "",
        record.stack_info or "",
    ]
    if record.exc_info and record.exc_info[1] is not None:
        texts.append("".join(traceback.format_exception(*record.exc_info)))
    # Anything passed with extra=... too.
    texts += [repr(value) for key, value in vars(record).items() if key not in _STANDARD_ATTRIBUTES]
    return texts


async def login(server: Server, member: simcord.MemberActor, key: str) -> str:
    shown = await member.slash(server.channel, "login")
    result = await member.submit_modal(shown, {APIKEY_INPUT_ID: key})
    return "\n".join(
        answer.content or ""
        for answer in [*([result.response] if result.response else []), *result.followups]
    )


async def config_set(server: Server, setting: str, value: str) -> str:
    result = await server.admin.slash(server.channel, "config set", setting=setting, value=value)
    return "\n".join(
        answer.content or ""
        for answer in [*([result.response] if result.response else []), *result.followups]
    )


def everything_discord_saw(server: Server) -> str:
    requests = [[entry.method, entry.path, entry.params, entry.json] for entry in server.env.http_requests]
    shown = [
        [
            message.content,
            [embed.to_dict() for embed in message.embeds],
            [c.to_dict() for c in message.components],
        ]
        for viewer in (server.alice, server.bob, server.admin)
        for message in server.channel.history(viewer=viewer)
    ]
    return json.dumps([requests, shown], default=str) + server.env.transcript()


async def test_a_full_flow_at_debug_leaks_no_key_and_no_token(
    server: Server, horde_sim: Simulator, all_logs: list[logging.LogRecord]
) -> None:
    refused = await login(server, server.alice, UNKNOWN_KEY)
    assert "did not accept" in refused
    assert (await login(server, server.alice, ALICE_KEY)).startswith("Logged in as")
    await server.alice.slash(server.channel, "imagine", prompt=f"a fox, not {ALICE_KEY[:6]}")
    await server.alice.slash(server.channel, "write", prompt="Once upon a time", max_length=16)
    await server.alice.slash(server.channel, "me")
    wrong_sponsor = await config_set(server, "sponsor_key", UNKNOWN_KEY)
    assert "did not accept" in wrong_sponsor
    assert (await config_set(server, "sponsor_key", SPONSOR)).startswith("Changed")
    assert (await config_set(server, "allow_anonymous", "off")).startswith("Changed")
    shown = await server.admin.slash(server.channel, "config show")
    await server.bob.slash(server.channel, "imagine", prompt="a sponsored fox")
    await server.bob.slash(server.channel, "write", prompt="Sponsored words", max_length=16)

    # The flow really ran with both keys.
    jobs = await server.bot.storage.jobs.list_recent(server.alice.id, limit=5)
    jobs += await server.bot.storage.jobs.list_recent(server.bob.id, limit=5)
    assert sorted(job.key_owner for job in jobs) == ["sponsor", "sponsor", "user", "user"]
    assert {request.user.alias for request in horde_sim.state.requests.values()} == {"alice", "bob"}
    assert shown.response is not None or shown.followups
    assert len(all_logs) > 100  # DEBUG from discord.py, aiohttp and the bot
    assert {record.name.split(".")[0] for record in all_logs} >= {"discord", "bot"}

    seen_by_discord = everything_discord_saw(server)
    journal = json.dumps([[job.request_json, job.params_json, job.result_json, job.error] for job in jobs])
    for secret in SECRETS:
        assert secret not in seen_by_discord
        assert secret not in journal
        for record in all_logs:
            for text in record_texts(record):
                assert secret not in text, (record.name, record.getMessage())


async def test_keys_at_rest_are_ciphertext_in_the_database_files(server: Server, settings: Settings) -> None:
    await login(server, server.alice, ALICE_KEY)
    await config_set(server, "sponsor_key", SPONSOR)
    await server.bob.slash(server.channel, "imagine", prompt="a sponsored fox")

    path = Path(settings.database.url.removeprefix("sqlite:///"))
    files = [candidate for candidate in path.parent.glob(path.name + "*") if candidate.is_file()]
    assert path in files
    raw = b"".join(candidate.read_bytes() for candidate in files)  # the database, its WAL and journal
    for secret in (ALICE_KEY, SPONSOR):
        assert secret.encode() not in raw
    with closing(sqlite3.connect(path)) as db:
        [user_token] = [row[0] for row in db.execute("SELECT encrypted_api_key FROM users")]
        [sponsor_token] = [row[0] for row in db.execute("SELECT encrypted_api_key FROM guild_sponsor_keys")]
        audit = json.dumps(db.execute("SELECT * FROM guild_settings_audit").fetchall())
    assert SPONSOR not in audit
    keyring = server.bot.keyring
    user_key = keyring.decrypt(user_token, bound_to=binding("user", server.alice.id))
    sponsor_key = keyring.decrypt(sponsor_token, bound_to=binding("guild", server.guild.id))
    assert (user_key, sponsor_key) == (ALICE_KEY, SPONSOR)
    assert user_token.startswith("a1:")
    assert sponsor_token.startswith("a1:")


async def test_rotation_re_encrypts_every_stored_key_and_the_bot_keeps_using_them(
    server: Server, settings: Settings, horde_sim: Simulator
) -> None:
    await login(server, server.alice, ALICE_KEY)
    await config_set(server, "sponsor_key", SPONSOR)
    new_entry = generate_key_value(2)
    old_entry = f"1:{settings.require_keyring().secret_material()[0]}"
    both = KeyRing.from_env_value(f"{new_entry},{old_entry}")

    async with open_storage(settings.database.url) as storage:  # what `python -m bot rotate-key` does
        assert await rotate_all(storage, both) == 2
        tokens = [
            (column.bound_to(row), token)
            for column in storage.encrypted_columns
            for row, token in (await column.read_tokens()).items()
        ]
    only_new = KeyRing.from_env_value(new_entry)
    assert [only_new.version_of(token) for _owner, token in tokens] == [2, 2]
    keys = sorted(only_new.decrypt(token, bound_to=owner) for owner, token in tokens)
    assert keys == sorted([ALICE_KEY, SPONSOR])

    # Restarted with the new key only, the bot still reads both: alice's own key, the sponsor's for bob.
    server.settings = settings.model_copy(update={"secret_keys": only_new})
    await server.restart()
    await server.alice.slash(server.channel, "imagine", prompt="a fox after the rotation")
    await server.bob.slash(server.channel, "imagine", prompt="a sponsored fox after the rotation")
    [alices] = await server.bot.storage.jobs.list_recent(server.alice.id, limit=5)
    [bobs] = await server.bot.storage.jobs.list_recent(server.bob.id, limit=5)
    assert (alices.key_owner, bobs.key_owner) == ("user", "sponsor")
    assert {request.user.alias for request in horde_sim.state.requests.values()} == {"alice", "bob"}


# -- a wrong encryption secret ---------------------------------------------------------------------


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No secrets from the outside, and the root logger restored after main() configured it."""
    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    monkeypatch.delenv(ENV_VAR, raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


async def _store_keys(url: str, ring: KeyRing, keys: dict[int, str]) -> None:
    async with open_storage(url) as storage:
        for discord_id, key in keys.items():
            await storage.users.upsert(
                UserRecord(
                    discord_id=discord_id,
                    encrypted_api_key=ring.encrypt(key, bound_to=binding("user", discord_id)),
                    horde_user_id=discord_id,
                    horde_username=f"user{discord_id}",
                )
            )


@pytest.mark.usefixtures("clean_environment")
def test_a_wrong_encryption_secret_stops_the_start_with_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'bot.sqlite3'}"
    config = tmp_path / "config.toml"
    config.write_text(f"[database]\nurl = '{url}'\n", encoding="utf-8")
    right, wrong = generate_key_value(1), generate_key_value(1)
    asyncio.run(_store_keys(url, KeyRing.from_env_value(right), {11: ALICE_KEY, 12: SPONSOR}))
    monkeypatch.setenv(ENV_VAR, wrong)
    monkeypatch.setenv("DISCORD_TOKEN", FAKE_DISCORD_TOKEN)

    code = main(["--config", str(config), "run"])

    out, err = capsys.readouterr()
    assert code == EXIT_FAILURE
    assert out == ""
    assert err.count("\n") == 1  # one line, no traceback
    assert err.startswith("error: none of the 2 stored API key(s) checked can be decrypted with ")
    assert ENV_VAR in err
    for secret in (ALICE_KEY, SPONSOR, FAKE_DISCORD_TOKEN, right.split(":", 1)[1], wrong.split(":", 1)[1]):
        assert secret not in err


async def test_the_start_up_check_tells_a_wrong_secret_from_a_few_stale_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bot.sqlite3'}"
    current, dropped = (
        KeyRing.from_env_value(generate_key_value(2)),
        KeyRing.from_env_value(generate_key_value(1)),
    )
    async with open_storage(url) as storage:
        assert await check_keyring(storage, current) == 0  # nothing stored: nothing to check
    await _store_keys(url, current, {11: ALICE_KEY})
    await _store_keys(url, dropped, {12: SPONSOR})

    async with open_storage(url) as storage:
        assert await check_keyring(storage, current) == 1  # one row left by a dropped key: a warning
        with pytest.raises(WrongSecretError) as wrong:
            await check_keyring(storage, KeyRing.from_env_value(generate_key_value(3)))
    assert "none of the 2 stored API key(s) checked" in str(wrong.value)
    assert ALICE_KEY not in str(wrong.value)
