"""What both benchmark workers share: options, the job lanes, the call counts and the measurements.

Standard library and aiohttp only: it runs under the bot's Python and under the horde_sdk venv's.
A worker module provides ``make_runner(options, trace)``, an async context manager yielding
one coroutine function ``run_one(apikey) -> Finished`` that submits a job with that key,
waits for its final status and returns what it holds; every HTTP request of the client must
go through an aiohttp session made with ``trace`` (it counts them). :func:`main` runs
``--lanes`` lanes at once, each running ``--jobs-per-lane`` jobs one after the other, and prints
one JSON object on stdout.

With ``--permit HOST:PORT`` every submission first takes a permit from the runner's pacer
(``bench/pacer.py``), which keeps all processes on this IP within the Horde's submission limits
and names the key to submit with; without it the jobs use ``--keys`` in turn.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import aiohttp

from bench.pacer import acquire_permit


@dataclass(frozen=True)
class Finished:
    gen_id: str
    images: int
    generation_ids: tuple[str, ...]


RunOne = Callable[[str], Awaitable[Finished]]


@dataclass(frozen=True)
class Options:
    url: str
    keys: tuple[str, ...]
    lanes: int
    jobs_per_lane: int
    width: int
    height: int
    steps: int
    permit: tuple[str, int] | None
    lifted_submit_limits: bool = False
    start_at: float | None = None
    timeline: bool = False

    def key_for(self, lane: int) -> str:
        return self.keys[lane % len(self.keys)]


MakeRunner = Callable[[Options, aiohttp.TraceConfig], AbstractAsyncContextManager[RunOne]]


def parse_options(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True, help="the Horde's API base URL (…/api/)")
    parser.add_argument("--apikey", "--keys", dest="keys", default="", help="comma-separated API keys")
    parser.add_argument(
        "--n", "--lanes", dest="lanes", type=int, required=True, help="jobs in flight at once"
    )
    parser.add_argument("--jobs-per-lane", type=int, default=1)
    parser.add_argument("--size", type=int, default=64, help="image width and height")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--permit", help="HOST:PORT of the submission pacer")
    parser.add_argument(
        "--lifted-submit-limits", action="store_true", help="the server does not limit submissions"
    )
    parser.add_argument("--start-at", type=float, help="wall time to start at (both clients together)")
    parser.add_argument("--timeline", action="store_true", help="also report every call's time and kind")
    args = parser.parse_args(argv)
    permit = None
    if args.permit:
        host, port = args.permit.rsplit(":", 1)
        permit = (host, int(port))
    return Options(
        url=args.url,
        keys=tuple(key for key in args.keys.split(",") if key),
        lanes=args.lanes,
        jobs_per_lane=args.jobs_per_lane,
        width=args.size,
        height=args.size,
        steps=args.steps,
        permit=permit,
        lifted_submit_limits=args.lifted_submit_limits,
        start_at=args.start_at,
        timeline=args.timeline,
    )


def rss_kb() -> int:
    """The resident set size right now (Linux)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def call_kind(method: str, path: str) -> str:
    if "/generate/check/" in path:
        return "check"
    if "/generate/status/" in path:
        return "delete" if method == "DELETE" else "status"
    if path.endswith("/generate/async"):
        return "async"
    return "other"


class CallCounter:
    """Every HTTP request the client made, by kind, and every answer by status (an aiohttp trace);
    with ``timeline``, also each call's wall time, kind, request id and status."""

    def __init__(self, *, timeline: bool = False) -> None:
        self.calls: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.timeline: list[tuple[float, str, str, int]] | None = [] if timeline else None
        self.trace = aiohttp.TraceConfig()
        self.trace.on_request_end.append(self._on_end)
        self.trace.on_request_exception.append(self._on_exception)

    async def _on_end(
        self, session: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestEndParams
    ) -> None:
        kind = call_kind(params.method, params.url.path)
        self.calls[kind] += 1
        self.statuses[str(params.response.status)] += 1
        if self.timeline is not None:
            self.timeline.append(
                (time.time(), kind, params.url.path.rsplit("/", 1)[-1], params.response.status)
            )

    async def _on_exception(
        self,
        session: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceRequestExceptionParams,
    ) -> None:
        self.calls[call_kind(params.method, params.url.path)] += 1
        self.statuses["error"] += 1


async def _one(options: Options, run_one: RunOne, lane: int, client: str) -> dict[str, Any]:
    key = options.key_for(lane) if options.permit is None else await acquire_permit(*options.permit, client)
    submitted = time.time()
    try:
        finished = await run_one(key)
    except Exception as exc:
        return {"lane": lane, "submitted": submitted, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {
        "lane": lane,
        "id": finished.gen_id,
        "submitted": submitted,
        # Both clocks: the simulator stamps requests with CLOCK_MONOTONIC, the fake workers with
        # wall time (both are shared by every process on this machine).
        "delivered": time.monotonic(),
        "delivered_wall": time.time(),
        "images": finished.images,
        "generations": list(finished.generation_ids),
    }


async def _lane(options: Options, run_one: RunOne, lane: int, client: str) -> list[dict[str, Any]]:
    return [await _one(options, run_one, lane, client) for _ in range(options.jobs_per_lane)]


async def _run_all(
    options: Options, make_runner: MakeRunner, counter: CallCounter, client: str
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    async with make_runner(options, counter.trace) as run_one:
        if options.start_at is not None:  # the other client may still be importing
            await asyncio.sleep(max(0.0, options.start_at - time.time()))
        marks = {"rss_before_kb": float(rss_kb()), "cpu_before_s": cpu_s(), "started": time.monotonic()}
        lanes = await asyncio.gather(
            *(_lane(options, run_one, lane, client) for lane in range(options.lanes))
        )
        marks["finished"] = time.monotonic()
        marks["cpu_after_s"] = cpu_s()
    return [job for lane in lanes for job in lane], marks


def main(make_runner: MakeRunner, client: str, client_version: str) -> None:
    options = parse_options()
    counter = CallCounter(timeline=options.timeline)
    jobs, marks = asyncio.run(_run_all(options, make_runner, counter, client))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "client": client,
        "client_version": client_version,
        "python": sys.version.split()[0],
        "n": options.lanes,
        "jobs": jobs,
        "calls": dict(counter.calls),
        "statuses": dict(counter.statuses),
        "timeline": counter.timeline,
        "wall_s": marks["finished"] - marks["started"],
        "cpu_workload_s": marks["cpu_after_s"] - marks["cpu_before_s"],
        "cpu_process_s": usage.ru_utime + usage.ru_stime,
        "rss_before_kb": int(marks["rss_before_kb"]),
        "maxrss_kb": usage.ru_maxrss,
    }
    json.dump(result, sys.stdout)
