"""Ends journalled apart from the generation (issue #14): a result the Horde finished but Discord
did not take is never dropped. It is tried again within the process, and a restart shows it again:
from the journal, with the images fetched again from the Horde while it keeps them, or saying that
they expired."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pytest
from discord_limits import LimitedDiscord

from bot.services.jobs.messages import RESULT_EXPIRED
from bot.storage import DeliveryState, JobRecord, JobState
from horde_simulator import Fault, Simulator

if TYPE_CHECKING:
    from conftest import Server

CHANNEL_EDIT = "/channels/*/messages/*"


async def refuse_channel_edits(server: Server) -> JobRecord:
    """Alice's /imagine finishes on the Horde while Discord answers every edit of its message with
    a 503, for longer than a delivery's deadline."""
    server.env.inject_error(
        "PATCH", CHANNEL_EDIT, status=503, code=0, message="Service Unavailable", times=None
    )
    await server.alice.slash(server.channel, "imagine", prompt="a lighthouse at dusk")
    await server.env.advance_time(server.bot.delivery.deadline_s + 1)
    [job] = await server.bot.storage.jobs.list_recent(server.alice.id)
    assert (job.state, job.delivery) == (JobState.DONE, DeliveryState.PENDING)
    assert server.bot.jobs.deliveries_pending() == 1
    return job


def discord_recovers(server: Server) -> None:
    server.env.backend.faults.clear()  # SimCord-internal: injected errors have no public "stop"


async def test_a_result_discord_refused_for_minutes_is_shown_when_it_takes_edits_again(
    server: Server, horde_sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    job = await refuse_channel_edits(server)
    assert "trying again later" in caplog.text
    await server.env.advance_time(300)
    assert server.bot.jobs.deliveries_pending() == 1  # still failing: still held, not dropped

    discord_recovers(server)
    await server.env.advance_time(300)

    message = server.channel.history()[-1]
    assert message.content.startswith("✅ **Done**")
    assert len(message.attachments) == 1
    shown = await server.bot.storage.jobs.get(job.id)
    assert shown is not None
    assert shown.delivery is DeliveryState.DELIVERED
    assert server.bot.jobs.deliveries_pending() == 0
    assert horde_sim.counters.calls("generate_async") == 1


async def test_a_done_but_undelivered_result_is_shown_after_a_restart(
    server: Server, horde_sim: Simulator
) -> None:
    job = await refuse_channel_edits(server)
    statuses = horde_sim.counters.calls("generate_status")
    discord_recovers(server)

    await server.restart()
    await server.env.advance_time(1)

    [message] = [m for m in server.channel.history() if m.id == job.message_id]
    assert message.content.startswith("✅ **Done**")
    assert [a.filename.startswith("imagine_1") for a in message.attachments] == [True]
    shown = await server.bot.storage.jobs.get(job.id)
    assert shown is not None
    assert (shown.state, shown.delivery) == (JobState.DONE, DeliveryState.DELIVERED)
    # Fetched again by its id, never submitted again.
    assert horde_sim.counters.calls("generate_async") == 1
    assert horde_sim.counters.calls("generate_status") == statuses + 1


async def test_after_a_restart_images_the_horde_no_longer_keeps_are_explained(
    server: Server, horde_sim: Simulator
) -> None:
    job = await refuse_channel_edits(server)
    discord_recovers(server)
    horde_sim.state.faults.script("generate_status", Fault.expire())

    await server.restart()
    await server.env.advance_time(1)

    [message] = [m for m in server.channel.history() if m.id == job.message_id]
    assert RESULT_EXPIRED in message.content
    assert message.attachments == []
    shown = await server.bot.storage.jobs.get(job.id)
    assert shown is not None
    assert shown.delivery is DeliveryState.FAILED
    assert "no longer kept" in (shown.delivery_error or "")


async def test_a_text_result_is_shown_from_the_journal_after_a_restart(
    server: Server, horde_sim: Simulator
) -> None:
    server.env.inject_error(
        "PATCH", CHANNEL_EDIT, status=503, code=0, message="Service Unavailable", times=None
    )
    await server.alice.slash(server.channel, "write", prompt="Once upon a time")
    await server.env.advance_time(server.bot.delivery.deadline_s + 1)
    [job] = await server.bot.storage.jobs.list_recent(server.alice.id)
    assert job.delivery is DeliveryState.PENDING
    discord_recovers(server)
    calls = horde_sim.counters.snapshot()

    await server.restart()
    await server.env.advance_time(1)

    [message] = [m for m in server.channel.history() if m.id == job.message_id]
    assert "✅ **Done**" in message.content
    assert horde_sim.counters.snapshot() == calls  # nothing asked of the Horde: it is all journalled


async def test_each_delivery_has_one_deadline_with_discord_pys_own_retries(
    server: Server, discord_limits: LimitedDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    # Under the rate-limit model discord.py itself retries a 5xx 5 times (1+3+5+7+9 s) per try;
    # the bot's tries stop at the delivery's one deadline instead of stacking on top.
    caplog.set_level(logging.INFO)
    server.env.inject_error(
        "PATCH", CHANNEL_EDIT, status=500, code=0, message="Internal Server Error", times=None
    )
    await server.alice.slash(server.channel, "imagine", prompt="a lighthouse at dusk")

    def deferred() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.getMessage().startswith("Deferred the result")]

    # Its progress edits fail too (each after discord.py's 25 s of retries): the end comes later.
    for _ in range(20):
        await server.env.advance_time(10)
        if deferred():
            break
    [job] = await server.bot.storage.jobs.list_recent(server.alice.id)
    assert (job.state, job.delivery) == (JobState.DONE, DeliveryState.PENDING)
    assert len(deferred()) == 1
    tries = [r for r in caplog.records if r.getMessage().startswith("Retrying the result")]
    assert len(tries) == 4  # 4 tries of ~25 s each, then the deadline cut the fifth
    assert f"not done within {server.bot.delivery.deadline_s:g}s" in deferred()[0].getMessage()

    discord_recovers(server)
    await server.env.advance_time(120)
    shown = await server.bot.storage.jobs.get(job.id)
    assert shown is not None
    assert shown.delivery is DeliveryState.DELIVERED
    assert server.channel.history()[-1].content.startswith("✅ **Done**")
    assert discord_limits.stats.escaped_429 == 0
