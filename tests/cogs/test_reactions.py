"""Reactions on /imagine results on SimCord, against the AI Horde simulator: reruns, ❌ and gifts."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import discord
import pytest
import simcord
from test_accounts import login
from test_imagine_support import (  # noqa: F401 - fixtures are used by name
    journal_of,
    only_job,
    response_of,
    settings,
)

from bot.storage import JobState
from horde_simulator import Knobs, RateLimits, Simulator, SimulatorConfig

if TYPE_CHECKING:
    from conftest import Server

ALICE_KEY = "sim-alice-key-00000001"
BOB_KEY = "sim-bob-key-0000000002"


@pytest.fixture
def horde_sim_config() -> SimulatorConfig:
    # No transfer rate limit: a second gift right after the first must reach the Horde.
    return SimulatorConfig(knobs=Knobs(speed=0.05, rate_limits=RateLimits(kudos_transfer=None)))


async def imagine(server: Server, member: simcord.MemberActor, **options: object) -> discord.Message:
    result = await member.slash(server.channel, "imagine", **options)
    message = response_of(result).message
    assert message is not None
    return message


async def configure(server: Server, name: str, value: str) -> None:
    await server.bot.guild_settings.set(server.guild.id, name, value, server.admin.id)


def messages(server: Server) -> list[discord.Message]:
    return server.channel.history(viewer=server.alice)


def balances(horde_sim: Simulator) -> dict[str, float]:
    return {user.username: user.kudos for user in horde_sim.state.users.values()}


# -- reruns ----------------------------------------------------------------------------------------


async def test_the_rerun_emoji_reruns_each_image_with_its_own_seed_for_the_reacting_member(
    server: Server, horde_sim: Simulator
) -> None:
    await login(server, server.alice, ALICE_KEY)
    message = await imagine(server, server.alice, prompt="a fox", count=2)
    original = await only_job(server, server.alice)
    images = sorted(json.loads(original.result_json or "{}")["images"], key=lambda image: image["index"])
    seeds = [image["seed"] for image in images]

    await server.bob.react(message, "🔁")

    reruns = sorted(await journal_of(server, server.bob), key=lambda job: job.created_at)
    by_id = {found.id: found for found in messages(server)}
    posted = [by_id[job.message_id or 0] for job in reruns]
    assert message.id not in [found.id for found in posted]
    # One request per image, each with that image's seed (the Horde gives one request one seed).
    assert [json.loads(job.request_json)["params"]["seed"] for job in reruns] == seeds
    assert [json.loads(job.request_json)["params"]["n"] for job in reruns] == [1, 1]
    for job, found in zip(reruns, posted, strict=True):
        assert job.state is JobState.DONE
        assert job.key_owner == "anonymous"  # bob has no key: the server allows the anonymous one
        assert job.horde_id is not None
        assert horde_sim.state.requests[job.horde_id].user.alias == "Anonymous"
        assert json.loads(job.request_json)["prompt"] == "a fox"
        assert found.content.startswith("✅ **Done** — 1 image")
        assert len(found.attachments) == 1
    sent = [
        entry
        for entry in server.env.http_requests
        if entry.method == "POST" and entry.path.endswith(f"/channels/{server.channel.id}/messages")
    ]
    assert sent[-1].json["allowed_mentions"] == {"parse": []}


async def test_the_dice_reruns_with_a_new_seed(server: Server) -> None:
    message = await imagine(server, server.alice, prompt="a fox", seed="42")

    await server.alice.react(message, "🎲")

    rerun, original = await journal_of(server, server.alice)
    assert json.loads(original.request_json)["params"]["seed"] == "42"
    assert "seed" not in json.loads(rerun.request_json)["params"]
    assert rerun.state is JobState.DONE


async def test_a_configured_rerun_emoji_replaces_the_default(server: Server) -> None:
    await configure(server, "rerun_emoji", "🔄")
    message = await imagine(server, server.alice, prompt="a fox")

    await server.alice.react(message, "🔁")
    assert len(await journal_of(server, server.alice)) == 1

    await server.alice.react(message, "🔄")
    assert len(await journal_of(server, server.alice)) == 2


async def test_reruns_by_reaction_can_be_switched_off(server: Server) -> None:
    await configure(server, "rerun_reactions", "off")
    message = await imagine(server, server.alice, prompt="a fox")

    await server.alice.react(message, "🔁")
    await server.alice.react(message, "🎲")

    assert len(await journal_of(server, server.alice)) == 1


async def test_a_blocked_channel_stops_a_reaction_rerun_and_the_reaction_is_removed(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    message = await imagine(server, server.alice, prompt="a fox")
    await configure(server, "blocked_channels", str(server.channel.id))
    posted_before = len(messages(server))

    with caplog.at_level(logging.INFO, logger="cogs.imagine._reactions"):
        await server.bob.react(message, "🔁")

    assert await journal_of(server, server.bob) == []
    assert len(messages(server)) == posted_before
    assert any("refused" in record.getMessage() for record in caplog.records)
    # The bot may manage messages here, so the refused reaction is taken back.
    reactions = server.channel.history(viewer=server.bob)[-1].reactions
    assert [str(reaction.emoji) for reaction in reactions] == []


async def test_a_cooldown_stops_a_second_reaction_rerun(server: Server) -> None:
    await configure(server, "cooldown_seconds", "60")
    message = await imagine(server, server.alice, prompt="a fox")

    await server.alice.react(message, "🎲")  # within the cooldown of the /imagine

    assert len(await journal_of(server, server.alice)) == 1


async def test_the_requester_deletes_with_the_cross_and_others_cannot(server: Server) -> None:
    message = await imagine(server, server.alice, prompt="a fox")

    await server.bob.react(message, "❌")
    assert message.id in [seen.id for seen in messages(server)]

    await server.alice.react(message, "❌")
    assert message.id not in [seen.id for seen in messages(server)]


async def test_reactions_by_bots_are_ignored(server: Server) -> None:
    message = await imagine(server, server.alice, prompt="a fox")
    robot = server.guild.add_member(server.env.create_user("robot", bot=True))

    await robot.react(message, "🔁")
    await robot.react(message, "❌")

    assert len(await journal_of(server, server.alice)) == 1
    assert await server.bot.storage.jobs.list_recent(robot.id) == []
    assert message.id in [seen.id for seen in messages(server)]


async def test_reactions_on_other_messages_are_ignored(server: Server) -> None:
    await server.alice.send(server.channel, "hello")
    other = server.channel.last_message
    assert other is not None

    await server.bob.react(other, "🔁")

    assert await journal_of(server, server.bob) == []


# -- kudos gifts -----------------------------------------------------------------------------------


async def test_gifting_is_off_unless_the_server_switches_it_on(server: Server, horde_sim: Simulator) -> None:
    await login(server, server.alice, ALICE_KEY)
    await login(server, server.bob, BOB_KEY)
    message = await imagine(server, server.alice, prompt="a fox")

    await server.bob.react(message, "⭐")

    assert horde_sim.counters.calls("kudos_transfer") == 0


async def test_a_reaction_gifts_kudos_once_however_often_it_is_added(
    server: Server, horde_sim: Simulator
) -> None:
    await configure(server, "kudos_reactions", "on")
    await configure(server, "kudos_amount", "25")
    await login(server, server.alice, ALICE_KEY)
    await login(server, server.bob, BOB_KEY)
    message = await imagine(server, server.alice, prompt="a fox")
    before = balances(horde_sim)

    await server.bob.react(message, "⭐")
    await server.bob.unreact(message, "⭐")
    await server.bob.react(message, "⭐")

    assert horde_sim.counters.calls("kudos_transfer") == 2
    after = balances(horde_sim)
    assert after["bob#2"] == before["bob#2"] - 25
    assert after["alice#1"] == before["alice#1"] + 25


async def test_a_giver_who_is_not_logged_in_pays_nothing(
    server: Server, horde_sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    await configure(server, "kudos_reactions", "on")
    await login(server, server.alice, ALICE_KEY)
    message = await imagine(server, server.alice, prompt="a fox")

    with caplog.at_level(logging.INFO, logger="bot.services.image.reactions"):
        await server.bob.react(message, "⭐")

    assert horde_sim.counters.calls("kudos_transfer") == 0
    assert horde_sim.state.transfer_log == []
    assert any("not paid" in record.getMessage() for record in caplog.records)
