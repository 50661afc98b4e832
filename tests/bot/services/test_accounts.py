"""AccountService against the AI Horde simulator and a real SQLite file."""

from __future__ import annotations

import logging
import sqlite3
import traceback
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import TEST_CLIENT_AGENT
from cryptography.fernet import Fernet

from bot.crypto import KeyRing, binding, generate_key_value, is_bound_token
from bot.errors import BotError, HordeUnavailableError, NotLoggedInError
from bot.horde import (
    ANON_API_KEY,
    AIHordeAPIAsyncClientSession,
    AIHordeAPIAsyncSimpleClient,
    RetryPolicy,
    UserDetailsResponse,
)
from bot.logging import REDACTED, SecretRedactor
from bot.services.accounts import (
    ANONYMOUS_KEY_MESSAGE,
    MALFORMED_KEY_MESSAGE,
    REGISTER_URL,
    STORED_KEY_NOT_YOURS_MESSAGE,
    AccountService,
    InvalidAPIKeyError,
    StoredKeyNotYoursError,
    StoredKeyRejectedError,
    StoredKeyUnreadableError,
)
from bot.services.keys import ResolvedKey
from bot.storage import SQLiteStorage, SQLiteURL, UserRecord
from bot.storage.sqlite_migrations import MIGRATIONS
from horde_simulator import Fault, Simulator

ALICE_KEY = "sim-alice-key-00000001"
BOB_KEY = "sim-bob-key-0000000002"
UNKNOWN_KEY = "nobody-has-this-key-01"
ALICE_ID = 1001
BOB_ID = 1002
RETRY = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.01)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "bot.sqlite3"


@pytest.fixture
async def storage(db_path: Path) -> AsyncIterator[SQLiteStorage]:
    async with SQLiteStorage(SQLiteURL(db_path)) as opened:
        yield opened


@pytest.fixture
async def horde(horde_sim: Simulator) -> AsyncIterator[AIHordeAPIAsyncSimpleClient]:
    async with AIHordeAPIAsyncClientSession(
        base_url=horde_sim.base_url, client_agent=TEST_CLIENT_AGENT, retry=RETRY
    ) as session:
        yield AIHordeAPIAsyncSimpleClient(horde_client_session=session)


@pytest.fixture
def redactor() -> SecretRedactor:
    return SecretRedactor()


@pytest.fixture
def accounts(
    storage: SQLiteStorage, keyring: KeyRing, horde: AIHordeAPIAsyncSimpleClient, redactor: SecretRedactor
) -> AccountService:
    return AccountService(storage, keyring, horde, redactor=redactor)


def raw_user_rows(db_path: Path) -> list[dict[str, object]]:
    with sqlite3.connect(db_path) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute("SELECT * FROM users")]


def assert_not_leaked(key: str, error: BaseException) -> None:
    assert key not in str(error)
    assert key not in repr(error)
    assert isinstance(error, BotError)
    assert key not in error.user_message
    assert key not in "".join(traceback.format_exception(error))


# -- login -------------------------------------------------------------------------------------


async def test_login_stores_only_ciphertext(
    accounts: AccountService, keyring: KeyRing, db_path: Path, redactor: SecretRedactor
) -> None:
    record = await accounts.login(ALICE_ID, ALICE_KEY)

    assert (record.discord_id, record.horde_user_id, record.horde_username) == (ALICE_ID, 1, "alice#1")
    [row] = raw_user_rows(db_path)
    assert row["discord_id"] == ALICE_ID
    assert all(ALICE_KEY not in str(value) for value in row.values())
    assert isinstance(row["encrypted_api_key"], str)
    assert keyring.decrypt(row["encrypted_api_key"], bound_to=binding("user", ALICE_ID)) == ALICE_KEY
    assert ALICE_KEY not in repr(record)
    assert redactor.redact(f"key={ALICE_KEY}") == f"key={REDACTED}"


async def test_login_strips_whitespace(accounts: AccountService, keyring: KeyRing, db_path: Path) -> None:
    await accounts.login(ALICE_ID, f"  {ALICE_KEY}\n")

    [row] = raw_user_rows(db_path)
    assert isinstance(row["encrypted_api_key"], str)
    assert keyring.decrypt(row["encrypted_api_key"], bound_to=binding("user", ALICE_ID)) == ALICE_KEY


async def test_login_again_replaces_the_account(accounts: AccountService, storage: SQLiteStorage) -> None:
    await accounts.login(ALICE_ID, ALICE_KEY)
    record = await accounts.login(ALICE_ID, BOB_KEY)

    assert record.horde_username == "bob#2"
    assert (await accounts.resolve_key(ALICE_ID)).apikey == BOB_KEY


@pytest.mark.parametrize("fault", [None, Fault.http(401)], ids=["unknown-key-404", "http-401"])
async def test_a_key_the_horde_rejects_is_not_stored(
    accounts: AccountService,
    horde_sim: Simulator,
    db_path: Path,
    fault: Fault | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    if fault is not None:
        horde_sim.state.faults.script("find_user", fault)

    with pytest.raises(InvalidAPIKeyError) as caught:
        await accounts.login(ALICE_ID, UNKNOWN_KEY if fault is None else ALICE_KEY)

    assert "not accept" in caught.value.user_message
    assert REGISTER_URL in caught.value.user_message
    assert not isinstance(caught.value, StoredKeyRejectedError)
    assert raw_user_rows(db_path) == []
    assert horde_sim.counters.calls("find_user") == 1
    for key in (UNKNOWN_KEY, ALICE_KEY):
        assert_not_leaked(key, caught.value)
        assert all(key not in record.getMessage() for record in caplog.records)


async def test_the_anonymous_key_is_refused_without_asking_the_horde(
    accounts: AccountService, horde_sim: Simulator, db_path: Path
) -> None:
    with pytest.raises(InvalidAPIKeyError) as caught:
        await accounts.login(ALICE_ID, f" {ANON_API_KEY} ")

    assert caught.value.user_message == ANONYMOUS_KEY_MESSAGE
    assert "anonymous key" in caught.value.user_message
    assert horde_sim.counters.calls("find_user") == 0
    assert raw_user_rows(db_path) == []


@pytest.mark.parametrize("malformed", ["too-short-key", "has spaces in the key!", "x" * 40, ""])
async def test_a_malformed_key_is_refused_without_asking_the_horde(
    accounts: AccountService, horde_sim: Simulator, db_path: Path, malformed: str
) -> None:
    with pytest.raises(InvalidAPIKeyError) as caught:
        await accounts.login(ALICE_ID, malformed)

    assert caught.value.user_message == MALFORMED_KEY_MESSAGE
    if malformed:
        assert_not_leaked(malformed, caught.value)
    assert horde_sim.counters.calls("find_user") == 0
    assert raw_user_rows(db_path) == []


async def test_a_shared_key_uuid_has_an_accepted_shape(
    accounts: AccountService, horde_sim: Simulator
) -> None:
    # The simulator knows no shared keys, so the Horde rejects it; the point is that it was asked.
    with pytest.raises(InvalidAPIKeyError) as caught:
        await accounts.login(ALICE_ID, "6f1c2b7e-8a4d-4c3b-9e2f-1a2b3c4d5e6f")

    assert caught.value.user_message != MALFORMED_KEY_MESSAGE
    assert horde_sim.counters.calls("find_user") == 1


@pytest.mark.parametrize("fault", [Fault.http(503), Fault.drop()], ids=["http-503", "connection-dropped"])
async def test_horde_down_is_horde_unavailable(
    accounts: AccountService, horde_sim: Simulator, db_path: Path, fault: Fault
) -> None:
    horde_sim.state.faults.script("find_user", fault, times=RETRY.max_attempts)

    with pytest.raises(HordeUnavailableError) as caught:
        await accounts.login(ALICE_ID, ALICE_KEY)

    assert "try again" in caught.value.user_message
    assert_not_leaked(ALICE_KEY, caught.value)
    assert raw_user_rows(db_path) == []


async def test_horde_unreachable_is_horde_unavailable(
    storage: SQLiteStorage, keyring: KeyRing, unused_tcp_port: int
) -> None:
    async with AIHordeAPIAsyncClientSession(
        base_url=f"http://127.0.0.1:{unused_tcp_port}/api/", client_agent=TEST_CLIENT_AGENT, retry=RETRY
    ) as session:
        accounts = AccountService(storage, keyring, AIHordeAPIAsyncSimpleClient(horde_client_session=session))
        with pytest.raises(HordeUnavailableError):
            await accounts.login(ALICE_ID, ALICE_KEY)
    assert await storage.users.get(ALICE_ID) is None


class _AnswersWithoutIdentity(AIHordeAPIAsyncSimpleClient):
    async def find_user(self, apikey: str | None = None) -> UserDetailsResponse:
        return UserDetailsResponse(kudos=1.0)


async def test_a_find_user_answer_without_id_stores_nothing(storage: SQLiteStorage, keyring: KeyRing) -> None:
    horde = _AnswersWithoutIdentity()
    try:
        with pytest.raises(HordeUnavailableError):
            await AccountService(storage, keyring, horde).login(ALICE_ID, ALICE_KEY)
    finally:
        await horde.close()
    assert await storage.users.get(ALICE_ID) is None


# -- logout ------------------------------------------------------------------------------------


async def test_logout_deletes_the_key(accounts: AccountService, db_path: Path) -> None:
    await accounts.login(ALICE_ID, ALICE_KEY)

    assert await accounts.logout(ALICE_ID) is True
    assert raw_user_rows(db_path) == []
    assert (await accounts.resolve_key(ALICE_ID)).is_anonymous
    assert await accounts.logout(ALICE_ID) is False


# -- profile -----------------------------------------------------------------------------------


async def test_profile_is_fresh_from_the_horde(accounts: AccountService, horde_sim: Simulator) -> None:
    await accounts.login(ALICE_ID, ALICE_KEY)
    horde_sim.state.users[1].kudos = 1234.0
    horde_sim.state.expire_caches()  # the Horde keeps a find_user answer 30 s: as if they passed
    calls = horde_sim.counters.calls("find_user")

    profile = await accounts.profile(ALICE_ID)

    assert horde_sim.counters.calls("find_user") == calls + 1
    assert (profile.username, profile.kudos, profile.concurrency, profile.worker_count) == (
        "alice#1",
        1234.0,
        30,
        0,
    )


async def test_profile_follows_a_rename_on_the_horde(
    accounts: AccountService, horde_sim: Simulator, storage: SQLiteStorage
) -> None:
    await accounts.login(ALICE_ID, ALICE_KEY)
    horde_sim.state.users[1].alias = "alicia"
    horde_sim.state.expire_caches()  # the Horde keeps a find_user answer 30 s: as if they passed

    assert (await accounts.profile(ALICE_ID)).username == "alicia#1"
    stored = await storage.users.get(ALICE_ID)
    assert stored is not None
    assert stored.horde_username == "alicia#1"
    assert (await accounts.resolve_key(ALICE_ID)).horde_username == "alicia#1"


async def test_a_key_stored_before_binding_still_works_and_is_bound_when_its_row_is_rewritten(
    tmp_path: Path, keyring: KeyRing, horde: AIHordeAPIAsyncSimpleClient, horde_sim: Simulator
) -> None:
    url = SQLiteURL(tmp_path / "older.sqlite3")
    legacy = f"v1:{Fernet(keyring.secret_material()[0]).encrypt(ALICE_KEY.encode()).decode()}"
    async with SQLiteStorage(url, migrations=[m for m in MIGRATIONS if m.number < 5]) as older_bot:
        record = UserRecord(
            discord_id=ALICE_ID, encrypted_api_key=legacy, horde_user_id=1, horde_username="a"
        )
        await older_bot.users.upsert(record)

    async with SQLiteStorage(url) as storage:
        accounts = AccountService(storage, keyring, horde)
        assert (await accounts.resolve_key(ALICE_ID)).apikey == ALICE_KEY
        horde_sim.state.users[1].alias = "alicia"  # the rename rewrites the row: bound on the way
        assert (await accounts.profile(ALICE_ID)).username == "alicia#1"
        stored = await storage.users.get(ALICE_ID)
        assert stored is not None
        assert is_bound_token(stored.encrypted_api_key)
        assert (await accounts.resolve_key(ALICE_ID)).apikey == ALICE_KEY


async def test_profile_when_not_logged_in(accounts: AccountService, horde_sim: Simulator) -> None:
    with pytest.raises(NotLoggedInError) as caught:
        await accounts.profile(ALICE_ID)

    assert "/login" in caught.value.user_message
    assert "anonymous" in caught.value.user_message
    assert horde_sim.counters.calls("find_user") == 0


async def test_profile_with_a_key_the_horde_no_longer_accepts(
    accounts: AccountService, horde_sim: Simulator
) -> None:
    await accounts.login(ALICE_ID, ALICE_KEY)
    horde_sim.state.users[1].api_key = "alice-reset-her-key-01"

    with pytest.raises(StoredKeyRejectedError) as caught:
        await accounts.profile(ALICE_ID)

    assert "/login again" in caught.value.user_message
    assert_not_leaked(ALICE_KEY, caught.value)


async def test_profile_when_the_horde_is_down(accounts: AccountService, horde_sim: Simulator) -> None:
    await accounts.login(ALICE_ID, ALICE_KEY)
    horde_sim.state.faults.script("find_user", Fault.http(503), times=RETRY.max_attempts)

    with pytest.raises(HordeUnavailableError):
        await accounts.profile(ALICE_ID)


# -- resolve_key -------------------------------------------------------------------------------


async def test_resolve_key_gives_the_users_own_key(accounts: AccountService) -> None:
    await accounts.login(ALICE_ID, ALICE_KEY)

    resolved = await accounts.resolve_key(ALICE_ID, guild_id=42)

    assert resolved == ResolvedKey(apikey=ALICE_KEY, owner="user", horde_username="alice#1")
    assert not resolved.is_anonymous
    assert ALICE_KEY not in repr(resolved)
    assert ALICE_KEY not in str(resolved)
    assert "alice#1" in repr(resolved)


async def test_resolve_key_is_anonymous_without_a_login(accounts: AccountService) -> None:
    resolved = await accounts.resolve_key(ALICE_ID)

    assert resolved.apikey == ANON_API_KEY
    assert resolved.owner == "anonymous"
    assert resolved.horde_username is None
    assert resolved.is_anonymous


async def test_a_key_stored_by_an_earlier_run_is_registered_with_the_redactor(
    storage: SQLiteStorage, keyring: KeyRing, horde: AIHordeAPIAsyncSimpleClient
) -> None:
    await AccountService(storage, keyring, horde).login(ALICE_ID, ALICE_KEY)
    redactor = SecretRedactor()

    await AccountService(storage, keyring, horde, redactor=redactor).resolve_key(ALICE_ID)

    assert ALICE_KEY not in redactor.redact(f"apikey: {ALICE_KEY}")


async def test_a_key_ring_that_lost_the_key_gives_a_clear_error(
    accounts: AccountService,
    storage: SQLiteStorage,
    horde: AIHordeAPIAsyncSimpleClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await accounts.login(ALICE_ID, ALICE_KEY)
    # The operator rotated to version 2 and dropped version 1 before re-encrypting the rows.
    rotated = AccountService(storage, KeyRing.from_env_value(generate_key_value(2)), horde)
    caplog.set_level(logging.DEBUG)

    for call in (rotated.resolve_key(ALICE_ID), rotated.profile(ALICE_ID)):
        with pytest.raises(StoredKeyUnreadableError) as caught:
            await call
        assert "/login again" in caught.value.user_message
        assert_not_leaked(ALICE_KEY, caught.value)

    errors = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 2
    assert all(str(ALICE_ID) in record.getMessage() for record in errors)
    assert all("key version 1" in record.getMessage() for record in errors)
    assert all(record.exc_info is None for record in errors)


async def test_a_tampered_token_gives_the_same_clear_error(accounts: AccountService, db_path: Path) -> None:
    await accounts.login(ALICE_ID, ALICE_KEY)
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE users SET encrypted_api_key = 'a1:not-a-token'")

    with pytest.raises(StoredKeyUnreadableError):
        await accounts.resolve_key(ALICE_ID)


async def test_a_key_moved_to_another_members_row_is_refused(
    accounts: AccountService, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Whoever can write the database copies alice's stored key onto bob's row.
    await accounts.login(ALICE_ID, ALICE_KEY)
    with sqlite3.connect(db_path) as conn:
        conn.execute(
            "INSERT INTO users (discord_id, encrypted_api_key, horde_user_id, horde_username, created_at, "
            "updated_at) SELECT ?, encrypted_api_key, horde_user_id, 'bob#2', created_at, updated_at "
            "FROM users WHERE discord_id = ?",
            (BOB_ID, ALICE_ID),
        )

    for call in (accounts.resolve_key(BOB_ID), accounts.profile(BOB_ID)):
        with pytest.raises(StoredKeyNotYoursError) as caught:
            await call
        assert caught.value.user_message == STORED_KEY_NOT_YOURS_MESSAGE
        assert_not_leaked(ALICE_KEY, caught.value)
    assert (await accounts.resolve_key(ALICE_ID)).apikey == ALICE_KEY  # alice's own row still works
    [error, _again] = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert f"Refusing the stored API key of Discord user {BOB_ID}" in error.getMessage()
    assert "fails authentication" in error.getMessage()


async def test_logging_in_again_after_a_lost_key_works(
    accounts: AccountService, storage: SQLiteStorage, horde: AIHordeAPIAsyncSimpleClient
) -> None:
    await accounts.login(ALICE_ID, ALICE_KEY)
    rotated = AccountService(storage, KeyRing.from_env_value(generate_key_value(2)), horde)

    await rotated.login(ALICE_ID, ALICE_KEY)

    assert (await rotated.resolve_key(ALICE_ID)).apikey == ALICE_KEY


async def test_the_service_never_logs_a_key(
    accounts: AccountService, horde_sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    await accounts.login(ALICE_ID, ALICE_KEY)
    await accounts.profile(ALICE_ID)
    await accounts.resolve_key(ALICE_ID)
    horde_sim.state.faults.script("find_user", Fault.http(503), times=RETRY.max_attempts)
    with pytest.raises(HordeUnavailableError):
        await accounts.profile(ALICE_ID)
    with pytest.raises(InvalidAPIKeyError):
        await accounts.login(ALICE_ID, UNKNOWN_KEY)
    await accounts.logout(ALICE_ID)

    assert caplog.records
    for key in (ALICE_KEY, UNKNOWN_KEY):
        assert key not in caplog.text
        assert all(key not in record.getMessage() for record in caplog.records)
