"""What /jobs says about a member's running jobs (``bot/services/job_list.py``): a job still
waiting for its turn in the bot's own queue shows its place there, whichever process runs it."""

from __future__ import annotations

import discord

from bot.services.job_list import overview
from bot.storage import JobRecord, JobState


def record(state: JobState) -> JobRecord:
    return JobRecord(
        kind="image",
        channel_id=10,
        message_id=20,
        user_id=30,
        key_owner="user",
        request_json="{}",
        params_json='{"prompt": "a fox"}',
        state=state,
        horde_id=None if state is JobState.PENDING else "horde-1",
    )


def test_a_job_waiting_in_the_bots_queue_shows_its_place_there() -> None:
    waiting, sent = record(JobState.PENDING), record(JobState.SUBMITTED)
    now = discord.utils.utcnow()

    shown = overview([waiting, sent], {}, now=now, places={waiting.id: 3})
    unknown = overview([waiting], {}, now=now)

    assert "#3 in the bot's queue" in shown.lines_running[0]
    assert "sent to the AI Horde" in shown.lines_running[1]
    assert "starting" in unknown.lines_running[0]
