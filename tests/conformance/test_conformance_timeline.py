"""What a request's checks say over its life, on the real AI Horde and on the simulator.

The rules both must follow (AI-Horde 5.1.5, see horde_simulator/_queue.py):

- queued → processing → done, never back;
- while queued: ``queue_position`` counts down to 1 and ``wait_time`` is the estimate for the
  jobs up to and including the request over the threads free for them (one job's time while they
  are fewer than the threads; a fresh server without speed data counts megapixelsteps instead),
  never growing as the queue moves, and never the whole queue's time; right after a submit
  the server may not have the request in its once-a-second snapshot yet (position 0, no wait);
- while processing: position 0, ``wait_time`` counts down;
- done: position 0, ``wait_time`` 0.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import Any

from horde_sides import (
    Side,
    both,
    needs_real_horde,
    sides_fixture,  # noqa: F401 - the fixture `sides`
)

JOB_SECONDS = 4.0
SMALL = {"steps": 10}

pytestmark = needs_real_horde


@dataclass(frozen=True)
class Sample:
    at: float
    waiting: int
    processing: int
    finished: int
    done: bool
    queue_position: int
    wait_time: int
    is_possible: bool
    kudos: float

    @property
    def phase(self) -> str:
        if self.done:
            return "done"
        return "processing" if self.processing else "queued"

    @classmethod
    def of(cls, at: float, body: dict[str, Any]) -> Sample:
        return cls(
            at,
            body["waiting"],
            body["processing"],
            body["finished"],
            body["done"],
            body["queue_position"],
            body["wait_time"],
            body["is_possible"],
            body["kudos"],
        )


async def follow(side: Side, ids: list[str], *, within: float = 90.0) -> dict[str, list[Sample]]:
    """Each id's check once a second until it is done."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    samples: dict[str, list[Sample]] = {gen_id: [] for gen_id in ids}
    while any(not seen or not seen[-1].done for seen in samples.values()):
        assert loop.time() - started < within, f"{side.name}: not done within {within} s: {samples}"
        for gen_id, seen in samples.items():
            if seen and seen[-1].done:
                continue
            answer = await side.call("GET", f"v2/generate/check/{gen_id}")
            assert answer.status == 200, answer.body
            seen.append(Sample.of(loop.time() - started, answer.body))
        await asyncio.sleep(1.0)
    return samples


def phases(samples: list[Sample]) -> list[str]:
    collapsed: list[str] = []
    for sample in samples:
        if not collapsed or collapsed[-1] != sample.phase:
            collapsed.append(sample.phase)
    return collapsed


def assert_follows_the_rules(samples: list[Sample], what: str) -> None:
    order = phases(samples)
    assert order[-1] == "done", f"{what}: {order}"
    assert order == [p for p in ("queued", "processing", "done") if p in order], f"{what}: {order}"
    queued = [s for s in samples if s.phase == "queued" and s.queue_position > 0]
    assert all(s.wait_time > 0 for s in queued), f"{what}: {queued}"
    # Not the whole queue: less than the job on the worker plus every job up to this one.
    assert all(s.wait_time < (s.queue_position + 1) * JOB_SECONDS for s in queued), f"{what}: {queued}"
    for earlier, later in itertools.pairwise(queued):
        assert later.queue_position <= earlier.queue_position, f"{what}: {queued}"
        assert later.wait_time <= earlier.wait_time, f"{what}: {queued}"
    unsnapped = [s for s in samples if s.phase == "queued" and s.queue_position == 0]
    assert all(s.wait_time == 0 for s in unsnapped), f"{what}: {unsnapped}"
    running = [s for s in samples if s.phase == "processing"]
    assert all(s.queue_position == 0 for s in running), f"{what}: {running}"
    assert all(s.wait_time <= JOB_SECONDS + 1 for s in running), f"{what}: {running}"
    for earlier, later in itertools.pairwise(running):
        assert later.wait_time <= earlier.wait_time, f"{what}: {running}"
    done = samples[-1]
    assert (done.queue_position, done.wait_time, done.finished) == (0, 0, 1), f"{what}: {done}"


async def test_four_jobs_on_one_worker_go_queued_processing_done_alike(sides: tuple[Side, Side]) -> None:
    await both(sides, lambda side: side.start_worker(JOB_SECONDS))

    async def four_jobs(side: Side) -> dict[str, list[Sample]]:
        ids = []
        for index in range(4):
            accepted = await side.submit("image", {"prompt": f"job {index}", "params": SMALL})
            assert accepted.status == 202, accepted.body
            ids.append(accepted.body["id"])
            await asyncio.sleep(0.6)
        return await follow(side, ids)

    real, sim = await both(sides, four_jobs)
    for name, traces in (("real", real), ("sim", sim)):
        for index, samples in enumerate(traces.values()):
            assert_follows_the_rules(samples, f"{name} job {index}")
    # The last job waited behind the others: both sides saw it queued with a position of 3 or
    # more, then moving up, then running; the worker takes them one at a time (one request each).
    for name, traces in (("real", real), ("sim", sim)):
        last = list(traces.values())[-1]
        assert max(s.queue_position for s in last) >= 2, (name, last)
        assert phases(last) == ["queued", "processing", "done"], (name, last)
        assert max(s.processing for trace in traces.values() for s in trace) == 1, name
    real_kudos = [trace[-1].kudos for trace in real.values()]
    assert [trace[-1].kudos for trace in sim.values()] == real_kudos


async def test_a_worker_takes_up_to_four_jobs_of_one_request_at_once(sides: tuple[Side, Side]) -> None:
    await both(sides, lambda side: side.start_worker(JOB_SECONDS))

    async def batch(side: Side) -> list[Sample]:
        accepted = await side.submit("image", {"prompt": "batch", "params": {**SMALL, "n": 5}})
        return (await follow(side, [accepted.body["id"]]))[accepted.body["id"]]

    real, sim = await both(sides, batch)
    for name, samples in (("real", real), ("sim", sim)):
        running = [s for s in samples if s.phase == "processing"]
        assert max(s.processing for s in running) == 4, (name, samples)
        assert any((s.processing, s.finished) == (1, 4) for s in running), (name, samples)
        assert samples[-1].finished == 5
    assert sim[-1].kudos == real[-1].kudos


async def test_jobs_on_a_worker_outlive_a_delete_and_are_charged(sides: tuple[Side, Side]) -> None:
    await both(sides, lambda side: side.start_worker(JOB_SECONDS))

    async def delete_while_running(side: Side) -> tuple[dict[str, Any], list[Sample], dict[str, Any]]:
        accepted = await side.submit("image", {"prompt": "cancel me", "params": {**SMALL, "n": 2}})
        gen_id = accepted.body["id"]
        for _ in range(10):
            check = (await side.call("GET", f"v2/generate/check/{gen_id}")).body
            if check["processing"] == 2:
                break
            await asyncio.sleep(0.5)
        deleted = await side.call("DELETE", f"v2/generate/status/{gen_id}")
        samples = (await follow(side, [gen_id]))[gen_id]
        # "Done" may come with an image still on its way (see below): wait for it.
        for _ in range(int(JOB_SECONDS) + 4):
            check = (await side.call("GET", f"v2/generate/check/{gen_id}")).body
            samples.append(Sample.of(samples[-1].at + 1, check))
            if check["finished"] == 2:
                break
            await asyncio.sleep(1.0)
        status = await side.call("GET", f"v2/generate/status/{gen_id}")
        return deleted.body, samples, status.body

    real_run, sim_run = await both(sides, delete_while_running)
    (real_deleted, real, real_status), (sim_deleted, sim, sim_status) = real_run, sim_run
    for name, deleted, samples, status in (
        ("real", real_deleted, real, real_status),
        ("sim", sim_deleted, sim, sim_status),
    ):
        assert (deleted["processing"], deleted["done"], deleted["generations"]) == (2, False, []), name
        # The DELETE made "jobs" the images delivered so far (0): done once the images delivered
        # since make up for those still on the worker (the real worker delivers one after the
        # other, so it says done with one still coming; the simulator's batch lands at once).
        assert all(s.done == (s.finished - s.processing >= 0) for s in samples), (name, samples)
        assert not samples[0].done, (name, samples)
        assert (samples[-1].finished, len(status["generations"])) == (2, 2), (name, samples)
    assert sim[-1].kudos == real[-1].kudos == 13.0  # tax 3 + 2 × (4.26 + 1), in whole kudos


async def test_a_delete_before_any_worker_ends_it_at_once_for_the_tax_only(sides: tuple[Side, Side]) -> None:
    async def delete_queued(side: Side) -> tuple[int, list[Sample]]:
        # No worker: it stays queued.
        accepted = await side.submit("image", {"prompt": "never runs", "params": SMALL})
        gen_id = accepted.body["id"]
        deleted = await side.call("DELETE", f"v2/generate/status/{gen_id}")
        return deleted.status, (await follow(side, [gen_id], within=10))[gen_id]

    (real_status, real), (sim_status, sim) = await both(sides, delete_queued)
    assert real_status == sim_status == 200
    ended = [(trace[-1].done, trace[-1].finished, trace[-1].kudos) for trace in (real, sim)]
    assert ended[1] == ended[0]
    assert real[-1].kudos == 3.0


async def test_an_unserved_model_is_accepted_with_a_warning_and_never_runs(sides: tuple[Side, Side]) -> None:
    await both(sides, lambda side: side.start_worker(1.0))

    async def unserved(side: Side) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        accepted = await side.submit("image", {"prompt": "x", "models": ["No Such Model"], "params": SMALL})
        checks = []
        for _ in range(5):  # the worker pops every half second meanwhile
            await asyncio.sleep(1.0)
            checks.append((await side.call("GET", f"v2/generate/check/{accepted.body['id']}")).body)
        return accepted.body, checks

    (real_accepted, real_checks), (sim_accepted, sim_checks) = await both(sides, unserved)
    assert set(sim_accepted) == set(real_accepted) == {"id", "kudos", "message", "warnings"}
    assert sim_accepted["message"] == real_accepted["message"]
    assert sim_accepted["warnings"] == real_accepted["warnings"]
    assert [w["code"] for w in real_accepted["warnings"]] == ["NoAvailableWorker"]
    for name, checks in (("real", real_checks), ("sim", sim_checks)):
        for check in checks:
            assert (check["waiting"], check["processing"], check["done"], check["is_possible"]) == (
                1,
                0,
                False,
                False,
            ), (name, checks)
