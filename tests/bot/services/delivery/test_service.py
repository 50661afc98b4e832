"""bot.services.delivery without Discord: the per-channel edit budget (injected clock), the message
targets (channel message, private reply and its move to the channel) and the text/alchemy listener."""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import datetime
import io
import random
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import discord
import pytest

from bot.config import ProgressSettings
from bot.services.delivery.budget import ChannelEditBudget
from bot.services.delivery.listener import NO_FILES, MessageJobListener
from bot.services.delivery.service import Delivery
from bot.services.delivery.targets import MOVED_AFTER_TIMEOUT, MOVED_HERE, ChannelTarget, InteractionTarget
from bot.services.jobs import CancelReason, JobAbandoned, JobOutcome, JobProgress
from bot.storage import JobRecord, JobState

CHANNEL = 10
JOB = JobRecord(
    kind="text",
    channel_id=CHANNEL,
    message_id=20,
    user_id=30,
    key_owner="user",
    request_json="{}",
    params_json="{}",
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeResponse:
    def __init__(self, status: int) -> None:
        self.status = status
        self.reason = "fake"


def http_error(kind: type[discord.HTTPException], status: int, code: int) -> discord.HTTPException:
    return kind(FakeResponse(status), {"code": code, "message": "fake"})  # type: ignore[arg-type]


# -- the budget ------------------------------------------------------------------------------------


def test_the_budget_allows_n_progress_edits_per_window_per_channel() -> None:
    clock = FakeClock()
    budget = ChannelEditBudget(5, 5.0, clock=clock)

    assert [budget.try_spend(CHANNEL) for _ in range(6)] == [True] * 5 + [False]
    assert budget.try_spend(CHANNEL + 1)  # another channel has its own
    clock.now += 4.9  # still within the window of the first five
    assert not budget.try_spend(CHANNEL)
    clock.now += 0.1
    assert sum(budget.try_spend(CHANNEL) for _ in range(20)) == 5
    clock.now += 60.0  # never more than a window's worth at once
    assert sum(budget.try_spend(CHANNEL) for _ in range(20)) == 5


def edits_in_busiest_window(times: list[float], window_s: float) -> int:
    """The most of ``times`` in any half-open stretch ``[t, t + window_s)``: the busiest one
    starts at one of them."""
    ordered = sorted(times)
    return max((bisect.bisect_left(ordered, at + window_s) - i for i, at in enumerate(ordered)), default=0)


@pytest.mark.parametrize("seed", range(5))
def test_over_a_long_random_schedule_no_window_holds_more_than_the_bound(seed: int) -> None:
    rng = random.Random(seed)
    clock = FakeClock()
    budget = ChannelEditBudget(5, 5.0, clock=clock)
    sent: list[float] = []  # when each edit went out
    waits: list[tuple[float, float]] = []  # each result: asked at, went out at
    for _ in range(3000):  # ~30 minutes of a busy channel: bursts and lulls
        clock.now += rng.expovariate(1.0) if rng.random() < 0.9 else rng.uniform(5.0, 20.0)
        if rng.random() < 0.6:
            if budget.try_spend(CHANNEL):
                sent.append(clock.now)
        else:
            turn = budget.reserve(CHANNEL)
            sent.append(turn)
            waits.append((clock.now, turn))

    assert edits_in_busiest_window(sent, 5.0) == 5  # reached, never exceeded
    assert edits_in_busiest_window(sent, 10.0) <= 10
    # Every result went out, first come first served, never earlier than asked.
    assert all(asked <= turn for asked, turn in waits)
    turns = [turn for _, turn in waits]
    assert turns == sorted(turns)
    assert budget.longest_wait_s == max(turn - asked for asked, turn in waits)


def test_the_bound_holds_across_channels_and_an_idle_channel_is_free_again() -> None:
    clock = FakeClock()
    budget = ChannelEditBudget(2, 10.0, clock=clock)
    assert [budget.reserve(CHANNEL) for _ in range(5)] == [100.0, 100.0, 110.0, 110.0, 120.0]
    assert budget.reserve(CHANNEL + 1) == 100.0  # another channel does not wait for this one
    clock.now = 130.0 - 1e-6
    assert budget.available(CHANNEL) == 1  # the turn at 120 is still within the window
    clock.now = 130.0
    assert budget.available(CHANNEL) == 2


def test_progress_never_takes_a_turn_an_image_or_a_result_waits_for() -> None:
    clock = FakeClock()
    budget = ChannelEditBudget(2, 10.0, clock=clock)
    assert [budget.try_spend(CHANNEL), budget.try_spend(CHANNEL)] == [True, True]
    clock.now = 101.0
    assert budget.reserve(CHANNEL) == 110.0  # a result waits for the first turn to come back

    clock.now = 110.0 - 1e-6
    assert not budget.try_spend(CHANNEL)  # a result waits for the next turn
    assert budget.available(CHANNEL) == 0
    clock.now = 110.0  # the result's turn, and the second edit's turn comes back too
    assert budget.try_spend(CHANNEL)
    assert not budget.try_spend(CHANNEL)
    assert budget.reserve(CHANNEL) == 120.0


def test_a_result_waits_however_long_the_queue_and_none_goes_out_uncounted() -> None:
    clock = FakeClock()
    budget = ChannelEditBudget(1, 10.0, clock=clock)
    turns = [budget.reserve(CHANNEL) for _ in range(10)]

    # One a window, first come first served: the tenth waits 90 s, past any old limit on waiting,
    # and none goes out early (uncounted, it would draw Discord's 429s).
    assert turns == [100.0 + 10.0 * i for i in range(10)]
    assert budget.longest_wait_s == 90.0


async def test_acquire_sleeps_until_the_turn() -> None:
    clock = FakeClock()
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    budget = ChannelEditBudget(2, 5.0, clock=clock, sleep=sleep)
    for _ in range(4):
        await budget.acquire(CHANNEL)
    clock.now += 2.0
    await budget.acquire(CHANNEL)

    assert slept == [5.0, 5.0, 8.0]  # the first two at once; the fifth at 110, asked at 102


async def test_once_the_bot_stops_nothing_waits_for_its_turn() -> None:
    budget = ChannelEditBudget(1, 3600.0)
    await budget.acquire(CHANNEL)
    waiting = asyncio.create_task(budget.acquire(CHANNEL))  # its turn is an hour away
    await asyncio.sleep(0)
    assert not waiting.done()

    await delivery(FakeChannel(), budget).stop_waiting()  # the bot's shutdown hook

    await asyncio.wait_for(waiting, timeout=5.0)  # a safety net: it returns at once
    await budget.acquire(CHANNEL)  # and nothing waits any more


def test_idle_channels_are_forgotten() -> None:
    clock = FakeClock()
    budget = ChannelEditBudget(1, 1.0, clock=clock, max_channels=3)
    for channel in range(10):
        budget.try_spend(channel)
        clock.now += 2.0  # every earlier channel is free again

    assert len(budget._turns) <= 3


def test_a_budget_needs_a_positive_rate() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ChannelEditBudget(0, 5.0)
    with pytest.raises(ValueError, match="window_s positive"):
        ChannelEditBudget(5, 0.0)


# -- the targets -----------------------------------------------------------------------------------


@dataclass
class FakeChannel:
    """``get_partial_messageable``'s channel: records sends and edits."""

    sent: list[dict[str, Any]] = field(default_factory=list)
    edits: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    failures: list[discord.HTTPException] = field(default_factory=list)

    async def send(self, **fields: Any) -> Any:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(fields)
        return SimpleNamespace(id=99, jump_url="https://discord.com/channels/1/10/99", attachments=[])

    def get_partial_message(self, message_id: int) -> Any:
        async def edit(**fields: Any) -> Any:
            if self.failures:
                raise self.failures.pop(0)
            self.edits.append((message_id, fields))
            return SimpleNamespace(id=message_id, attachments=[])

        return SimpleNamespace(edit=edit)


class FakeClient:
    def __init__(self, channel: FakeChannel) -> None:
        self.channel = channel

    def get_partial_messageable(self, channel_id: int, *, guild_id: int | None = None) -> FakeChannel:
        assert channel_id == CHANNEL
        return self.channel


class FakeInteraction:
    def __init__(self, age_s: float, failures: list[discord.HTTPException] | None = None) -> None:
        self.created_at = discord.utils.utcnow() - datetime.timedelta(seconds=age_s)
        self.edits: list[dict[str, Any]] = []
        self.failures = failures or []

    async def edit_original_response(self, **fields: Any) -> Any:
        if self.failures:
            raise self.failures.pop(0)
        self.edits.append(fields)
        return SimpleNamespace(id=1, attachments=[])


def build(fresh: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {"content": "progress"}
    if fresh:
        fields["view"] = "the cancel button"
    return fields


async def test_a_channel_target_without_a_message_posts_one_for_its_member_then_edits_it() -> None:
    channel = FakeChannel()
    client: Any = FakeClient(channel)
    target = ChannelTarget(client, CHANNEL, None, user_id=30, note="-# why")

    await target.edit(build)
    await target.edit(build)

    [sent] = channel.sent
    assert sent["content"] == "progress\n<@30> -# why"
    assert sent["view"] == "the cancel button"  # a new message gets everything
    assert [user.id for user in sent["allowed_mentions"].users] == [30]
    assert target.message_id == 99
    [(message_id, edit)] = channel.edits
    assert (message_id, edit["content"]) == (99, "progress\n<@30> -# why")  # the note stays


async def test_a_private_reply_is_edited_through_the_interaction_while_its_token_lives() -> None:
    channel, interaction = FakeChannel(), FakeInteraction(age_s=60)
    target = InteractionTarget(interaction, ChannelTarget(FakeClient(channel), CHANNEL, None))  # type: ignore[arg-type]

    await target.edit(build)

    assert interaction.edits == [{"content": "progress"}]
    assert channel.sent == []
    assert target.private
    assert target.message_id is None


async def test_near_the_end_of_its_token_a_private_reply_moves_to_the_channel() -> None:
    channel, interaction = FakeChannel(), FakeInteraction(age_s=14 * 60)
    fallback = ChannelTarget(FakeClient(channel), CHANNEL, None, user_id=30, note=MOVED_AFTER_TIMEOUT)  # type: ignore[arg-type]
    target = InteractionTarget(interaction, fallback)

    await target.edit(build)
    await target.edit(build)

    assert channel.sent[0]["content"].endswith(MOVED_AFTER_TIMEOUT)
    assert [message_id for message_id, _ in channel.edits] == [99]  # then the channel message
    [pointer] = interaction.edits  # the private reply says where it went, once
    assert pointer["content"] == MOVED_HERE.format(url="https://discord.com/channels/1/10/99")
    assert pointer["attachments"] == []
    assert not target.private
    assert target.message_id == 99


@pytest.mark.parametrize(("status", "code"), [(404, 10015), (401, 50027)])
async def test_a_refused_token_moves_the_private_reply_at_once(status: int, code: int) -> None:
    refused = http_error(discord.NotFound if status == 404 else discord.HTTPException, status, code)
    channel, interaction = FakeChannel(), FakeInteraction(age_s=60, failures=[refused])
    target = InteractionTarget(interaction, ChannelTarget(FakeClient(channel), CHANNEL, None))  # type: ignore[arg-type]

    await target.edit(build)

    assert len(channel.sent) == 1
    assert interaction.edits == []  # the token is dead: no pointer
    assert target.message_id == 99


async def test_a_dismissed_private_reply_is_not_moved() -> None:
    # Unknown Message on the reply: its member dismissed it, which the listener treats as deleted.
    gone = http_error(discord.NotFound, 404, 10008)
    channel, interaction = FakeChannel(), FakeInteraction(age_s=60, failures=[gone])
    target = InteractionTarget(interaction, ChannelTarget(FakeClient(channel), CHANNEL, None))  # type: ignore[arg-type]

    with pytest.raises(discord.NotFound):
        await target.edit(build)
    assert channel.sent == []


# -- the text/alchemy listener -----------------------------------------------------------------------


class FakeJobs:
    def __init__(self) -> None:
        self.moves: list[tuple[str, int | None]] = []

    async def update(self, job_id: str, *, message_id: int | None) -> None:
        self.moves.append((job_id, message_id))


def delivery(channel: FakeChannel, budget: ChannelEditBudget | None = None) -> Delivery:
    progress = ProgressSettings.model_construct(edit_interval_s=1.0, bar_width=10)
    client: Any = FakeClient(channel)
    storage: Any = SimpleNamespace(jobs=FakeJobs())
    return Delivery(client, storage, progress, budget=budget, retry_delays_s=(0.0, 0.0, 0.0))


def progress(finished: int) -> JobProgress:
    return JobProgress(
        job_id=JOB.id,
        state="processing",
        queue_position=0,
        wait_time=5,
        finished=finished,
        processing=1,
        waiting=0,
        restarted=0,
        n=1,
        kudos=1.0,
        elapsed_s=1.0,
        is_possible=True,
    )


OUTCOME = JobOutcome(state=JobState.DONE, images=(), kudos=2.0, workers=(), error=None)


def text_listener(deliver: Delivery, target: Any, clock: FakeClock) -> MessageJobListener:
    return MessageJobListener(
        deliver,
        target,
        progress_text=lambda shown: f"progress {shown.finished if shown else '-'}",
        finish=lambda job, outcome: {
            "content": "✅ done",
            "embed": None,
            "attachments": [discord.File(io.BytesIO(b"text"), filename="text.txt")],
            "view": None,
        },
        progress_view=lambda job: "the cancel button",  # type: ignore[arg-type,return-value]
        clock=clock,
    )


async def test_text_progress_is_throttled_and_the_result_waits_for_the_channels_turn() -> None:
    channel, clock = FakeChannel(), FakeClock()
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)
        clock.now += delay

    budget = ChannelEditBudget(1, 20.0, clock=clock, sleep=sleep)
    deliver = delivery(channel, budget)
    watcher = text_listener(deliver, ChannelTarget(deliver.client, CHANNEL, 20), clock)

    await watcher.on_progress(JOB, progress(0))
    clock.now += 2.0
    await watcher.on_progress(JOB, progress(1))  # the channel's one edit per 20 s is spent: skipped
    await watcher.on_finished(JOB, OUTCOME)  # the result waits for the turn, then goes out

    assert [fields["content"] for _, fields in channel.edits] == ["progress 0", "✅ done"]
    assert channel.edits[0][1]["view"] == "the cancel button"
    assert slept == [18.0]


async def test_a_result_of_the_shutdown_does_not_wait_for_the_channels_turn() -> None:
    channel, clock = FakeChannel(), FakeClock()
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    deliver = delivery(channel, ChannelEditBudget(1, 20.0, clock=clock, sleep=sleep))
    watcher = text_listener(deliver, ChannelTarget(deliver.client, CHANNEL, 20), clock)
    await watcher.on_progress(JOB, progress(0))

    # The bot is shutting down: there is no later to wait for.
    await watcher.on_finished(JOB, dataclasses.replace(OUTCOME, cancel_reason=CancelReason.SHUTDOWN))

    assert slept == []
    assert [fields["content"] for _, fields in channel.edits] == ["progress 0", "✅ done"]


async def test_without_attach_files_the_text_result_says_so() -> None:
    channel, clock = FakeChannel(failures=[http_error(discord.Forbidden, 403, 50013)]), FakeClock()
    deliver = delivery(channel)
    watcher = text_listener(deliver, ChannelTarget(deliver.client, CHANNEL, 20), clock)

    await watcher.on_finished(JOB, OUTCOME)

    [(_, final)] = channel.edits
    assert final["attachments"] == []
    assert final["content"] == f"✅ done\n{NO_FILES}"


async def test_the_text_result_survives_a_burst_of_429s_and_a_deleted_message_abandons_the_job() -> None:
    burst = [http_error(discord.HTTPException, 429, 0) for _ in range(3)]
    channel, clock = FakeChannel(failures=burst), FakeClock()
    deliver = delivery(channel)
    watcher = text_listener(deliver, ChannelTarget(deliver.client, CHANNEL, 20), clock)

    await watcher.on_finished(JOB, OUTCOME)
    assert [fields["content"] for _, fields in channel.edits] == ["✅ done"]

    channel.failures = [http_error(discord.NotFound, 404, 10008)]
    with pytest.raises(JobAbandoned):
        await watcher.on_progress(JOB, progress(0))


async def test_a_moved_text_job_is_journalled_with_its_new_message() -> None:
    channel, clock = FakeChannel(), FakeClock()
    deliver = delivery(channel)
    watcher = text_listener(
        deliver, ChannelTarget(deliver.client, CHANNEL, None, user_id=30, note="-# why"), clock
    )

    await watcher.on_progress(JOB, progress(0))
    await watcher.on_finished(JOB, OUTCOME)

    assert deliver.storage.jobs.moves == [(JOB.id, 99)]
    assert channel.sent[0]["view"] == "the cancel button"
    assert channel.edits[-1][1]["content"].startswith("✅ done")
