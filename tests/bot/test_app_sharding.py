"""Sharded processes: ``[bot] shard_count`` / ``shard_ids`` make the bot an ``AutoShardedBot`` running
those shards; each job is journalled with its guild's shard, and a restarted process resumes only
the jobs of the shards it runs (untagged jobs count as shard 0's)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import aiohttp
import discord
import simcord
from conftest import build_bot

from bot.app import HordeBot, ShardedHordeBot, create_bot
from bot.config import BotSettings, Settings
from bot.horde import (
    AIHordeAPIAsyncClientSession,
    AIHordeAPIAsyncManualClient,
    AIHordeAPIAsyncSimpleClient,
    ImageGenerateAsyncResponse,
)
from bot.services.image.request import ImagineOptions, build_request
from bot.services.jobs import DeliveredImage, JobManager, JobOutcome, JobProgress
from bot.services.kinds import job_kinds
from bot.storage import JobRecord, JobState, Storage, guild_shard, new_job_id, open_storage
from horde_simulator import Simulator


def sharded(settings: Settings, count: int, ids: Sequence[int] | None) -> Settings:
    bot = BotSettings(shard_count=count, shard_ids=None if ids is None else tuple(ids))
    return settings.model_copy(update={"bot": bot})


async def test_an_unsharded_bot_is_a_plain_bot(settings: Settings) -> None:
    bot = await create_bot(settings)
    try:
        assert type(bot) is HordeBot
        assert not isinstance(bot, discord.AutoShardedClient)
    finally:
        await bot.close()


async def test_sharding_settings_make_an_auto_sharded_bot(settings: Settings) -> None:
    # Run (logged in) before closing: discord.py's AutoShardedClient sets up its event queue at login.
    bot = await create_bot(sharded(settings, 4, [1, 3]))
    async with simcord.run(bot):
        assert isinstance(bot, ShardedHordeBot)
        assert isinstance(bot, discord.AutoShardedClient)
        assert (bot.shard_count, bot.shard_ids, set(bot.shards)) == (4, [1, 3], {1, 3})
    await bot.close()
    every = await create_bot(sharded(settings, 2, None))
    async with simcord.run(every):
        assert (every.shard_count, every.shard_ids, set(every.shards)) == (2, None, {0, 1})
    await every.close()


async def crashed_copy(
    storage: Storage, horde_sim: Simulator, job: JobRecord, **changes: object
) -> JobRecord:
    """A job journalled SUBMITTED into ``job``'s message, its Horde request left running, as a
    killed process leaves it."""
    built = build_request(ImagineOptions(prompt="after the crash"), Settings().defaults, allow_nsfw=False)
    async with AIHordeAPIAsyncManualClient(base_url=horde_sim.base_url) as client:
        accepted = await client.submit_request(built.request, ImageGenerateAsyncResponse)
    assert isinstance(accepted, ImageGenerateAsyncResponse)
    return await storage.jobs.create(
        job.model_copy(
            update={
                "id": new_job_id(),
                "state": JobState.SUBMITTED,
                "horde_id": accepted.id_,
                "request_json": json.dumps(built.request.to_wire().json),
                "params_json": built.params_json,
                "result_json": None,
                "kudos": None,
                **changes,
            }
        )
    )


class Silent:
    async def on_progress(self, job: JobRecord, progress: JobProgress) -> None:
        return None

    async def on_images(self, job: JobRecord, new_images: Sequence[DeliveredImage]) -> None:
        return None

    async def on_finished(self, job: JobRecord, outcome: JobOutcome) -> None:
        return None


async def ended(env: simcord.Env, storage: Storage, job_id: str) -> JobRecord:
    for _ in range(500):
        record = await storage.jobs.get(job_id)
        if record is not None and record.state.is_terminal:
            return record
        await env.settle()
        await asyncio.sleep(0.01)  # the simulator works in real time
    raise AssertionError(f"job {job_id} never ended")


async def test_a_process_journals_its_guilds_shard_and_resumes_only_its_own_jobs(
    settings: Settings, horde_sim: Simulator
) -> None:
    settings = sharded(settings, 2, [1])
    bot = await build_bot(settings)
    async with simcord.run(bot) as env:
        assert set(bot.shards) == {1}
        guild = env.create_guild("Shard one", shard_id=1)
        channel = guild.create_text_channel("general")
        alice = guild.add_member(env.create_user("alice"))
        await bot.tree.sync()

        result = await alice.slash(channel, "imagine", prompt="a fox")

        [job] = await bot.storage.jobs.list_recent(alice.id)
        assert job.state is JobState.DONE
        assert job.shard_id == guild_shard(guild.id, 2) == 1
        mine = await crashed_copy(bot.storage, horde_sim, job)
        other_shard = await crashed_copy(bot.storage, horde_sim, job, shard_id=0)
        untagged = await crashed_copy(bot.storage, horde_sim, job, shard_id=None)

        await bot.close()  # a clean stop: nothing is running; the three copies stay in the journal
        restarted = await build_bot(settings)
        await env.restart_bot(restarted)

        assert (await ended(env, restarted.storage, mine.id)).state is JobState.DONE
        assert result.response is not None
        assert result.response.embeds[0].description == "after the crash"
        for left in (other_shard, untagged):
            stored = await restarted.storage.jobs.get(left.id)
            assert stored is not None
            assert stored.state is JobState.SUBMITTED
            assert horde_sim.counters.deletes(left.horde_id or "") == 0
        await restarted.close()

    # What the process running shard 0 takes after its own restart: the other two.
    async with (
        open_storage(settings.database.url) as storage,
        aiohttp.ClientSession() as http,
        AIHordeAPIAsyncClientSession(http, base_url=horde_sim.base_url) as session,
    ):
        horde = AIHordeAPIAsyncSimpleClient(horde_client_session=session, aiohttp_session=http)
        shard_zero = JobManager(
            storage, horde, kinds=job_kinds(), generation_timeout_s=30, shard_count=2, shard_ids=[0]
        )
        try:
            assert await shard_zero.resume_unfinished(lambda record: Silent()) == 2
            assert {job.record.id for job in shard_zero.active_jobs()} == {other_shard.id, untagged.id}
        finally:
            await shard_zero.shutdown(2.0)
