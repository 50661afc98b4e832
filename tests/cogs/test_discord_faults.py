"""Discord faults (SimCord) for image, text and alchemy jobs: a deleted message, no Attach Files
permission, 429s on edits, an expired interaction token; and private (ephemeral) results, which
move to a channel message when their token runs out; and the per-channel edit budget.

The bot polls every 30 virtual seconds, so between polls an action returns with the job parked;
``advance_time(POLL_S)`` makes it poll once more. Simulated workers take 0.05 s of real time; with
``worker_threads = 0`` a job waits in the queue until the test lets it run.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import io
import json
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import discord
import PIL.Image
import pytest
import simcord
from test_imagine_support import message_edits, payload, response_of, until

from bot.app import HordeBot
from bot.config import Settings
from bot.horde import AIHordeAPIAsyncManualClient, ImageGenerateAsyncResponse, PollPolicy
from bot.services.delivery.budget import ChannelEditBudget
from bot.services.delivery.listener import NO_FILES
from bot.services.delivery.service import DISCORD_TROUBLE
from bot.services.delivery.targets import (
    MOVED_AFTER_RESTART,
    MOVED_AFTER_TIMEOUT,
    MOVED_HERE,
    MOVED_TO_DMS,
    RESULT_REFUSED,
)
from bot.services.image.render import NO_ATTACH_PERMISSION
from bot.services.image.request import ImagineOptions, build_request
from bot.storage import DeliveryState, JobRecord, JobState
from cogs._jobs import PRIVATE_CHANNEL
from horde_simulator import Knobs, RateLimits, Simulator, SimulatorConfig

if TYPE_CHECKING:
    from conftest import Server

POLL_S = 30.0
SLOW_POLL = PollPolicy(
    min_interval=POLL_S,
    max_interval=POLL_S,
    processing_max_interval=POLL_S,
    unknown_wait_interval=POLL_S,
    first_poll_delay=0,  # a check at once and every 30 s: jobs finish together in one poll
    final_status_polls=0,
)
CHANNEL_EDIT = "/channels/*/messages/*"
ALICE_KEY = "sim-alice-key-00000001"


def png(width: int = 64, height: int = 48) -> bytes:
    out = io.BytesIO()
    PIL.Image.new("RGB", (width, height), "red").save(out, format="PNG")
    return out.getvalue()


KINDS: dict[str, tuple[str, dict[str, Any]]] = {
    "image": ("imagine", {"prompt": "a fox"}),
    "text": ("write", {"prompt": "Once upon a time", "max_length": 16}),
    "alchemy": ("alchemy", {"image": ("cat.png", png()), "operation": "RealESRGAN_x4plus"}),
}


@pytest.fixture
def horde_sim_config() -> SimulatorConfig:
    # No rate limits: 15 virtual minutes of polls take a moment of real time.
    return SimulatorConfig(knobs=Knobs(speed=0.05, worker_threads=0, rate_limits=RateLimits(enabled=False)))


@pytest.fixture
async def simcord_bot(settings: Settings) -> AsyncIterator[HordeBot]:
    from conftest import build_bot

    bot = await build_bot(settings, poll_policy=SLOW_POLL)
    try:
        yield bot
    finally:
        await bot.close()


async def only_job(server: Server, member: simcord.MemberActor) -> JobRecord:
    [job] = await server.bot.storage.jobs.list_recent(member.id, limit=5)
    return job


async def start(server: Server, kind: str) -> tuple[simcord.InteractionResult, JobRecord]:
    """Alice starts a ``kind`` job; it waits in the Horde's queue."""
    command, options = KINDS[kind]
    result = await server.alice.slash(server.channel, command, **options)
    job = await only_job(server, server.alice)
    assert job.state is JobState.SUBMITTED, job
    return result, job


async def let_it_finish(server: Server, horde_sim: Simulator) -> None:
    """The workers run every waiting job (in real time); then the bot polls once."""
    horde_sim.state.knobs.worker_threads = 2
    horde_sim.state.changed()  # wakes the simulator's workers
    records = [*horde_sim.state.requests.values(), *horde_sim.state.interrogations.values()]
    await until(lambda: all(record.end != "open" for record in records))
    await server.env.advance_time(POLL_S)


def picked_up(horde_sim: Simulator, horde_id: str) -> bool:
    request = horde_sim.state.requests.get(horde_id)
    if request is not None:
        return bool(request.processing)
    return any(form.state != "waiting" for form in horde_sim.state.interrogations[horde_id].forms)


async def until_ended(server: Server, job: JobRecord) -> None:
    """Wait (real time) until the job's end is journalled: its last Discord and Horde calls may
    still be running when an action returns."""
    for _ in range(300):
        record = await server.bot.storage.jobs.get(job.id)
        if record is not None and record.state not in (JobState.PENDING, JobState.SUBMITTED):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"job {job.id} did not end")


def final_edits(server: Server, message_id: int) -> list[dict[str, Any]]:
    return [
        payload(entry)
        for entry in message_edits(server, message_id)
        if "✅ **Done**" in str(payload(entry).get("content", ""))
    ]


# -- 404 Unknown Message: the member deleted the job's message --------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
async def test_a_deleted_message_cancels_the_job_on_the_horde(
    server: Server, horde_sim: Simulator, kind: str
) -> None:
    result, job = await start(server, kind)
    message = response_of(result).message
    assert message is not None

    await server.moderator.delete(message)
    # A worker takes it (for a minute): the next progress edit finds the message gone.
    horde_sim.state.knobs.speed = 60
    horde_sim.state.knobs.worker_threads = 1
    horde_sim.state.changed()  # wakes the simulator's workers
    await until(lambda: picked_up(horde_sim, job.horde_id or ""))
    await server.env.advance_time(POLL_S)

    await until(lambda: horde_sim.counters.deletes(job.horde_id or "") == 1)
    await until_ended(server, job)
    ended = await only_job(server, server.alice)
    assert ended.state is JobState.CANCELLED
    assert ended.error == "Cancelled because its message was deleted."


# -- 403 Missing Permissions on the files -----------------------------------------------------------


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Long texts come back as a .txt file: /write may write up to 1,200 tokens here.
    defaults = settings.defaults.model_copy(update={"max_text_tokens": 4096})
    return settings.model_copy(update={"defaults": defaults})


@pytest.mark.parametrize(
    ("kind", "note"),
    [("image", NO_ATTACH_PERMISSION), ("text", NO_FILES), ("alchemy", NO_FILES)],
)
async def test_without_attach_files_the_result_comes_as_text_saying_so(
    server: Server, horde_sim: Simulator, caplog: pytest.LogCaptureFixture, kind: str, note: str
) -> None:
    if kind == "text":
        # Over 512 tokens the Horde wants kudos upfront, which the anonymous key never has.
        await server.bot.accounts.login(server.alice.id, ALICE_KEY)
        result = await server.alice.slash(server.channel, "write", prompt="A long story", max_length=1200)
    else:
        result, _ = await start(server, kind)
    message = response_of(result)
    await server.env.advance_time(POLL_S)
    # Refused: the progress edit (skipped: the next one catches up) and the one with the files.
    server.env.inject_error(
        "PATCH", CHANNEL_EDIT, status=403, code=50013, message="Missing Permissions", times=2
    )

    await let_it_finish(server, horde_sim)

    assert "✅ **Done**" in (message.content or "")
    assert note in (message.content or "")
    assert message.attachments == []
    assert "Missing permission to attach files" in caplog.text
    assert (await only_job(server, server.alice)).state is JobState.DONE


# -- 403: the bot may no longer post in the channel -------------------------------------------------


def take_send_messages(server: Server) -> None:
    """A moderator takes the bot's Send Messages in the channel: the channel update reaches the
    bot's cache, and (SimCord leaves the bot's own edits unchecked) Discord refuses its edits."""
    from simcord.backend.models.channel import Overwrite
    from simcord.enums import OverwriteType

    me = server.guild.me
    assert me is not None
    deny = discord.Permissions(send_messages=True).value
    overwrite = Overwrite(target_id=me.id, type=OverwriteType.MEMBER, allow=0, deny=deny)
    server.env.backend.set_overwrite(server.channel.id, overwrite)
    server.env.inject_error(
        "PATCH",
        f"/channels/{server.channel.id}/messages/*",
        status=403,
        code=50013,
        message="Missing Permissions",
        times=None,
    )


@pytest.mark.parametrize("kind", list(KINDS))
async def test_a_channel_the_bot_may_no_longer_post_in_sends_the_result_by_dm(
    server: Server, horde_sim: Simulator, kind: str
) -> None:
    _, job = await start(server, kind)
    take_send_messages(server)

    await let_it_finish(server, horde_sim)
    ended = await until_delivered(server, job)

    dm = server.alice.user.dm_channel.last_message
    assert dm is not None
    assert "✅ **Done**" in dm.content
    assert dm.content.endswith(MOVED_TO_DMS.format(channel=server.channel.id))
    assert len(dm.attachments) == (0 if kind == "text" else 1)
    assert bool(dm.components) == (kind != "alchemy")  # its buttons (/alchemy's result has none)
    assert (ended.channel_id, ended.message_id) == (dm.channel.id, dm.id)  # a restart goes on there


async def test_a_result_refused_in_the_channel_and_the_dms_is_not_journalled_as_delivered(
    server: Server, horde_sim: Simulator
) -> None:
    _, job = await start(server, "image")
    take_send_messages(server)
    server.env.inject_error(
        "POST", f"/channels/{server.alice.user.dm_channel.id}/messages", status=403, code=50007, times=None
    )

    await let_it_finish(server, horde_sim)

    ended = await until_delivered(server, job, state=DeliveryState.FAILED)
    assert ended.delivery_error == RESULT_REFUSED  # /jobs show still brings it back


async def until_delivered(
    server: Server, job: JobRecord, *, state: DeliveryState = DeliveryState.DELIVERED
) -> JobRecord:
    for _ in range(300):
        record = await server.bot.storage.jobs.get(job.id)
        if record is not None and record.delivery == state:
            return record
        await asyncio.sleep(0.01)
    raise AssertionError(f"job {job.id}: its delivery is not {state}: {record}")


# -- 429 on edits ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "files"), [("image", 1), ("text", 0), ("alchemy", 1)])
async def test_a_burst_of_429s_on_edits_loses_nothing(
    server: Server, horde_sim: Simulator, caplog: pytest.LogCaptureFixture, kind: str, files: int
) -> None:
    # discord.py retries 429s itself; these are the ones it gave up on. Short waits keep it fast.
    server.bot.delivery.retry_delays_s = (0.01,) * 5
    result, job = await start(server, kind)
    message = response_of(result)
    await server.env.advance_time(POLL_S)
    edits = len(message_edits(server, message.id))
    server.env.inject_error(
        "PATCH", CHANNEL_EDIT, status=429, code=0, message="You are being rate limited.", times=4
    )

    await let_it_finish(server, horde_sim)
    # The result's retries run after the poll that found the job done.
    await until(lambda: "✅ **Done**" in (message.content or ""))

    assert (message.content or "").count("✅ **Done**") == 1
    assert len(message.attachments) == files
    assert (await only_job(server, server.alice)).state is JobState.DONE
    tried = message_edits(server, message.id)[edits:]
    assert len(tried) >= 5  # four refused, then the result
    assert len(final_edits(server, message.id)) >= 2  # refused at least once, then shown
    assert "HTTP 429" in caplog.text
    assert horde_sim.counters.deletes(job.horde_id or "") == 0


# -- private results, and the interaction token's 15 minutes ----------------------------------------


async def make_private(server: Server) -> None:
    result = await server.admin.slash(server.channel, "config set", setting="visibility", value="private")
    assert (response_of(result).content or "").startswith("Changed")


def bot_messages(server: Server, viewer: simcord.MemberActor) -> list[Any]:
    return [
        message
        for message in server.channel.history(viewer=viewer)
        if message.author.id == server.bot.user.id
    ]


@pytest.mark.parametrize(("kind", "files"), [("image", 1), ("text", 0), ("alchemy", 1)])
async def test_private_results_stay_in_the_private_reply(
    server: Server, horde_sim: Simulator, kind: str, files: int
) -> None:
    await make_private(server)
    result, job = await start(server, kind)

    await server.env.advance_time(POLL_S)
    await let_it_finish(server, horde_sim)

    assert result.ephemeral
    reply = response_of(result)
    assert "✅ **Done**" in (reply.content or "")
    assert len(reply.attachments) == files
    assert job.message_id is None  # a private reply can't be edited through the channel
    assert bot_messages(server, server.bob) == []
    edits = [entry for entry in server.env.http_requests if entry.method == "PATCH"]
    assert all("/webhooks/" in entry.path for entry in edits)
    if kind == "image":
        assert "Delete" not in [button["label"] for row in reply.components for button in row["components"]]


@pytest.mark.parametrize(("kind", "files"), [("image", 1), ("text", 0), ("alchemy", 1)])
async def test_a_private_reply_moves_to_the_channel_before_its_token_expires(
    server: Server, horde_sim: Simulator, kind: str, files: int
) -> None:
    await make_private(server)
    result, _ = await start(server, kind)
    reply = response_of(result)

    await server.env.advance_time(14 * 60)  # past the token's 15 minutes less the margin
    await let_it_finish(server, horde_sim)

    [posted] = bot_messages(server, server.bob)
    assert posted.content.startswith("✅ **Done**") or "✅ **Done**" in posted.content
    assert f"<@{server.alice.id}> {MOVED_AFTER_TIMEOUT}" in posted.content
    assert len(posted.attachments) == files
    assert reply.content == MOVED_HERE.format(url=posted.jump_url)
    assert reply.attachments == []
    moved = await only_job(server, server.alice)
    assert (moved.state, moved.message_id) == (JobState.DONE, posted.id)
    [post] = [
        entry
        for entry in server.env.http_requests
        if entry.method == "POST" and entry.path == f"/channels/{server.channel.id}/messages"
    ]
    assert payload(post)["allowed_mentions"]["users"] == [server.alice.id]  # only she is pinged
    assert payload(post)["allowed_mentions"]["parse"] == []


async def test_a_refused_token_moves_the_job_to_the_channel_at_once(
    server: Server, horde_sim: Simulator
) -> None:
    await make_private(server)
    _, job = await start(server, "image")
    server.env.inject_error(
        "PATCH", "/webhooks/*/*/messages/@original", status=404, code=10015, message="Unknown Webhook"
    )

    await server.env.advance_time(POLL_S)
    await let_it_finish(server, horde_sim)

    [posted] = bot_messages(server, server.bob)
    assert posted.content.startswith("✅ **Done** — 1 image")
    assert MOVED_AFTER_TIMEOUT in posted.content
    assert len(posted.attachments) == 1
    assert (await only_job(server, server.alice)).message_id == posted.id
    assert horde_sim.counters.deletes(job.horde_id or "") == 0


async def test_the_buttons_of_a_private_result_answer_privately(server: Server, horde_sim: Simulator) -> None:
    await make_private(server)
    horde_sim.state.knobs.worker_threads = 2
    result = await server.alice.slash(server.channel, "imagine", prompt="a fox")
    await asyncio.sleep(0.4)
    await server.env.advance_time(POLL_S)
    reply = response_of(result)
    assert "✅ **Done**" in (reply.content or "")

    rerun = await server.alice.click(reply.message, label="Rerun")
    await asyncio.sleep(0.4)
    await server.env.advance_time(POLL_S)

    assert rerun.ephemeral
    assert "✅ **Done**" in (response_of(rerun).content or "")
    assert bot_messages(server, server.bob) == []
    jobs = await server.bot.storage.jobs.list_recent(server.alice.id, limit=5)
    assert [job.state for job in jobs] == [JobState.DONE, JobState.DONE]


async def test_a_reaction_rerun_where_results_are_private_is_refused(
    server: Server, horde_sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    horde_sim.state.knobs.worker_threads = 2
    result = await server.alice.slash(server.channel, "imagine", prompt="a fox")
    await asyncio.sleep(0.4)
    await server.env.advance_time(POLL_S)
    message = response_of(result).message
    assert message is not None
    await make_private(server)  # a public result from before the server went private

    with caplog.at_level(logging.INFO, logger="cogs.imagine._reactions"):
        await server.bob.react(message, "🔁")

    assert await server.bot.storage.jobs.list_recent(server.bob.id) == []
    assert PRIVATE_CHANNEL in caplog.text
    assert horde_sim.counters.calls("generate_async") == 1


async def test_a_private_job_resumed_after_a_restart_continues_in_the_channel(
    server: Server, horde_sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import conftest

    monkeypatch.setattr(conftest, "build_bot", functools.partial(conftest.build_bot, poll_policy=SLOW_POLL))
    await make_private(server)
    # What a crash leaves of a private job: journalled SUBMITTED, no channel message, no token.
    built = build_request(ImagineOptions(prompt="a crashed fox"), server.settings.defaults, allow_nsfw=False)
    async with AIHordeAPIAsyncManualClient(base_url=horde_sim.base_url) as client:
        accepted = await client.submit_request(built.request, ImageGenerateAsyncResponse)
    assert isinstance(accepted, ImageGenerateAsyncResponse)
    crashed = await server.bot.storage.jobs.create(
        JobRecord(
            kind="image",
            state=JobState.SUBMITTED,
            horde_id=accepted.id_,
            guild_id=server.guild.id,
            channel_id=server.channel.id,
            message_id=None,
            user_id=server.alice.id,
            key_owner="anonymous",
            request_json=json.dumps(built.request.to_wire().json),
            params_json=built.params_json,
        )
    )

    await server.restart()
    await let_it_finish(server, horde_sim)

    [posted] = bot_messages(server, server.bob)
    assert posted.content.startswith("✅ **Done** — 1 image")
    assert f"<@{server.alice.id}> {MOVED_AFTER_RESTART}" in posted.content
    assert len(posted.attachments) == 1
    resumed = await server.bot.storage.jobs.get(crashed.id)
    assert resumed is not None
    assert (resumed.state, resumed.message_id) == (JobState.DONE, posted.id)


# -- the per-channel edit budget ---------------------------------------------------------------------


class StampedRequests(list[Any]):
    """SimCord's log of the bot's REST calls, with the virtual time of each (SimCord keeps none)."""

    def __init__(self, clock: Any, entries: list[Any]) -> None:
        super().__init__(entries)
        self._clock = clock
        self.times: list[float | None] = [None] * len(entries)

    def append(self, entry: Any) -> None:
        self.times.append(self._clock.elapsed)
        super().append(entry)


def stamp_requests(env: simcord.Env) -> StampedRequests:
    """From now on, note when each REST call was made (through SimCord's internal backend)."""
    backend: Any = env.backend
    stamped = StampedRequests(backend.clock, backend.http_requests)
    backend.http_requests = stamped
    return stamped


def busiest_window(times: list[float], window_s: float) -> int:
    """The most of ``times`` in any ``[t, t + window_s)``."""
    ordered = sorted(times)
    return max((bisect.bisect_left(ordered, at + window_s) - i for i, at in enumerate(ordered)), default=0)


def is_progress(entry: Any) -> bool:
    body = payload(entry)
    return "attachments" not in body and not str(body.get("content", "")).startswith(("✅", "🛑", "❌"))


async def channel_edits_of_jobs(
    server: Server, horde_sim: Simulator, jobs: int, drain_s: float = 60.0
) -> list[tuple[float, Any]]:
    """``jobs`` /imagine in one channel, all finishing in the same poll; then ``drain_s`` for the
    queue to drain. The channel's edits and when they were made (the first reply of each command
    is the interaction's, not the channel's: not among them)."""
    requests = stamp_requests(server.env)
    for _ in range(jobs):
        await server.alice.slash(server.channel, "imagine", prompt="a fox")
    await server.env.advance_time(POLL_S)  # every job polls again: more progress than the budget
    await let_it_finish(server, horde_sim)
    await server.env.advance_time(drain_s)
    return [
        (at, entry)
        for at, entry in zip(requests.times, requests, strict=True)
        if at is not None
        and entry.method == "PATCH"
        and entry.path.startswith(f"/channels/{server.channel.id}/messages/")
    ]


def results_of(channel_edits: list[tuple[float, Any]]) -> list[tuple[float, dict[str, Any]]]:
    return [
        (at, payload(entry))
        for at, entry in channel_edits
        if str(payload(entry).get("content", "")).startswith("✅")
    ]


async def all_done(server: Server, jobs: int) -> None:
    done = await server.bot.storage.jobs.list_recent(server.alice.id, limit=20)
    assert [job.state for job in done] == [JobState.DONE] * jobs
    messages = bot_messages(server, server.alice)
    assert len([message for message in messages if message.attachments]) == jobs


async def test_many_jobs_in_one_channel_stay_within_its_edit_budget(
    server: Server, horde_sim: Simulator
) -> None:
    # 3 edits per 10 s, so that 10 results finishing in the same poll queue for 40 virtual seconds.
    budget = ChannelEditBudget(3, 10.0)
    server.bot.delivery.budget = budget
    jobs = 10

    channel_edits = await channel_edits_of_jobs(server, horde_sim, jobs)

    assert busiest_window([at for at, _ in channel_edits], 10.0) == 3  # reached, never exceeded
    results = results_of(channel_edits)
    assert len(results) == jobs  # every result delivered, each once, with its image
    assert all(len(body["attachments"]) == 1 for _, body in results)
    # They waited their turns: three at a time, ten seconds apart.
    times = sorted(at for at, _ in results)
    assert times[-1] - times[0] >= 30.0
    progress = [entry for _, entry in channel_edits if is_progress(entry)]
    assert len(progress) < 2 * jobs  # some progress was skipped for the budget
    await all_done(server, jobs)


async def test_results_queued_past_a_minute_still_go_out_each_in_its_turn(
    server: Server, horde_sim: Simulator
) -> None:
    # One edit per 10 s: of 8 results finishing together the last waits 70 s for its turn, past
    # the engine's 60 s per listener call that used to drop it, and none goes out uncounted.
    budget = ChannelEditBudget(1, 10.0)
    server.bot.delivery.budget = budget
    jobs = 8

    channel_edits = await channel_edits_of_jobs(server, horde_sim, jobs, drain_s=90.0)

    results = results_of(channel_edits)
    assert len(results) == jobs
    assert busiest_window([at for at, _ in channel_edits], 10.0) == 1
    assert budget.longest_wait_s >= 60.0
    await all_done(server, jobs)
    journal = await server.bot.storage.jobs.list_recent(server.alice.id, limit=20)
    assert {job.delivery for job in journal} == {DeliveryState.DELIVERED}


# -- 5xx on the first edit -------------------------------------------------------------------------

FIRST_EDIT = "/webhooks/*/*/messages/@original"


async def test_a_5xx_on_the_first_edit_is_tried_again(server: Server, horde_sim: Simulator) -> None:
    server.env.inject_error("PATCH", FIRST_EDIT, status=503, code=0, message="Service Unavailable", times=1)

    result = await server.alice.slash(server.channel, "imagine", prompt="a fox")
    await let_it_finish(server, horde_sim)

    assert result.response is not None
    assert (result.response.content or "").startswith("✅ **Done**")
    assert (await only_job(server, server.alice)).state is JobState.DONE


async def test_a_first_edit_discord_keeps_failing_says_what_happened(
    server: Server, horde_sim: Simulator
) -> None:
    server.env.inject_error(
        "PATCH", FIRST_EDIT, status=503, code=0, message="Service Unavailable", times=None
    )

    result = await server.alice.slash(server.channel, "imagine", prompt="a fox")
    await server.env.advance_time(server.bot.delivery.first_edit_deadline_s + 1)

    # Told in the reply itself (Discord refuses its edits, so the explanation takes its place).
    told = [m.content for m in (result.response, *result.followups) if m is not None]
    assert told == [DISCORD_TROUBLE.format(status=503)]
    # Nothing was sent to the Horde, and nothing half-started is left.
    assert await server.bot.storage.jobs.list_recent(server.alice.id) == []
    assert horde_sim.counters.calls("generate_async") == 0
