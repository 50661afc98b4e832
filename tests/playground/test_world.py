"""The playground's world (bot/playground/world.py), with the real bot in SimCord."""

from __future__ import annotations

import discord
import simcord

from bot.app import HordeBot
from bot.playground.world import GUIDE_NAME, build_world, mark_age_restricted, post_welcome, welcome_text


async def test_two_channels_two_members_and_a_welcome(simcord_env: simcord.Env) -> None:
    bot = simcord_env.bot
    assert isinstance(bot, HordeBot)
    world = build_world(simcord_env)
    mark_age_restricted(bot, world.after_dark)

    general, after_dark = (bot.get_channel(channel.id) for channel in world.channels)
    assert isinstance(general, discord.TextChannel)
    assert isinstance(after_dark, discord.TextChannel)
    assert (general.is_nsfw(), after_dark.is_nsfw()) == (False, True)
    assert "config set" in world.you.available_commands(world.general)
    assert "config set" not in world.sam.available_commands(world.general)
    assert {"imagine", "login", "me", "write", "alchemy"} <= set(world.sam.available_commands(world.general))
    assert world.channel(world.after_dark.id) is world.after_dark
    assert world.member(world.sam.id) is world.sam
    assert world.channel(1) is None
    assert world.member(1) is None

    text = welcome_text(world, demo_key="the-demo-key", horde="a simulator")
    await post_welcome(world, world.general, text)

    [welcome] = world.general.history()
    assert welcome.author.name == GUIDE_NAME
    assert welcome.content == text
    for hint in ("`/imagine", "🔁", "🎲", "❌", "`/write", "`/alchemy", "`/config", "`the-demo-key`", "sam"):
        assert hint in text
    real = welcome_text(world, demo_key=None, horde="the AI Horde at https://example.invalid/api/")
    assert "demo key" not in real
    assert "https://example.invalid/api/" in real
    assert len(text) <= 2000  # one Discord message
