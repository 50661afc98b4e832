"""ProfileService: the /user opt-in and what it shows, against the simulator and a SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.crypto import KeyRing, binding
from bot.errors import HordeUnavailableError, NotLoggedInError, UserInputError
from bot.horde import AIHordeAPIAsyncClientSession, AIHordeAPIAsyncSimpleClient
from bot.services.profiles import ACCOUNT_GONE, NOT_SHARED, SHARING_NEEDS_LOGIN, ProfileService
from bot.storage import UserRecord, open_storage
from horde_simulator import Fault, Simulator

ALICE, BOB, CAROL = 11, 22, 33


@pytest.fixture
async def profiles(horde_sim: Simulator, tmp_path: Path, keyring: KeyRing) -> AsyncIterator[ProfileService]:
    async with open_storage(f"sqlite:///{tmp_path / 'bot.db'}") as storage:
        for discord_id, horde_id, name in ((ALICE, 1, "alice#1"), (BOB, 2, "bob#2")):
            token = keyring.encrypt("never-used-here", bound_to=binding("user", discord_id))
            await storage.users.upsert(
                UserRecord(
                    discord_id=discord_id,
                    encrypted_api_key=token,
                    horde_user_id=horde_id,
                    horde_username=name,
                )
            )
        async with AIHordeAPIAsyncClientSession(base_url=horde_sim.base_url) as session:
            yield ProfileService(storage, AIHordeAPIAsyncSimpleClient(session))


async def test_sharing_is_off_by_default_and_turned_on_by_the_member(profiles: ProfileService) -> None:
    assert (await profiles.is_shared(ALICE), await profiles.is_shared(CAROL)) == (False, None)

    await profiles.set_shared(ALICE, True)

    assert await profiles.is_shared(ALICE) is True
    assert await profiles.is_shared(BOB) is False


async def test_a_member_without_an_account_cannot_share(profiles: ProfileService) -> None:
    with pytest.raises(NotLoggedInError) as caught:
        await profiles.set_shared(CAROL, True)
    assert caught.value.user_message == SHARING_NEEDS_LOGIN
    assert await profiles.is_shared(CAROL) is None


async def test_an_unshared_account_is_never_looked_up(profiles: ProfileService, horde_sim: Simulator) -> None:
    for member in (ALICE, CAROL):  # private, and never logged in: the same answer
        with pytest.raises(UserInputError) as caught:
            await profiles.profile(member_id=member, member_name="Them", asker_id=BOB)
        assert caught.value.user_message == NOT_SHARED.format(name="Them")
    assert horde_sim.counters.calls("user_details") == 0


async def test_a_shared_account_shows_its_public_details(profiles: ProfileService) -> None:
    await profiles.set_shared(ALICE, True)

    profile = await profiles.profile(member_id=ALICE, member_name="Alice", asker_id=BOB)
    own = await profiles.profile(member_id=BOB, member_name="Bob", asker_id=BOB)

    assert (profile.details.username, profile.shared, profile.own) == ("alice#1", True, False)
    assert profile.details.worker_ids is None  # asked without a key: the public fields only
    assert (own.details.username, own.shared, own.own) == ("bob#2", False, True)


async def test_the_horde_forgetting_or_failing(profiles: ProfileService, horde_sim: Simulator) -> None:
    await profiles.set_shared(ALICE, True)
    await profiles.set_shared(BOB, True)
    horde_sim.state.faults.script("user_details", Fault.http(503), times=10)
    with pytest.raises(HordeUnavailableError):
        await profiles.profile(member_id=BOB, member_name="Bob", asker_id=ALICE)

    horde_sim.state.faults.clear()
    del horde_sim.state.users[1]
    with pytest.raises(UserInputError) as caught:
        await profiles.profile(member_id=ALICE, member_name="Alice", asker_id=BOB)
    assert caught.value.user_message == ACCOUNT_GONE.format(name="Alice")
