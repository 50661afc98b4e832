"""The bot's waits on a slow AI Horde, declared external to SimCord (bot/playground/horde_waits.py)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
import simcord

from bot.config import Settings
from bot.playground.horde_waits import declaring_response_class
from horde_simulator import Fault, Knobs, SimulatorConfig

SLOW_S = 1.5
SETTLE_S = 0.5


@pytest.fixture
def horde_sim_config() -> SimulatorConfig:
    config = SimulatorConfig(knobs=Knobs(speed=0.05))
    config.faults.script("generate_async", Fault.delay(SLOW_S), times=10)
    return config


Build = Callable[[aiohttp.ClientSession], AsyncIterator[simcord.Env]]


async def imagine_once(settings: Settings, declared: bool) -> float:
    """Run ``/imagine`` against a Horde that takes ``SLOW_S`` to accept it; return how long the
    action took. SimCord settles for ``SETTLE_S`` at most."""
    from conftest import build_bot

    env_of: list[simcord.Env] = []
    options = {"response_class": declaring_response_class(lambda: env_of[0] if env_of else None)}
    async with aiohttp.ClientSession(**(options if declared else {})) as session:
        bot = await build_bot(settings, http_session=session)
        try:
            async with simcord.run(bot, check_errors=False, settle_timeout=SETTLE_S) as env:
                env_of.append(env)
                await bot.tree.sync()
                guild = env.create_guild()
                channel = guild.create_text_channel("general")
                member = guild.add_member(env.create_user("alice"))
                started = time.perf_counter()
                result = await member.slash(channel, "imagine", prompt="a slow fox")
                took = time.perf_counter() - started
                assert result.deferred or result.response is not None
                await env.advance_time(30)  # whatever was left: the generation ends before shutdown
        finally:
            await bot.close()
    return took


async def test_a_slow_horde_answer_does_not_hold_the_action(settings: Settings) -> None:
    took = await imagine_once(settings, declared=True)

    assert took < SLOW_S  # the action returned while the bot still waited for the Horde


async def test_without_the_declaration_simcord_gives_up_on_the_bot(settings: Settings) -> None:
    with pytest.raises(TimeoutError, match="did not settle"):
        await imagine_once(settings, declared=False)
