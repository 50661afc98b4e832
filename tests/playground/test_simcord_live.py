"""The SimCord internals the playground relies on (bot/playground/_simcord_live.py), held to the
pinned SimCord's behaviour: a SimCord release that changes one fails here, not in a user's page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
import simcord
from wall_clock_env import one_channel, wall_clock_env

from bot.app import HordeBot
from bot.playground import _simcord_live as live
from bot.playground.server import Upstream


@pytest.fixture
async def env(simcord_bot: HordeBot) -> AsyncIterator[simcord.Env]:
    async with wall_clock_env(simcord_bot) as env:  # start_clock_now, name_the_bot
        yield env


async def read_state(upstream: Upstream, session: aiohttp.ClientSession, context: str) -> dict[str, Any]:
    headers = {"X-Simcord-Capability": upstream.capability, "X-Simcord-Context": context}
    async with session.get(upstream.origin + "/api/state", headers=headers) as answer:
        assert answer.status == 200
        state: dict[str, Any] = await answer.json()
        return state


def test_the_installed_simcord_is_the_pinned_one_with_its_internals() -> None:
    live.verify()
    from importlib.metadata import version

    assert version("simcord") == live.PINNED_SIMCORD


async def test_the_clock_reads_the_wall_clock_and_the_bot_has_a_name(env: simcord.Env) -> None:
    live.verify(env)

    assert abs((env.now() - datetime.now(UTC)).total_seconds()) < 2
    assert env.bot.user is not None
    assert env.bot.user.name == "Horde Bot"
    channel, _ = one_channel(env)
    message = await channel.guild.create_webhook(channel, "hook").send("hello")
    assert abs((message.created_at - datetime.now(UTC)).total_seconds()) < 2
    assert 0 <= live.clock_lag(env) < 2


async def test_a_republish_shows_what_changed_since_the_last_browser_action(env: simcord.Env) -> None:
    channel, member = one_channel(env)
    hook = channel.guild.create_webhook(channel, "hook")
    await hook.send("before")
    async with env.preview(channel, viewers=[member], layout="channel") as preview:
        live.verify(env, preview)
        upstream = Upstream.of(preview)
        async with aiohttp.ClientSession() as session:
            headers = {"X-Simcord-Capability": upstream.capability}
            async with session.post(upstream.origin + "/api/pages", json={}, headers=headers) as answer:
                opened = await answer.json()
            context = opened["context"]["id"]
            first = await read_state(upstream, session, context)
            seen_activity = live.activity(env)

            await hook.send("after")  # not a browser action: the stock page would not show it
            unpublished = await read_state(upstream, session, context)
            live.republish(preview)
            republished = await read_state(upstream, session, context)
            assert live.page_revision(preview, context) == republished["publishedRevision"]
            assert live.page_revision(preview, "no-such-page") is None

    def contents(state: dict[str, Any]) -> list[str]:
        return [state["messages"][identity]["content"] for identity in state["timeline"]]

    assert contents(unpublished) == contents(first) == ["before"]
    assert contents(republished) == ["before", "after"]
    assert republished["publishedRevision"] > first["publishedRevision"]
    assert live.activity(env) > seen_activity
