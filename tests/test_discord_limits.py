"""The Discord rate-limit model (tests/discord_limits.py): discord.py's own handling runs against
Discord's limits on SimCord's virtual clock, and no 429 reaches the bot's code."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import discord
import pytest
import simcord
from discord import app_commands
from discord.ext import commands
from discord_limits import (
    CHANNEL_MESSAGES,
    GLOBAL,
    LimitedDiscord,
    LimitStats,
    _counting_429,
    check_pinned_internals,
    virtual_now,
)

if TYPE_CHECKING:
    from conftest import Server


class Bursts(commands.Cog):
    """Commands that answer at once and then send many messages in the background."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[None]] = []
        self.sent_at: list[float] = []
        self.errors: list[discord.HTTPException] = []

    async def _send_all(self, channels: list[discord.abc.Messageable], count: int) -> None:
        async def one(channel: discord.abc.Messageable, index: int) -> None:
            await channel.send(f"message {index}")
            self.sent_at.append(asyncio.get_running_loop().time())

        await asyncio.gather(*(one(channels[i % len(channels)], i) for i in range(count)))

    @app_commands.command()
    async def burst(self, interaction: discord.Interaction, count: int, channels: int = 1) -> None:
        await interaction.response.send_message("sending", ephemeral=True)
        client = interaction.client
        base = interaction.channel_id
        assert base is not None
        targets: list[discord.abc.Messageable] = [client.get_partial_messageable(base)]
        for channel in interaction.guild.text_channels if interaction.guild else ():
            if channel.id != base and len(targets) < channels:
                targets.append(client.get_partial_messageable(channel.id))
        self.tasks.append(asyncio.create_task(self._send_all(targets, count)))

    @app_commands.command()
    async def late(self, interaction: discord.Interaction, minutes: float) -> None:
        await interaction.response.defer()

        async def later() -> None:
            await asyncio.sleep(minutes * 60)
            try:
                await interaction.followup.send("late")
            except discord.HTTPException as exc:
                self.errors.append(exc)

        self.tasks.append(asyncio.create_task(later()))


@pytest.fixture
async def limited(server: Server, discord_limits: LimitedDiscord) -> tuple[LimitedDiscord, Bursts]:
    model = discord_limits
    cog = Bursts()
    await server.bot.add_cog(cog)
    await server.bot.tree.sync()
    return model, cog


def test_the_pinned_internals_are_there() -> None:
    check_pinned_internals()


def test_a_changed_internal_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(simcord, "__version__", "3.3.0")
    with pytest.raises(RuntimeError, match=r"simcord 3\.3\.0 \(pinned: 3\.2\.1\)"):
        check_pinned_internals()


async def test_a_channel_bucket_is_waited_out_by_discord_py(
    server: Server, limited: tuple[LimitedDiscord, Bursts]
) -> None:
    model, cog = limited
    start = virtual_now(server.env)
    await server.alice.slash(server.channel, "burst", count=12)
    await server.env.advance_time(30)

    posted = sorted(m.content for m in server.channel.history() if m.content.startswith("message"))
    assert posted == sorted(f"message {i}" for i in range(12))
    assert all(task.done() and task.exception() is None for task in cog.tasks)
    # 12 sends at 5 per 5 s: three windows, so at least 10 virtual seconds.
    sent = sorted(at - start for at in cog.sent_at)
    assert len(sent) == 12
    assert sent[-1] >= 2 * CHANNEL_MESSAGES.period_s
    assert model.stats.escaped_429 == 0


async def test_the_global_limit_is_waited_out_by_discord_py(
    server: Server, limited: tuple[LimitedDiscord, Bursts]
) -> None:
    model, cog = limited
    for index in range(29):
        server.guild.create_text_channel(f"room{index}")
    # 30 channels x 3 messages: under each channel's bucket, over the global 50 a second.
    await server.alice.slash(server.channel, "burst", count=90, channels=30)
    await server.env.advance_time(30)

    assert all(task.done() and task.exception() is None for task in cog.tasks)
    assert len(cog.sent_at) == 90
    assert model.stats.responses_429["global"] >= 1
    assert model.stats.escaped_429 == 0
    assert max(cog.sent_at) - min(cog.sent_at) >= GLOBAL.period_s


async def test_an_interaction_token_dies_after_15_minutes(
    server: Server, limited: tuple[LimitedDiscord, Bursts]
) -> None:
    model, cog = limited
    await server.alice.slash(server.channel, "late", minutes=14)
    await server.env.advance_time(14 * 60 + 1)
    assert cog.errors == []

    await server.alice.slash(server.channel, "late", minutes=16)
    await server.env.advance_time(16 * 60 + 1)
    [refused] = cog.errors
    assert (refused.status, refused.code) == (401, 50027)
    assert model.stats.expired_tokens == 1


async def test_a_429_that_gets_past_discord_py_is_counted() -> None:
    stats = LimitStats()

    class Response:
        status = 429
        reason = "Too Many Requests"

    async def refused() -> None:
        raise discord.HTTPException(Response(), {"message": "rate limited"})  # type: ignore[arg-type]

    with pytest.raises(discord.HTTPException):
        await _counting_429(stats, refused)()
    assert stats.escaped_429 == 1
