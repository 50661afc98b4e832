"""/kudos give on SimCord, against the AI Horde simulator's balances."""

from __future__ import annotations

from typing import TYPE_CHECKING

import simcord
from test_accounts import login
from test_imagine_support import response_of, settings  # noqa: F401 - a fixture, used by name
from test_reactions import configure, imagine

from bot.services.kudos import GIVER_NOT_LOGGED_IN, HORDE_USER_CACHE_S
from cogs.accounts import BALANCE_LAG
from cogs.kudos import BALANCE_LAG_NOTE
from horde_simulator import Simulator

if TYPE_CHECKING:
    from conftest import Server


def me_fields(result: simcord.InteractionResult) -> dict[str | None, str | None]:
    [embed] = response_of(result).embeds
    return {field.name: field.value for field in embed.fields}


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


async def test_me_lists_a_transfer_until_the_horde_shows_it(server: Server) -> None:
    await login(server, server.alice, ALICE_KEY)
    await login(server, server.bob, BOB_KEY)

    gift = await server.alice.slash(server.channel, "kudos give", member=server.bob, amount=25)
    assert BALANCE_LAG_NOTE in (response_of(gift).content or "")

    await server.env.advance_time(5)
    giver = me_fields(await server.alice.slash(server.channel, "me"))
    receiver = me_fields(await server.bob.slash(server.channel, "me"))
    assert giver["Just transferred"] == f"Sent to bob#2: 25 kudos, 5s ago\n{BALANCE_LAG}"
    assert receiver["Just transferred"] == f"Received from alice#1: 25 kudos, 5s ago\n{BALANCE_LAG}"

    await server.env.advance_time(HORDE_USER_CACHE_S)
    assert "Just transferred" not in me_fields(await server.alice.slash(server.channel, "me"))


async def test_a_refused_gift_is_not_listed(server: Server) -> None:
    await login(server, server.alice, ALICE_KEY)
    await login(server, server.bob, BOB_KEY)

    refused = await server.bob.slash(server.channel, "kudos give", member=server.alice, amount=1_000)

    assert response_of(refused).content == "You don't have enough kudos for that."
    assert "Just transferred" not in me_fields(await server.bob.slash(server.channel, "me"))


async def test_me_lists_a_gift_made_by_reaction_too(server: Server) -> None:
    await configure(server, "kudos_reactions", "on")
    await login(server, server.alice, ALICE_KEY)
    await login(server, server.bob, BOB_KEY)
    message = await imagine(server, server.alice, prompt="a fox")

    await server.bob.react(message, "⭐")

    shown = me_fields(await server.bob.slash(server.channel, "me"))
    assert shown["Just transferred"] == f"Sent to alice#1: 10 kudos, just now\n{BALANCE_LAG}"
