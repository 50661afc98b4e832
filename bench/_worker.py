"""What both benchmark workers share: options, the job fan-out, and the measurements.

Standard library only: it runs under the bot's Python and under the horde_sdk venv's. A worker
module provides ``make_runner(options)``, an async context manager yielding one coroutine
function that submits a job, waits for its final status and returns
``(generation id, number of images)``; :func:`main` runs ``--n`` of them at once and prints
one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

RunOne = Callable[[], Awaitable[tuple[str, int]]]


@dataclass(frozen=True)
class Options:
    url: str
    apikey: str
    n: int
    width: int
    height: int


MakeRunner = Callable[[Options], AbstractAsyncContextManager[RunOne]]


def parse_options(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True, help="the simulator's API base URL (…/api/)")
    parser.add_argument("--apikey", required=True)
    parser.add_argument("--n", type=int, required=True, help="generations submitted at once")
    parser.add_argument("--size", type=int, default=64, help="image width and height")
    args = parser.parse_args(argv)
    return Options(url=args.url, apikey=args.apikey, n=args.n, width=args.size, height=args.size)


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


async def _one(run_one: RunOne) -> dict[str, Any]:
    try:
        gen_id, images = await run_one()
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"id": gen_id, "delivered": time.monotonic(), "images": images}


async def _run_all(
    options: Options, make_runner: MakeRunner
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    async with make_runner(options) as run_one:
        marks = {"rss_before_kb": float(rss_kb()), "cpu_before_s": cpu_s(), "started": time.monotonic()}
        jobs = await asyncio.gather(*(_one(run_one) for _ in range(options.n)))
        marks["finished"] = time.monotonic()
        marks["cpu_after_s"] = cpu_s()
    return jobs, marks


def main(make_runner: MakeRunner, client: str, client_version: str) -> None:
    options = parse_options()
    jobs, marks = asyncio.run(_run_all(options, make_runner))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "client": client,
        "client_version": client_version,
        "python": sys.version.split()[0],
        "n": options.n,
        "jobs": jobs,
        "wall_s": marks["finished"] - marks["started"],
        "cpu_workload_s": marks["cpu_after_s"] - marks["cpu_before_s"],
        "cpu_process_s": usage.ru_utime + usage.ru_stime,
        "rss_before_kb": int(marks["rss_before_kb"]),
        "maxrss_kb": usage.ru_maxrss,
    }
    json.dump(result, sys.stdout)
