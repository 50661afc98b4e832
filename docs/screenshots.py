"""Render the README's screenshots: the real bot, in SimCord, against the local AI Horde simulator.

Run by hand (not part of the test suite). It needs SimCord's screenshot extra and a Chromium that
Playwright can start; ``playwright install`` cannot download here, so use Debian's (docs/TESTING.md):

    apt-get install -y chromium-headless-shell
    python -m venv /tmp/shotvenv && /tmp/shotvenv/bin/pip install "simcord[screenshot]==3.2.1" Pillow
    echo /work/venv/lib/python3.11/site-packages > /tmp/shotvenv/lib/python3.11/site-packages/workvenv.pth
    D=/tmp/pw-browsers/chromium_headless_shell-1255/chrome-headless-shell-linux64
    mkdir -p $D && ln -sf /usr/lib/chromium/chromium-headless-shell $D/chrome-headless-shell
    cd /work/main && PLAYWRIGHT_BROWSERS_PATH=/tmp/pw-browsers /tmp/shotvenv/bin/python docs/screenshots.py

It writes docs/img/*.png (``--out DIR`` to write elsewhere). Nothing talks to discord.com or
aihorde.net. The bot is built as the tests build it (``tests/conftest.py``); the simulator runs on a
manual clock, so a generation stays in flight until this script lets its workers finish.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import io
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import discord
import simcord
from PIL import Image, ImageChops

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "cogs")]

from conftest import FAKE_DISCORD_TOKEN, TEST_CLIENT_AGENT, build_bot  # noqa: E402
from pydantic import SecretStr  # noqa: E402
from test_imagine_support import settings as fast_progress_settings  # noqa: E402

from bot.app import HordeBot  # noqa: E402
from bot.config import DatabaseSettings, HordeSettings, Settings  # noqa: E402
from bot.crypto import KeyRing, generate_key_value  # noqa: E402
from bot.horde import PollPolicy  # noqa: E402
from horde_simulator import Knobs, ManualClock, RateLimits, Simulator, SimulatorConfig, run_simulator  # noqa: E402
from cogs.accounts import APIKEY_INPUT_ID  # noqa: E402

ALICE_KEY = "sim-alice-key-00000001"
# Seconds of the simulator's clock per job, and of SimCord's virtual clock between two polls.
JOB_S = 10.0
POLL_S = 30.0
POLL = PollPolicy(
    min_interval=POLL_S, max_interval=POLL_S, processing_max_interval=POLL_S, unknown_wait_interval=POLL_S
)
# One worker: after the first image, one is processing and two wait in the queue.
IMAGES = 4
MAX_WIDTH = 900
# Tall enough for a whole message with its images; the empty rest is cropped away.
VIEWPORT_HEIGHT = 2000
MAX_BYTES = 300_000


def bot_settings(sim: Simulator, workdir: Path) -> Settings:
    base = Settings(
        horde=HordeSettings(api_url=sim.base_url, client_agent=TEST_CLIENT_AGENT, request_timeout_s=5.0),
        database=DatabaseSettings(url=f"sqlite:///{workdir / 'bot.sqlite3'}"),
        discord_token=SecretStr(FAKE_DISCORD_TOKEN),
        secret_keys=KeyRing.from_env_value(generate_key_value(1)),
    )
    # The /imagine tests' settings: every progress change is shown, not one every few seconds.
    settings: Settings = fast_progress_settings.__wrapped__(base)
    return settings


async def until(predicate: Callable[[], bool], within_s: float = 5.0) -> None:
    deadline = time.perf_counter() + within_s
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError("the simulator did not get there in time")
        await asyncio.sleep(0.01)


async def run_workers(
    env: simcord.Env, sim: Simulator, clock: ManualClock, request_id: str, done: int
) -> None:
    """Let the simulator's workers finish ``done`` jobs of the request in all, then let the bot poll."""
    request = sim.state.requests[request_id]
    while request.finished < done:
        clock.advance(JOB_S)
        await until(functools.partial(lambda before: request.finished > before, request.finished))
    await env.advance_time(POLL_S)


async def shoot(
    env: simcord.Env, channel: simcord.ChannelHandle, viewer: simcord.MemberActor, target: object, path: Path
) -> None:
    async with env.preview(channel, viewers=[viewer], width=MAX_WIDTH, height=VIEWPORT_HEIGHT) as preview:
        capture = await preview.screenshot(viewer=viewer, target=target)
    if not capture.complete or capture.png is None:
        raise RuntimeError(f"{path.name}: SimCord could not render everything")
    save(capture.png, path)


def save(png: bytes, path: Path) -> None:
    small = shrink(trim(Image.open(io.BytesIO(png)).convert("RGB")))
    path.write_bytes(small)
    print(f"{path} ({len(small) // 1024} KB)")


def trim(image: Image.Image, margin: int = 16) -> Image.Image:
    """Crop the empty channel background on the right and below the message."""
    background = Image.new("RGB", image.size, image.getpixel((image.width - 1, image.height - 1)))
    box = ImageChops.difference(image, background).getbbox()
    if box is None:
        return image
    return image.crop((0, 0, min(image.width, box[2] + margin), min(image.height, box[3] + margin)))


def shrink(image: Image.Image) -> bytes:
    """A PNG under MAX_BYTES: a palette image first, then smaller if it has to be."""
    while True:
        buffer = io.BytesIO()
        image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(buffer, "PNG", optimize=True)
        if buffer.tell() <= MAX_BYTES:
            return buffer.getvalue()
        image = image.resize((image.width * 9 // 10, image.height * 9 // 10), Image.Resampling.LANCZOS)


async def render(out: Path, workdir: Path) -> None:
    clock = ManualClock()
    knobs = Knobs(speed=JOB_S, worker_threads=1, rate_limits=RateLimits(enabled=False))
    async with run_simulator(SimulatorConfig(clock=clock, knobs=knobs)) as sim:
        bot = await build_bot(bot_settings(sim, workdir), poll_policy=POLL)
        try:
            async with simcord.run(bot, check_errors=False) as env:
                await bot.tree.sync()
                await scenes(env, bot, sim, clock, out)
        finally:
            await bot.close()


async def scenes(env: simcord.Env, bot: HordeBot, sim: Simulator, clock: ManualClock, out: Path) -> None:
    guild = env.create_guild("Horde Test Server")
    channel = guild.create_text_channel("general")
    admins = guild.create_role("Admins", permissions=discord.Permissions(manage_guild=True))
    admin = guild.add_member(env.create_user("admin"), roles=[admins])
    alice = guild.add_member(env.create_user("alice"))

    shown = await alice.slash(channel, "login")
    await alice.submit_modal(shown, {APIKEY_INPUT_ID: ALICE_KEY})
    me = await alice.slash(channel, "me")
    await shoot(env, channel, alice, me, out / "me.png")

    started = await alice.slash(channel, "imagine", prompt="a red fox in the snow, golden hour", count=IMAGES)
    [job] = await bot.storage.jobs.list_recent(alice.id, limit=1)
    assert job.horde_id is not None
    await run_workers(env, sim, clock, job.horde_id, 1)
    await shoot(env, channel, alice, started, out / "imagine-progress.png")
    await run_workers(env, sim, clock, job.horde_id, IMAGES)
    assert started.response is not None
    assert started.response.content.startswith("✅")
    await shoot(env, channel, alice, started, out / "imagine-result.png")

    upscaled = await alice.click(started.response, label="U2")
    await until_done(env, clock, upscaled)
    await shoot(env, channel, alice, upscaled, out / "imagine-upscaled.png")

    if "config" in {command.name for command in bot.tree.get_commands()}:
        config = await admin.slash(channel, "config show")
        await shoot(env, channel, admin, config, out / "config-show.png")

    if "write" in {command.name for command in bot.tree.get_commands()}:
        written = await alice.slash(
            channel, "write", prompt="Write a haiku about volunteers sharing their GPUs."
        )
        await until_done(env, clock, written)
        await shoot(env, channel, alice, written, out / "write.png")


async def until_done(env: simcord.Env, clock: ManualClock, result: simcord.InteractionResult) -> None:
    """Let the simulated workers and the bot run until ``result``'s message says it is done."""
    for _ in range(10):
        clock.advance(JOB_S)
        await asyncio.sleep(0.1)  # the simulated worker answers in real time
        await env.advance_time(POLL_S)
        if result.response is not None and "✅" in result.response.content:
            return
    raise RuntimeError("the job did not finish")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    out: Path = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as workdir:
        asyncio.run(render(out, Path(workdir)))


if __name__ == "__main__":
    main()
