"""``proxied_account`` through SimCord against the simulator: on a server's shared key whose
account is a service account, each member is named by a stable pseudonym; never on a member's own
key, and never where the Horde would refuse it (a plain account, the anonymous one)."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import pytest
from test_imagine_support import only_job, response_of, settings  # noqa: F401 - fixtures are used by name

from cogs.accounts import APIKEY_INPUT_ID
from horde_simulator import Knobs, Simulator, SimulatorConfig, SimUser
from horde_simulator.config import default_users

if TYPE_CHECKING:
    from conftest import Server

SERVICE_KEY = "sim-service-key-000001"
ALICE_KEY = "sim-alice-key-00000001"


@pytest.fixture
def horde_sim_config() -> SimulatorConfig:
    users = (*default_users(), SimUser("studio", 50, SERVICE_KEY, kudos=5000.0, service=True))
    return SimulatorConfig(users=users, knobs=Knobs(speed=0.05, worker_threads=3))


async def config_set(server: Server, setting: str, value: str) -> None:
    await server.admin.slash(server.channel, "config set", setting=setting, value=value)


def proxied(horde_sim: Simulator, horde_id: str | None) -> str | None:
    return horde_sim.state.requests[horde_id or ""].proxied_account


async def test_a_service_sponsor_key_names_each_member_by_a_stable_pseudonym(
    server: Server, horde_sim: Simulator
) -> None:
    await config_set(server, "sponsor_key", SERVICE_KEY)
    await config_set(server, "allow_anonymous", "off")

    await server.bob.slash(server.channel, "imagine", prompt="a fox")
    bobs = await only_job(server, server.bob)
    await server.alice.slash(server.channel, "write", prompt="Once upon a time")
    alices = await only_job(server, server.alice)
    await server.bob.slash(server.channel, "imagine", prompt="a wolf")
    bobs_again = next(
        job for job in await server.bot.storage.jobs.list_recent(server.bob.id) if job.id != bobs.id
    )

    bob_id, alice_id = proxied(horde_sim, bobs.horde_id), proxied(horde_sim, alices.horde_id)
    assert bob_id is not None
    assert re.fullmatch(r"discord:[0-9a-f]{32}", bob_id)
    assert proxied(horde_sim, bobs_again.horde_id) == bob_id  # stable
    assert alice_id is not None
    assert alice_id != bob_id
    assert str(server.bob.id) not in bob_id
    assert bob_id == server.bot.proxied.account_id(server.bob.id)


async def test_a_members_own_key_and_a_plain_sponsor_key_send_none(
    server: Server, horde_sim: Simulator
) -> None:
    await config_set(server, "sponsor_key", ALICE_KEY)  # a plain account: the Horde would refuse it
    await config_set(server, "allow_anonymous", "off")
    await server.bob.slash(server.channel, "imagine", prompt="a fox")
    sponsored = await only_job(server, server.bob)

    shown = await server.alice.slash(server.channel, "login")
    await server.alice.submit_modal(shown, {APIKEY_INPUT_ID: SERVICE_KEY})
    await server.alice.slash(server.channel, "imagine", prompt="a fox")
    own = await only_job(server, server.alice)

    assert sponsored.state.value == own.state.value == "done"
    assert proxied(horde_sim, sponsored.horde_id) is None
    assert proxied(horde_sim, own.horde_id) is None
    assert "proxied_account" not in json.loads(own.request_json)


async def test_the_anonymous_key_sends_none(server: Server, horde_sim: Simulator) -> None:
    result = await server.bob.slash(server.channel, "imagine", prompt="a fox")

    job = await only_job(server, server.bob)
    assert job.key_owner == "anonymous"
    assert job.state.value == "done", response_of(result).content
    assert proxied(horde_sim, job.horde_id) is None


async def test_a_rerun_names_whoever_runs_it(server: Server, horde_sim: Simulator) -> None:
    await config_set(server, "sponsor_key", SERVICE_KEY)
    message = response_of(await server.bob.slash(server.channel, "imagine", prompt="a fox"))

    await server.moderator.click(message, label="Rerun")
    rerun = await only_job(server, server.moderator)
    assert proxied(horde_sim, rerun.horde_id) == server.bot.proxied.account_id(server.moderator.id)

    # With her own plain key nothing is named (bob's pseudonym is not carried over: the Horde
    # would refuse it from a plain account).
    shown = await server.alice.slash(server.channel, "login")
    await server.alice.submit_modal(shown, {APIKEY_INPUT_ID: ALICE_KEY})
    await server.alice.click(message, label="Same seed")
    own = await only_job(server, server.alice)
    assert own.state.value == "done", own.error
    assert proxied(horde_sim, own.horde_id) is None
