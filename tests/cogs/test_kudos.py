"""/kudos give on SimCord, against the AI Horde simulator's balances."""

from __future__ import annotations

from typing import TYPE_CHECKING

from test_accounts import login
from test_imagine_support import response_of

from bot.horde.simulator import Simulator
from bot.services.kudos import GIVER_NOT_LOGGED_IN

if TYPE_CHECKING:
    from conftest import Server

ALICE_KEY = "sim-alice-key-00000001"
BOB_KEY = "sim-bob-key-0000000002"


async def test_give_moves_kudos_between_two_logged_in_members(server: Server, horde_sim: Simulator) -> None:
    await login(server, server.alice, ALICE_KEY)
    await login(server, server.bob, BOB_KEY)

    result = await server.alice.slash(server.channel, "kudos give", member=server.bob, amount=25)

    assert result.ephemeral
    assert "25 kudos" in (response_of(result).content or "")
    users = {user.username: user for user in horde_sim.state.users.values()}
    assert users["alice#1"].kudos == 4975
    assert users["bob#2"].kudos == 125


async def test_give_refuses_when_not_logged_in(server: Server, horde_sim: Simulator) -> None:
    await login(server, server.bob, BOB_KEY)

    result = await server.alice.slash(server.channel, "kudos give", member=server.bob, amount=25)

    assert result.ephemeral
    assert response_of(result).content == GIVER_NOT_LOGGED_IN
    assert horde_sim.counters.calls("kudos_transfer") == 0


async def test_give_refuses_a_receiver_who_is_not_logged_in(server: Server, horde_sim: Simulator) -> None:
    await login(server, server.alice, ALICE_KEY)

    result = await server.alice.slash(server.channel, "kudos give", member=server.bob, amount=25)

    assert "hasn't logged in" in (response_of(result).content or "")
    assert horde_sim.counters.calls("kudos_transfer") == 0
