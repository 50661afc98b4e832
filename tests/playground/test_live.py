"""LiveSync (bot/playground/live.py): the virtual clock on the wall clock, pages republished."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import simcord
from wall_clock_env import one_channel, wall_clock_env

from bot.app import HordeBot
from bot.playground._simcord_live import clock_lag, page_revision
from bot.playground.live import LiveSync


@pytest.fixture
async def env(simcord_bot: HordeBot) -> AsyncIterator[simcord.Env]:
    async with wall_clock_env(simcord_bot) as env:
        yield env


async def test_a_step_brings_the_clock_to_the_wall_clock(env: simcord.Env, simcord_bot: HordeBot) -> None:
    channel, member = one_channel(env)
    async with env.preview(channel, viewers=[member], layout="channel") as preview:
        live = LiveSync(env, lambda: preview, asyncio.Lock())
        await asyncio.sleep(1.0)
        assert clock_lag(env) >= 0.9  # SimCord's clock stood still

        await live.step()

        assert clock_lag(env) < 0.3
        assert simcord_bot.uptime.total_seconds() >= 0.9  # the bot's own clock followed
        assert live.steps_cut_short == 0


async def test_pages_are_republished_when_the_bot_did_something(env: simcord.Env) -> None:
    channel, member = one_channel(env)
    hook = channel.guild.create_webhook(channel, "hook")
    async with env.preview(channel, viewers=[member], layout="channel") as preview:
        live = LiveSync(env, lambda: preview, asyncio.Lock(), refresh_s=3600)

        def revision() -> int | None:
            return page_revision(preview, "python")  # SimCord's own page of the preview

        await live.step()
        first = revision()
        await live.step()
        unchanged = revision()
        await hook.send("news")
        await live.step()
        after_news = revision()
        live.refresh_s = 0
        await live.step()
        refreshed = revision()

    assert first is not None
    assert unchanged == first
    assert after_news == first + 1
    assert refreshed == first + 2


async def test_the_loop_runs_under_the_lock_until_stopped(env: simcord.Env) -> None:
    channel, member = one_channel(env)
    async with env.preview(channel, viewers=[member], layout="channel") as preview:
        lock = asyncio.Lock()
        live = LiveSync(env, lambda: preview, lock, tick_s=0.05)
        live.start()
        async with lock:
            await asyncio.sleep(0.6)
            held = clock_lag(env)  # no step while the lock is held (a browser action)
        await asyncio.sleep(0.3)
        released = clock_lag(env)
        await live.stop()

    assert held >= 0.5
    assert released < 0.3
