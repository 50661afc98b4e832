"""/imagine while a job is in flight: Cancel, shutdown, a deleted message, an expired interaction.

The bot polls the Horde every 30 virtual seconds, so between polls it is parked and an action
returns; ``server.env.advance_time(POLL_S)`` makes it poll once more. The simulator runs on a
``ManualClock``: a job finishes only when the test advances that clock.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
import simcord
from test_imagine_support import (  # noqa: F401 - fixtures are used by name
    custom_ids,
    message_edits,
    only_job,
    payload,
    response_of,
    settings,
    until,
)

from bot.app import HordeBot
from bot.config import Settings
from bot.horde import AIHordeAPIAsyncManualClient, ImageGenerateAsyncResponse, PollPolicy
from bot.services.image.render import NO_ATTACH_PERMISSION
from bot.services.image.request import ImagineOptions, build_request
from bot.storage import JobRecord, JobState, new_job_id, open_storage
from horde_simulator import Knobs, ManualClock, RateLimits, Simulator, SimulatorConfig

if TYPE_CHECKING:
    from conftest import Server

POLL_S = 30.0
JOB_S = 10.0
SLOW_POLL = PollPolicy(
    min_interval=POLL_S,
    max_interval=POLL_S,
    processing_max_interval=POLL_S,
    unknown_wait_interval=POLL_S,
    first_poll_delay=0,  # a check at once and every 30 s: the edits below count them
    final_status_polls=0,
)


@pytest.fixture
def sim_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def horde_sim_config(sim_clock: ManualClock) -> SimulatorConfig:
    # One worker, JOB_S seconds of the simulator's clock per image.
    # The simulator's rate limits count on its clock, which stands still while the bot polls.
    knobs = Knobs(speed=JOB_S, worker_threads=1, rate_limits=RateLimits(enabled=False))
    return SimulatorConfig(clock=sim_clock, knobs=knobs)


@pytest.fixture
async def simcord_bot(settings: Settings) -> AsyncIterator[HordeBot]:  # noqa: F811 - the imported fixture
    from conftest import build_bot

    bot = await build_bot(settings, poll_policy=SLOW_POLL)
    try:
        yield bot
    finally:
        await bot.close()


async def start(server: Server, **options: object) -> tuple[simcord.ResponseMessage, JobRecord]:
    """/imagine by Alice; returns once the job is submitted and the bot waits for its next poll."""
    result = await server.alice.slash(server.channel, "imagine", **options)
    message = response_of(result)
    job = await only_job(server, server.alice)
    assert job.state is JobState.SUBMITTED
    return message, job


async def finish_images(
    server: Server, horde_sim: Simulator, clock: ManualClock, job: JobRecord, count: int
) -> None:
    """Let the simulator finish ``count`` more images, then let the bot poll once."""
    assert job.horde_id is not None
    request = horde_sim.state.requests[job.horde_id]
    target = request.finished + count
    for done in range(request.finished + 1, target + 1):
        clock.advance(JOB_S)
        await until(lambda done=done: request.finished >= done)  # type: ignore[misc]
    assert request.finished == target
    await server.env.advance_time(POLL_S)


# -- Cancel ----------------------------------------------------------------------------------------


async def test_cancel_keeps_the_finished_images(
    server: Server, horde_sim: Simulator, sim_clock: ManualClock
) -> None:
    message, job = await start(server, prompt="three foxes", count=3)
    assert custom_ids(message) == [f"imagine:cancel:{job.id}"]
    await finish_images(server, horde_sim, sim_clock, job, 1)
    assert len(message.attachments) == 1  # attached while the others are still running
    assert message.content.splitlines()[3] == "`█████░░░░░` 1/3"  # one done, one half-way

    clicked = await server.alice.click(message, label="Cancel")

    assert clicked.acknowledged
    assert not clicked.ephemeral
    assert horde_sim.counters.deletes(job.horde_id or "") == 1
    assert horde_sim.state.requests[job.horde_id or ""].cancelled
    cancelled = await only_job(server, server.alice)
    assert cancelled.state is JobState.CANCELLED
    assert message.content.startswith("🛑 **Cancelled** — 1 of 3 images")
    assert "Cancelled." not in message.content  # the label says it once
    assert len(message.attachments) == 1
    [image] = json.loads(cancelled.result_json or "{}")["images"]
    assert message.attachments[0].filename == f"imagine_1_{image['seed']}.webp"
    # U1 and V1 for the image kept, then the whole result's buttons.
    assert custom_ids(message) == [
        f"image:u:1:{job.id}",
        f"image:v:1:{job.id}",
        *(f"imagine:{action}:{job.id}" for action in ("rerun", "seed", "edit", "details", "delete")),
    ]


async def test_another_member_may_not_cancel(server: Server, horde_sim: Simulator) -> None:
    message, job = await start(server, prompt="a fox")

    refused = await server.bob.click(message, label="Cancel")

    assert refused.ephemeral
    assert response_of(refused).content == (
        "Only the member who started this generation or a moderator can cancel it."
    )
    assert horde_sim.counters.deletes(job.horde_id or "") == 0
    assert (await only_job(server, server.alice)).state is JobState.SUBMITTED


async def test_a_moderator_may_cancel(server: Server, horde_sim: Simulator) -> None:
    message, job = await start(server, prompt="a fox")

    await server.moderator.click(message, label="Cancel")

    assert horde_sim.counters.deletes(job.horde_id or "") == 1
    assert (await only_job(server, server.alice)).state is JobState.CANCELLED
    assert message.content.startswith("🛑 **Cancelled** — 0 of 1 images")


# -- the progress message ----------------------------------------------------------------------


async def test_progress_is_edited_only_when_it_changed(
    server: Server, horde_sim: Simulator, sim_clock: ManualClock
) -> None:
    message, job = await start(server, prompt="a fox")
    before = len(message_edits(server, message.id))

    await server.env.advance_time(POLL_S)  # the Horde reports exactly the same
    await server.env.advance_time(POLL_S)
    idle = len(message_edits(server, message.id)) - before
    sim_clock.advance(1)  # the ETA drops by a second
    await server.env.advance_time(POLL_S)
    ticked = len(message_edits(server, message.id)) - before

    assert horde_sim.counters.calls("generate_check", id=job.horde_id or "") == 4
    assert (idle, ticked) == (0, 1)
    assert "ETA 9 s" in message.content
    contents = [payload(edit)["content"] for edit in message_edits(server, message.id)]
    assert len(set(contents)) == len(contents)


async def test_edits_go_on_after_the_interaction_token_expired(
    server: Server, horde_sim: Simulator, sim_clock: ManualClock
) -> None:
    message, job = await start(server, prompt="a slow fox")

    await server.env.advance_time(16 * 60)
    await finish_images(server, horde_sim, sim_clock, job, 1)

    assert message.content.startswith("✅ **Done** — 1 image")
    assert len(message.attachments) == 1
    assert all("/webhooks/" not in edit.path for edit in message_edits(server, message.id)[1:])


async def test_a_deleted_message_cancels_the_job(
    server: Server, horde_sim: Simulator, sim_clock: ManualClock
) -> None:
    message, job = await start(server, prompt="a fox")

    await server.moderator.delete(message.message)
    sim_clock.advance(1)  # something new to show, so the bot edits and finds the message gone
    await server.env.advance_time(POLL_S)

    assert horde_sim.counters.deletes(job.horde_id or "") == 1
    ended = await only_job(server, server.alice)
    assert ended.state is JobState.CANCELLED
    assert ended.error == "Cancelled because its message was deleted."


async def test_without_attach_files_the_message_says_so(
    server: Server, horde_sim: Simulator, sim_clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    message, job = await start(server, prompt="a fox")
    # The next two edits are refused: the progress edit (skipped) and the one with the image.
    server.env.inject_error(
        "PATCH", "/channels/*/messages/*", status=403, code=50013, message="Missing Permissions", times=2
    )

    await finish_images(server, horde_sim, sim_clock, job, 1)

    assert message.content.startswith("✅ **Done** — 1 image")
    assert NO_ATTACH_PERMISSION in message.content
    assert message.attachments == []
    assert "Missing permission to attach files" in caplog.text
    assert (await only_job(server, server.alice)).state is JobState.DONE


# -- shutdown --------------------------------------------------------------------------------------


async def test_shutdown_cancels_every_job_on_the_horde_and_says_so(
    server: Server, horde_sim: Simulator
) -> None:
    first, first_job = await start(server, prompt="a fox")
    second = response_of(await server.bob.slash(server.channel, "imagine", prompt="an owl"))
    [second_job] = await server.bot.storage.jobs.list_recent(server.bob.id)

    await server.bot.close()

    async with open_storage(server.settings.database.url) as storage:
        for message, job in ((first, first_job), (second, second_job)):
            assert horde_sim.counters.deletes(job.horde_id or "") == 1
            assert message.content.startswith("🛑 **Cancelled**")
            assert "Cancelled because the bot was shut down. Please run it again." in message.content
            stored = await storage.jobs.get(job.id)
            assert stored is not None
            assert stored.state is JobState.CANCELLED


# -- after a restart -------------------------------------------------------------------------------


async def test_cancel_works_on_a_job_resumed_after_a_restart(
    server: Server, horde_sim: Simulator, sim_clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    import conftest

    build_slow = functools.partial(conftest.build_bot, poll_policy=SLOW_POLL)
    monkeypatch.setattr(conftest, "build_bot", build_slow)
    message, job = await start(server, prompt="a fox")
    await finish_images(server, horde_sim, sim_clock, job, 1)
    # What a crash leaves behind: a job journalled as SUBMITTED into that message, still running.
    built = build_request(ImagineOptions(prompt="a crashed fox"), server.settings.defaults, allow_nsfw=False)
    async with AIHordeAPIAsyncManualClient(base_url=horde_sim.base_url) as client:
        accepted = await client.submit_request(built.request, ImageGenerateAsyncResponse)
    assert isinstance(accepted, ImageGenerateAsyncResponse)
    crashed = await server.bot.storage.jobs.create(
        job.model_copy(
            update={
                "id": new_job_id(),
                "state": JobState.SUBMITTED,
                "horde_id": accepted.id_,
                "request_json": json.dumps(built.request.to_wire().json),
                "params_json": built.params_json,
                "result_json": None,
                "kudos": None,
            }
        )
    )

    await server.restart()

    assert custom_ids(message) == [f"imagine:cancel:{crashed.id}"]
    assert message.content.startswith("**a crashed fox**")
    await server.alice.click(message, label="Cancel")

    assert horde_sim.counters.deletes(accepted.id_) == 1
    ended = await server.bot.storage.jobs.get(crashed.id)
    assert ended is not None
    assert ended.state is JobState.CANCELLED
    assert message.content.startswith("🛑 **Cancelled** — 0 of 1 images")


# -- progress text ---------------------------------------------------------------------------------


async def test_restarted_images_show_only_once_a_worker_failed_and_say_what_it_means(
    server: Server, horde_sim: Simulator, sim_clock: ManualClock
) -> None:
    message, job = await start(server, prompt="two foxes", count=2)
    await finish_images(server, horde_sim, sim_clock, job, 1)
    assert message.content.splitlines()[4] == "1 finished · 1 processing · 0 waiting"  # no "0 restarted"

    horde_sim.state.knobs.fail_next_jobs = 1  # the worker fails the job it has: the Horde restarts it
    sim_clock.advance(JOB_S)
    assert job.horde_id is not None
    request = horde_sim.state.requests[job.horde_id]
    await until(lambda: request.restarted == 1)
    await server.env.advance_time(POLL_S)

    assert "1 image restarted on another worker (the first one failed)" in message.content
