"""KudosService against the AI Horde simulator and a real SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.crypto import KeyRing
from bot.errors import NotLoggedInError, UserInputError
from bot.horde import AIHordeAPIAsyncClientSession, AIHordeAPIAsyncSimpleClient
from bot.services.accounts import AccountService
from bot.services.kudos import HORDE_USER_CACHE_S, KudosService, RecentTransfers, idempotency_key
from bot.storage import open_storage
from horde_simulator import Simulator

ALICE, BOB, CAROL = 11, 22, 33


@pytest.fixture
async def service(horde_sim: Simulator, tmp_path: Path, keyring: KeyRing) -> AsyncIterator[KudosService]:
    storage = open_storage(f"sqlite:///{tmp_path / 'bot.db'}")
    await storage.connect()
    async with AIHordeAPIAsyncClientSession(base_url=horde_sim.base_url) as session:
        horde = AIHordeAPIAsyncSimpleClient(session)
        accounts = AccountService(storage, keyring, horde)
        await accounts.login(ALICE, "sim-alice-key-00000001")
        await accounts.login(BOB, "sim-bob-key-0000000002")
        yield KudosService(storage, accounts, horde)
    await storage.close()


def test_the_idempotency_key_depends_on_giver_receiver_and_context() -> None:
    key = idempotency_key(ALICE, BOB, 123)
    assert key == idempotency_key(ALICE, BOB, 123)
    assert len({key, idempotency_key(BOB, ALICE, 123), idempotency_key(ALICE, BOB, 124)}) == 3


async def test_a_retried_gift_is_paid_once(service: KudosService, horde_sim: Simulator) -> None:
    first = await service.give(giver_id=ALICE, receiver_id=BOB, receiver_name="Bob", amount=40, context_id=7)
    again = await service.give(giver_id=ALICE, receiver_id=BOB, receiver_name="Bob", amount=40, context_id=7)

    assert first.transferred == again.transferred == 40
    assert horde_sim.counters.calls("kudos_transfer") == 2
    assert horde_sim.state.transfer_log == [(1, 2, 40)]
    users = {user.id: user for user in horde_sim.state.users.values()}
    assert (users[1].kudos, users[2].kudos) == (4960, 140)


async def test_a_new_gift_is_paid_again(service: KudosService, horde_sim: Simulator) -> None:
    await service.give(giver_id=ALICE, receiver_id=BOB, receiver_name="Bob", amount=10, context_id=1)
    await service.give(giver_id=ALICE, receiver_id=BOB, receiver_name="Bob", amount=10, context_id=2)

    assert horde_sim.state.transfer_log == [(1, 2, 10), (1, 2, 10)]


async def test_horde_errors_become_clear_messages(service: KudosService) -> None:
    with pytest.raises(UserInputError) as caught:
        await service.give(giver_id=BOB, receiver_id=ALICE, receiver_name="Alice", amount=500, context_id=3)
    assert caught.value.user_message == "You don't have enough kudos for that."


async def test_both_members_must_be_logged_in(service: KudosService, horde_sim: Simulator) -> None:
    with pytest.raises(NotLoggedInError):
        await service.give(giver_id=CAROL, receiver_id=BOB, receiver_name="Bob", amount=1, context_id=4)
    with pytest.raises(UserInputError, match="Carol hasn't logged in"):
        await service.give(giver_id=ALICE, receiver_id=CAROL, receiver_name="Carol", amount=1, context_id=5)
    with pytest.raises(UserInputError, match="yourself"):
        await service.give(giver_id=ALICE, receiver_id=ALICE, receiver_name="Alice", amount=1, context_id=6)
    assert horde_sim.counters.calls("kudos_transfer") == 0


async def test_a_retried_gift_is_listed_once_as_recent(service: KudosService) -> None:
    for _ in range(2):
        await service.give(giver_id=ALICE, receiver_id=BOB, receiver_name="Bob", amount=40, context_id=7)

    [sent] = service.recent.involving(ALICE)
    [received] = service.recent.involving(BOB)
    assert (sent.sent, sent.other_username, sent.amount) == (True, "bob#2", 40)
    assert (received.sent, received.other_username, received.amount) == (False, "alice#1", 40)
    assert service.recent.involving(CAROL) == []


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_recent_transfers_last_as_long_as_the_hordes_cache() -> None:
    clock = FakeClock()
    recent = RecentTransfers(clock=clock)
    recent.record(
        "a", giver_id=ALICE, giver_username="alice#1", receiver_id=BOB, receiver_username="b", amount=5
    )
    clock.now += 10
    recent.record("b", giver_id=BOB, giver_username=None, receiver_id=ALICE, receiver_username="a", amount=7)

    clock.now += HORDE_USER_CACHE_S - 10
    assert [(t.sent, t.amount, t.age_s) for t in recent.involving(ALICE)] == [
        (True, 5, HORDE_USER_CACHE_S),
        (False, 7, HORDE_USER_CACHE_S - 10),
    ]
    clock.now += 0.5
    assert [t.amount for t in recent.involving(ALICE)] == [7]
    assert recent.involving(BOB)[0].other_username == "a"


def test_recent_transfers_keep_a_bounded_number() -> None:
    recent = RecentTransfers(max_kept=3, clock=FakeClock())
    for index in range(5):
        recent.record(
            str(index),
            giver_id=ALICE,
            giver_username=None,
            receiver_id=BOB,
            receiver_username="b",
            amount=index,
        )

    assert [t.amount for t in recent.involving(ALICE)] == [2, 3, 4]
