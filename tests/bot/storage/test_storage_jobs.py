from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import ValidationError

from bot.storage import (
    DeliveryState,
    InvalidTransitionError,
    JobRecord,
    JobState,
    NotFoundError,
    StorageError,
    guild_shard,
)
from bot.storage.sql import SQLStorage

if TYPE_CHECKING:
    from storage_fixtures import Backend

pytest_plugins = ("storage_fixtures",)

TERMINAL = [JobState.DONE, JobState.CANCELLED, JobState.FAILED]


def job(**overrides: Any) -> JobRecord:
    fields: dict[str, Any] = {
        "kind": "image",
        "guild_id": 100,
        "channel_id": 200,
        "user_id": 300,
        "key_owner": "user",
        "request_json": json.dumps({"prompt": "a cat", "params": {"steps": 30}}),
        "params_json": json.dumps({"prompt": "a cat", "steps": 30}),
    }
    return JobRecord(**(fields | overrides))


def test_a_guilds_shard_follows_discords_rule() -> None:
    guild = (123_456 << 22) | 0b1010  # the shard depends on the timestamp bits only
    assert guild_shard(guild, 1) == 0
    assert guild_shard(guild, 4) == 123_456 % 4 == 0
    assert guild_shard(guild, 5) == 123_456 % 5 == 1
    assert guild_shard(None, 5) == 0  # DMs
    with pytest.raises(ValueError, match="at least 1"):
        guild_shard(guild, 0)


def test_job_state_terminality() -> None:
    assert {state for state in JobState if state.is_terminal} == set(TERMINAL)


def test_job_record_refuses_an_apikey_in_the_journalled_request() -> None:
    with pytest.raises(ValidationError, match="must not contain the apikey"):
        job(request_json=json.dumps({"prompt": "x", "apikey": "0123456789"}))


def test_job_record_requires_json_and_a_horde_id_when_submitted() -> None:
    with pytest.raises(ValidationError, match="request_json"):
        job(request_json="{not json")
    with pytest.raises(ValidationError, match="params_json"):
        job(params_json="")
    with pytest.raises(ValidationError, match="submitted job must have a horde_id"):
        job(state=JobState.SUBMITTED)
    with pytest.raises(ValidationError, match="kind"):
        job(kind="video")


async def test_create_and_get(storage: SQLStorage[Any]) -> None:
    record = job()
    assert len(record.id) == 32
    assert await storage.jobs.create(record) == record
    assert await storage.jobs.get(record.id) == record
    assert await storage.jobs.get("f" * 32) is None
    with pytest.raises(StorageError, match=f"cannot create job {record.id}"):
        await storage.jobs.create(record)


async def test_lifecycle_pending_submitted_done(storage: SQLStorage[Any], clock: Any) -> None:
    record = await storage.jobs.create(job())
    submitted = await storage.jobs.update(record.id, state=JobState.SUBMITTED, horde_id="h-1", kudos=12.0)
    assert submitted.state is JobState.SUBMITTED
    assert submitted.updated_at == clock.now
    assert await storage.jobs.get_by_horde_id("h-1") == submitted

    done = await storage.jobs.update(
        record.id, state=JobState.DONE, result_json=json.dumps({"generations": []}), message_id=999
    )
    stored = await storage.jobs.get(record.id)
    assert stored == done
    assert stored.state is JobState.DONE
    assert stored.horde_id == "h-1"
    assert stored.kudos == 12.0
    assert stored.message_id == 999
    assert stored.created_at == record.created_at
    assert stored.updated_at > submitted.updated_at


async def test_update_accepts_state_strings(storage: SQLStorage[Any]) -> None:
    record = await storage.jobs.create(job())
    failed = await storage.jobs.update(record.id, state="failed", error="KudosUpfront")  # type: ignore[arg-type]
    assert failed.state is JobState.FAILED
    assert failed.error == "KudosUpfront"


@pytest.mark.parametrize("terminal", TERMINAL)
async def test_a_terminal_state_is_never_left(storage: SQLStorage[Any], terminal: JobState) -> None:
    record = await storage.jobs.create(job())
    await storage.jobs.update(record.id, state=JobState.SUBMITTED, horde_id="h")
    ended = await storage.jobs.update(record.id, state=terminal)
    for target in JobState:
        if target is terminal:
            continue
        with pytest.raises(InvalidTransitionError, match=f"{terminal} is terminal"):
            await storage.jobs.update(record.id, state=target, horde_id="h")
    assert await storage.jobs.get(record.id) == ended
    # Other fields may still change, e.g. the message that shows the result.
    later = await storage.jobs.update(record.id, message_id=5)
    assert later.state is terminal
    assert later.message_id == 5


async def test_a_submitted_job_cannot_go_back_to_pending(storage: SQLStorage[Any]) -> None:
    record = await storage.jobs.create(job())
    await storage.jobs.update(record.id, state=JobState.SUBMITTED, horde_id="h")
    with pytest.raises(InvalidTransitionError, match="cannot go back to pending"):
        await storage.jobs.update(record.id, state=JobState.PENDING)


async def test_invalid_updates_are_rejected_and_change_nothing(storage: SQLStorage[Any]) -> None:
    record = await storage.jobs.create(job())
    with pytest.raises(ValueError, match="cannot be updated: id, user_id"):
        await storage.jobs.update(record.id, id="0" * 32, user_id=1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="submitted job must have a horde_id"):
        await storage.jobs.update(record.id, state=JobState.SUBMITTED)
    with pytest.raises(ValidationError, match="state"):
        await storage.jobs.update(record.id, state="exploded")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="result_json"):
        await storage.jobs.update(record.id, result_json="{")
    assert await storage.jobs.get(record.id) == record
    with pytest.raises(NotFoundError, match="does not exist"):
        await storage.jobs.update("e" * 32, state=JobState.FAILED)


async def test_list_unfinished_by_shard(storage: SQLStorage[Any], clock: Any) -> None:
    pending0 = await storage.jobs.create(job(shard_id=0, created_at=clock()))
    submitted1 = await storage.jobs.create(
        job(shard_id=1, state=JobState.SUBMITTED, horde_id="h1", created_at=clock())
    )
    pending1 = await storage.jobs.create(job(shard_id=1, created_at=clock()))
    pending2 = await storage.jobs.create(job(shard_id=2, created_at=clock()))
    for state in TERMINAL:
        await storage.jobs.create(job(shard_id=1, state=state, created_at=clock()))
    everything = [pending0.id, submitted1.id, pending1.id, pending2.id]
    assert [j.id for j in await storage.jobs.list_unfinished()] == everything
    assert [j.id for j in await storage.jobs.list_unfinished(shard_ids=[1])] == [submitted1.id, pending1.id]
    assert [j.id for j in await storage.jobs.list_unfinished({2, 0})] == [pending0.id, pending2.id]
    assert [j.id for j in await storage.jobs.list_unfinished(range(3))] == everything
    assert await storage.jobs.list_unfinished(shard_ids=[7]) == []
    assert await storage.jobs.list_unfinished(shard_ids=()) == []
    await storage.jobs.update(pending1.id, state=JobState.CANCELLED)
    assert [j.id for j in await storage.jobs.list_unfinished(shard_ids=[1])] == [submitted1.id]


async def test_count_unfinished_counts_a_members_and_a_servers_running_jobs(storage: SQLStorage[Any]) -> None:
    await storage.jobs.create(job(user_id=1))
    await storage.jobs.create(job(user_id=1, state=JobState.SUBMITTED, horde_id="h1", shard_id=3))
    await storage.jobs.create(job(user_id=2))
    await storage.jobs.create(job(user_id=1, guild_id=101))  # another server
    await storage.jobs.create(job(user_id=1, guild_id=None))  # a DM
    for state in TERMINAL:
        await storage.jobs.create(job(user_id=1, state=state))
    assert await storage.jobs.count_unfinished(100, 1) == (2, 3)
    assert await storage.jobs.count_unfinished(100, 2) == (1, 3)
    assert await storage.jobs.count_unfinished(100, 9) == (0, 3)
    assert await storage.jobs.count_unfinished(101, 1) == (1, 1)
    assert await storage.jobs.count_unfinished(None, 1) == (1, 1)
    assert await storage.jobs.count_unfinished(102, 1) == (0, 0)


async def test_delivery_is_journalled_apart_and_undelivered_ends_are_listed_by_shard(
    storage: SQLStorage[Any], clock: Any
) -> None:
    running = await storage.jobs.create(job(shard_id=0, created_at=clock()))
    assert running.delivery is None  # until the job ends
    ended = [await storage.jobs.create(job(shard_id=shard, created_at=clock())) for shard in (0, 1, 1)]
    for record in ended:
        await storage.jobs.update(record.id, state=JobState.DONE, delivery=DeliveryState.PENDING)
    assert [j.id for j in await storage.jobs.list_undelivered()] == [record.id for record in ended]
    assert [j.id for j in await storage.jobs.list_undelivered([1])] == [ended[1].id, ended[2].id]

    # The delivery changes after the end, which stays as it was.
    shown = await storage.jobs.update(ended[1].id, delivery=DeliveryState.DELIVERED)
    failed = await storage.jobs.update(
        ended[2].id, delivery=DeliveryState.FAILED, delivery_error="its message was deleted"
    )
    assert (shown.state, shown.delivery, failed.delivery_error) == (
        JobState.DONE,
        DeliveryState.DELIVERED,
        "its message was deleted",
    )
    assert await storage.jobs.list_undelivered([1]) == []
    assert [j.id for j in await storage.jobs.list_undelivered()] == [ended[0].id]
    assert await storage.jobs.list_unfinished() == [running]


async def test_jobs_journalled_without_a_shard_belong_to_shard_0(
    storage: SQLStorage[Any], clock: Any
) -> None:
    # Rows from before sharding (or from an unsharded bot) carry no shard: exactly one process of
    # a sharded bot, the one running shard 0 (where DMs go too), must pick them up.
    legacy = await storage.jobs.create(job(shard_id=None, created_at=clock()))
    dm = await storage.jobs.create(job(shard_id=0, guild_id=None, created_at=clock()))
    await storage.jobs.create(job(shard_id=1, created_at=clock()))

    assert [j.id for j in await storage.jobs.list_unfinished([0])] == [legacy.id, dm.id]
    assert legacy.id not in {j.id for j in await storage.jobs.list_unfinished([1, 2])}


async def test_list_recent_is_per_user_newest_first(storage: SQLStorage[Any], clock: Any) -> None:
    mine = [
        await storage.jobs.create(job(user_id=1, kind=kind, created_at=clock()))
        for kind in ("image", "text", "alchemy")
    ]
    await storage.jobs.create(job(user_id=2, created_at=clock()))
    assert [j.id for j in await storage.jobs.list_recent(1)] == [j.id for j in reversed(mine)]
    assert [j.id for j in await storage.jobs.list_recent(1, limit=2)] == [mine[2].id, mine[1].id]


async def test_get_by_message_finds_the_newest_job_of_that_message(
    storage: SQLStorage[Any], clock: Any
) -> None:
    await storage.jobs.create(job(channel_id=5, message_id=7, created_at=clock()))
    newer = await storage.jobs.create(job(channel_id=5, message_id=7, created_at=clock()))
    await storage.jobs.create(job(channel_id=6, message_id=8, created_at=clock()))

    found = await storage.jobs.get_by_message(5, 7)

    assert found is not None
    assert found.id == newer.id
    assert await storage.jobs.get_by_message(6, 7) is None
    assert await storage.jobs.get_by_message(5, 8) is None


async def test_unfinished_jobs_survive_a_restart(persistent_backend: Backend) -> None:
    async with persistent_backend.open() as storage:
        record = await storage.jobs.create(job(key_owner="anonymous"))
        await storage.jobs.update(record.id, state=JobState.SUBMITTED, horde_id="resume-me")
    async with persistent_backend.open() as storage:
        (resumed,) = await storage.jobs.list_unfinished()
    assert resumed.id == record.id
    assert resumed.horde_id == "resume-me"
    assert resumed.key_owner == "anonymous"


async def test_a_horde_id_belongs_to_one_job(storage: SQLStorage[Any]) -> None:
    await storage.jobs.create(job(state=JobState.SUBMITTED, horde_id="same"))
    with pytest.raises(StorageError, match="cannot create job"):
        await storage.jobs.create(job(state=JobState.SUBMITTED, horde_id="same"))


async def test_kudos_spent_sums_the_matching_jobs_created_since(storage: SQLStorage[Any], clock: Any) -> None:
    since = clock()
    spent = [
        # (guild, user, key owner, kudos, created_at)
        (1, 10, "sponsor", 5.0, since),  # at `since` exactly: counted
        (1, 11, "anonymous", 7.5, clock()),
        (1, 10, "user", 20.0, clock()),
        (2, 10, "sponsor", 3.0, clock()),
        (1, 10, "sponsor", None, clock()),  # no recorded cost: counts as 0
        (1, 10, "sponsor", 100.0, since - timedelta(microseconds=1)),  # before `since`
    ]
    for guild_id, user_id, key_owner, kudos, created_at in spent:
        await storage.jobs.create(
            job(guild_id=guild_id, user_id=user_id, key_owner=key_owner, kudos=kudos, created_at=created_at)
        )
    kudos_spent = storage.jobs.kudos_spent
    assert await kudos_spent(since=since) == 35.5
    assert await kudos_spent(since=since, guild_id=1) == 32.5
    assert await kudos_spent(since=since, guild_id=1, user_id=10) == 25.0
    assert await kudos_spent(since=since, user_id=10) == 28.0
    assert await kudos_spent(since=since, guild_id=1, key_owners=["sponsor", "anonymous"]) == 12.5
    assert await kudos_spent(since=since, guild_id=1, user_id=10, key_owners=["sponsor"]) == 5.0
    assert await kudos_spent(since=since, key_owners=[]) == 0.0
    assert await kudos_spent(since=since, guild_id=3) == 0.0
    assert await kudos_spent(since=since - timedelta(days=1)) == 135.5
