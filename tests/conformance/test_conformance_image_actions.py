"""The per-image actions through SimCord against the real AI Horde: Vary, Upscale #n, Zoom out 2×
and Pan ⬅️ on a result the real server generated, each request checked field by field as the
bot journalled it and as the real server handed it to a worker.

Workers: ``fake_worker.py`` (the image models and alchemy) and a painter serving only an
inpainting model (``test_conformance_painting.painter``)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import simcord
from conftest import FAKE_DISCORD_TOKEN, TEST_CLIENT_AGENT, build_bot
from horde_sides import needs_real_horde, read_keys, real_side
from pydantic import SecretStr
from test_conformance_painting import INPAINTING, painter

from bot.app import HordeBot
from bot.config import DatabaseSettings, HordeSettings, ProgressSettings, Settings
from bot.crypto import KeyRing, generate_key_value
from bot.services.image.actions import VARY_STRONG
from bot.storage import JobRecord, JobState
from cogs.accounts import APIKEY_INPUT_ID

pytestmark = needs_real_horde


class World:
    def __init__(self, env: simcord.Env, bot: HordeBot) -> None:
        self.env, self.bot = env, bot
        guild = env.create_guild("Real Horde")
        self.channel = guild.create_text_channel("general")
        self.alice = guild.add_member(env.create_user("alice"))
        self.bob = guild.add_member(env.create_user("bob"))
        self.seen: set[str] = set()

    async def newest(self, member: simcord.MemberActor) -> JobRecord | None:
        """The member's newest job not returned by :meth:`finished` before: a click's job may be
        journalled only after the click returns, so the one before must not be taken for it."""
        recent = await self.bot.storage.jobs.list_recent(member.id, limit=10)
        return next((job for job in recent if job.id not in self.seen), None)

    async def finished(self, member: simcord.MemberActor, *, within_s: float = 90.0) -> tuple[JobRecord, Any]:
        """The member's newest job once it ended and its message: the bot's waits are on SimCord's
        virtual clock, moved on while the real server and its workers take real time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        job = None
        while loop.time() < deadline:
            job = await self.newest(member)
            if (
                job is not None
                and job.state in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)
                and job.delivery == "delivered"
            ):
                self.seen.add(job.id)
                [message] = [m for m in self.channel.history(viewer=member) if m.id == job.message_id]
                return job, message
            await self.env.advance_time(1.0)
            await asyncio.sleep(0.2)
        state = "not started" if job is None else job.state
        raise AssertionError(f"the newest job is still {state} after {within_s} s")


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    keys = read_keys(os.environ["REAL_HORDE_KEYS"])
    settings = Settings(
        horde=HordeSettings(
            api_url=keys["HORDE_URL"], client_agent=TEST_CLIENT_AGENT, request_timeout_s=10.0
        ),
        database=DatabaseSettings(url=f"sqlite:///{tmp_path / 'bot.sqlite3'}"),
        progress=ProgressSettings(channel_edits=50),
        discord_token=SecretStr(FAKE_DISCORD_TOKEN),
        secret_keys=KeyRing.from_env_value(generate_key_value(1)),
    )
    bot = await build_bot(settings)
    env = simcord.Env(bot, check_errors=False)
    await env.start()
    try:
        await bot.tree.sync()
        world = World(env, bot)
        async with aiohttp.ClientSession() as http, real_side(http) as real:
            await real.start_worker(0.3)
            async with painter(real.base_url, keys["WORKER_KEY"], http):
                await _until_listed(http, real.base_url, INPAINTING)
                for member, key in ((world.alice, keys["ALICE_KEY"]), (world.bob, keys["BOB_KEY"])):
                    shown = await member.slash(world.channel, "login")
                    await member.submit_modal(shown, {APIKEY_INPUT_ID: key})
                yield world
    finally:
        await bot.close()
        await env.shutdown()


async def _until_listed(http: aiohttp.ClientSession, base_url: str, model: str) -> None:
    """Until ``status/models`` lists ``model``: the real server recounts its workers' models every
    10 s, so a worker's first pop shows there up to 10 s later (on a fast machine, after the click
    that needs it)."""
    for _ in range(60):
        async with http.get(base_url + "v2/status/models", params={"type": "image"}) as response:
            listed = await response.json() if response.status == 200 else []
        if any(entry.get("name") == model and entry.get("count", 0) > 0 for entry in listed):
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"status/models never listed {model}")


def _sent(job: JobRecord) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(job.request_json)
    return body


def _button(message: Any, *, label: str | None = None, emoji: str | None = None) -> str:
    for row in message.components:
        children = row.get("components", []) if isinstance(row, dict) else row.to_dict().get("components", [])
        for child in children:
            if (label is None or child.get("label") == label) and (
                emoji is None or (child.get("emoji") or {}).get("name") == emoji
            ):
                return str(child["custom_id"])
    raise AssertionError(f"no button {label or emoji}")


async def test_vary_upscale_zoom_out_and_pan_on_the_real_horde(world: World) -> None:
    await world.alice.slash(
        world.channel,
        "imagine",
        prompt="a red square",
        model="Deliberate",
        count=2,
        width=64,
        height=64,
        steps=10,
    )
    original, result = await world.finished(world.alice)
    assert original.state is JobState.DONE
    assert [a.filename.split("_")[1] for a in result.attachments] == ["1", "2"]

    # Vary: img2img on image #2 with the same prompt and settings.
    await world.bob.click(result, custom_id=_button(result, label="V2"))
    varied, varied_message = await world.finished(world.bob)
    sent, before = _sent(varied), _sent(original)
    assert varied.state is JobState.DONE, varied.error
    assert (sent["prompt"], sent["models"], sent["source_processing"]) == (
        before["prompt"],
        ["Deliberate"],
        "img2img",
    )
    assert sent["params"]["denoising_strength"] == VARY_STRONG
    assert {k: v for k, v in sent["params"].items() if k not in ("denoising_strength", "seed")} == {
        k: v
        for k, v in before["params"].items()
        if k not in ("seed", "hires_fix")  # hires fix: txt2img only
    }
    assert "kudos" in varied_message.content

    # Upscale #1: alchemy on that image, replied with its own buttons.
    await world.bob.click(result, custom_id=_button(result, label="U1"))
    upscaled, reply = await world.finished(world.bob)
    assert upscaled.kind == "alchemy"
    assert upscaled.state is JobState.DONE, upscaled.error
    assert _sent(upscaled)["forms"] == [{"name": "RealESRGAN_x2plus"}]
    assert "0 kudos" in reply.content

    # Zoom out 2× and Pan ⬅️: outpainting on the inpainting model the painter serves.
    for custom_id, size in (
        (_button(reply, label="Zoom out 2×"), (128, 128)),
        (_button(reply, emoji="⬅️"), (64, 64)),
    ):
        await world.bob.click(reply, custom_id=custom_id)
        painted, message = await world.finished(world.bob)
        sent = _sent(painted)
        assert painted.state is JobState.DONE, painted.error
        assert (sent["models"], sent["source_processing"]) == ([INPAINTING], "outpainting")
        assert (sent["params"]["width"], sent["params"]["height"]) == size
        assert sent["source_mask"]
        assert sent["source_image"]
        assert "kudos" in message.content
        assert len(message.attachments) == sent["params"]["n"] == 2  # a new set, as many as the job had
