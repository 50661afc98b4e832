"""SimCord running the bot as the playground starts it: on the wall clock, the bot named."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import simcord

from bot.app import HordeBot
from bot.playground._simcord_live import name_the_bot, start_clock_now


@asynccontextmanager
async def wall_clock_env(bot: HordeBot) -> AsyncIterator[simcord.Env]:
    env = simcord.Env(bot, check_errors=False)
    start_clock_now(env)
    name_the_bot(env, "Horde Bot")
    await env.start()
    try:
        yield env
    finally:
        await bot.close()
        await env.shutdown()


def one_channel(env: simcord.Env) -> tuple[simcord.ChannelHandle, simcord.MemberActor]:
    """A server with #general and one member, "you"."""
    guild = env.create_guild()
    return guild.create_text_channel("general"), guild.add_member(env.create_user("you"))
