"""The queue workload: our client and horde_sdk side by side, plain users, jobs that wait in a queue.

One case (``run_case``) at N lanes: both clients run at the same time against the same Horde,
each keeping N image jobs in flight (a lane submits its next job when the last one is in hand,
``jobs_per_lane`` times); every submission of every process on this IP takes a permit from one
pacer (``bench/pacer.py``: one every 0.75 s, 80 a minute at most, under the Horde's 2/s and 90/min
for plain users). While the clients hold fewer than ``in_flight_floor`` jobs together, a
background user (``bench/background.py``) keeps the difference in flight, so the queue is longer
than the workers are many at every N.

The same workload runs on the real AI Horde (fake workers: ``bench/fake_workers.py``, each with
its own job duration and slots) or on the simulator (``python -m horde_simulator``, whose
workers draw each job's duration from the workers' range: see ``sim_knobs``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bench import processes
from bench.real_horde import REPO, RealHorde, WorkerSpec, mint_plain_users, post_json, worker_events

# One pool of plain users for every submission, handed out in turn by the pacer (see bench/pacer.py).
USER_KUDOS = 1_000_000
POOL_USERS = 16  # 30 requests in flight per user: enough for 200 jobs in flight and the background
START_DELAY_S = 15.0  # both clients start together, once both have imported their libraries


@dataclass(frozen=True)
class QueueWorkload:
    workers: tuple[WorkerSpec, ...] = (
        WorkerSpec("bench-3s", 3, 1),
        WorkerSpec("bench-5s", 5, 2),
        WorkerSpec("bench-8s", 8, 1),
        WorkerSpec("bench-12s", 12, 2),
    )
    jitter: float = 0.1
    seed: str = "20261206"
    in_flight_floor: int = 18
    jobs_per_lane: dict[int, int] = field(default_factory=lambda: {1: 15, 10: 4, 100: 2})
    size: int = 64
    steps: int = 25
    settle_s: float = 20.0  # the background's queue forms before the clients start

    @property
    def slots(self) -> int:
        return sum(spec.slots for spec in self.workers)

    @property
    def capacity(self) -> float:
        """Jobs a second the workers finish when busy."""
        return sum(spec.slots / spec.seconds for spec in self.workers)

    def jobs_for(self, n: int) -> int:
        return self.jobs_per_lane.get(n, 1)

    def describe(self) -> str:
        workers = ", ".join(f"{spec.seconds:g} s × {spec.slots}" for spec in self.workers)
        return (
            f"{len(self.workers)} fake workers ({workers} slots; each job ±{self.jitter:.0%}), "
            f"{self.slots} slots, about {self.capacity:.2f} jobs/s; at least {self.in_flight_floor} jobs "
            f"in flight (background user); {self.size}×{self.size}, {self.steps} steps, one image"
        )


class Server(Protocol):
    """Where a case runs: the real Horde or the simulator."""

    name: str
    api: str

    def keys(self, prefix: str, count: int) -> list[str]: ...
    def lags(self, jobs: list[dict[str, Any]]) -> list[float]: ...
    def durations(self, jobs: list[dict[str, Any]]) -> dict[str, list[float]]: ...


@dataclass
class RealServer:
    horde: RealHorde
    events_log: Path
    name: str = "real"

    @property
    def api(self) -> str:
        return self.horde.api

    def keys(self, prefix: str, count: int) -> list[str]:
        return mint_plain_users(self.horde.api, prefix, count, kudos=USER_KUDOS)

    def lags(self, jobs: list[dict[str, Any]]) -> list[float]:
        """The worker's submit (once the Horde has the result) → the client holds the final status."""
        submits = worker_events(self.events_log).get("submit", {})
        lags = []
        for job in jobs:
            times = [submits[gen]["t"] for gen in job.get("generations", ()) if gen in submits]
            if times and len(times) == len(job["generations"]):
                lags.append(job["delivered_wall"] - max(times))
        return lags

    def durations(self, jobs: list[dict[str, Any]]) -> dict[str, list[float]]:
        """Per job: submitted → popped by a worker (queued) and popped → result in (processing)."""
        events = worker_events(self.events_log)
        pops, submits = events.get("pop", {}), events.get("submit", {})
        queued, processing = [], []
        for job in jobs:
            for gen in job.get("generations", ()):
                if gen in pops and gen in submits:
                    queued.append(pops[gen]["t"] - job["submitted"])
                    processing.append(submits[gen]["t"] - pops[gen]["t"])
        return {"queued": queued, "processing": processing}


def sim_knobs(workload: QueueWorkload) -> dict[str, str]:
    """The simulator's options for the same workers: one thread a slot, each at its worker's
    seconds (``--worker-speeds``), the same jitter, and the server's 1 s ``check`` cache."""
    speeds = [spec.seconds for spec in workload.workers for _ in range(spec.slots)]
    return {
        "--threads": str(len(speeds)),
        "--worker-speeds": ",".join(f"{speed:g}" for speed in speeds),
        "--speed-jitter": str(workload.jitter),
        "--check-cache": "1",
    }


@dataclass
class SimServer:
    root: str
    name: str = "simulator"
    _made: int = 0

    @property
    def api(self) -> str:
        return self.root + "api/"

    def keys(self, prefix: str, count: int) -> list[str]:
        keys = []
        for _ in range(count):
            self._made += 1
            name = f"{prefix}-{self._made}"
            key = hashlib.sha256(name.encode()).hexdigest()[:22]  # horde_sdk checks a key's shape
            post_json(
                self.root + "_sim/users",
                {"alias": name, "api_key": key, "kudos": USER_KUDOS, "concurrency": 30},
            )
            keys.append(key)
        return keys

    def lags(self, jobs: list[dict[str, Any]]) -> list[float]:
        with urllib.request.urlopen(self.root + "_sim/requests", timeout=60) as response:
            records = json.load(response)["requests"]
        return [
            job["delivered"] - records[job["id"]]["finished_at"]
            for job in jobs
            if "id" in job and records.get(job["id"], {}).get("finished_at") is not None
        ]

    def durations(self, jobs: list[dict[str, Any]]) -> dict[str, list[float]]:
        return {"queued": [], "processing": []}


def worker_command(client: str, python_sdk: Path) -> tuple[list[str], dict[str, str]]:
    if client == "ours":
        return [sys.executable, "-m", "bench.worker_ours"], dict(os.environ)
    return [str(python_sdk), "-m", "bench.worker_sdk"], {**os.environ, "LOGFIRE_IGNORE_NO_CONFIG": "1"}


@contextlib.contextmanager
def background(
    server: Server, workload: QueueWorkload, depth: int, permit: tuple[str, int], log: Path
) -> Iterator[None]:
    if depth <= 0:
        yield
        return
    command = [
        sys.executable,
        "-m",
        "bench.background",
        "--url",
        server.api,
        "--depth",
        str(depth),
        "--permit",
        f"{permit[0]}:{permit[1]}",
        "--size",
        str(workload.size),
        "--steps",
        str(workload.steps),
    ]
    with log.open("a") as out:
        process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        time.sleep(workload.settle_s)
        yield
    finally:
        processes.stop(process, 60)


def run_case(
    server: Server,
    workload: QueueWorkload,
    n: int,
    clients: tuple[str, ...],
    python_sdk: Path,
    permit: tuple[str, int],
    logs: Path,
) -> list[dict[str, Any]]:
    """Both clients at once, N lanes each; one result per client."""
    jobs_per_lane = workload.jobs_for(n)
    launched: dict[str, tuple[subprocess.Popen[str], Any]] = {}
    depth = max(0, workload.in_flight_floor - n * len(clients))
    with background(server, workload, depth, permit, logs / f"background-{n}.log"):
        start_at = time.time() + START_DELAY_S
        for client in clients:
            command, env = worker_command(client, python_sdk)
            if client == "horde_sdk":
                env["AI_HORDE_URL"] = server.api
            command += [
                "--url", server.api, "--lanes", str(n),
                "--jobs-per-lane", str(jobs_per_lane), "--permit", f"{permit[0]}:{permit[1]}",
                "--size", str(workload.size), "--steps", str(workload.steps),
                "--start-at", str(start_at), "--timeline",
            ]  # fmt: skip
            stderr = (logs / f"worker-{server.name}-{client}-{n}.log").open("w")
            process = subprocess.Popen(
                command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True
            )
            launched[client] = (process, stderr)
        outputs = {}
        for client, (process, stderr) in launched.items():
            stdout, _ = process.communicate(timeout=7200)
            stderr.close()
            if process.returncode != 0:
                raise RuntimeError(f"{client} worker exited with {process.returncode}; see {stderr.name}")
            outputs[client] = json.loads(stdout)
    (logs / f"timelines-{server.name}-{n}.json").write_text(
        json.dumps(
            {
                client: {"jobs": outputs[client]["jobs"], "calls": outputs[client]["timeline"]}
                for client in clients
            }
        )
    )
    return [summarise(server, workload, outputs[client], depth) for client in clients]


def summarise(
    server: Server, workload: QueueWorkload, worker: dict[str, Any], background_depth: int
) -> dict[str, Any]:
    from bench.report import quantiles

    jobs = worker["jobs"]
    delivered = [job for job in jobs if "id" in job]
    errors = [job["error"] for job in jobs if "error" in job]
    calls = worker["calls"]
    count = len(jobs) or 1
    durations = server.durations(delivered)
    turnaround = [job["delivered_wall"] - job["submitted"] for job in delivered]
    return {
        "server": server.name,
        "client": worker["client"],
        "client_version": worker["client_version"],
        "python": worker["python"],
        "n": worker["n"],
        "jobs": len(jobs),
        "delivered": len(delivered),
        "errors": errors[:5],
        "error_count": len(errors),
        "background_depth": background_depth,
        "calls_per_job": {
            "async": calls.get("async", 0) / count,
            "check": calls.get("check", 0) / count,
            "status": calls.get("status", 0) / count,
            "delete": calls.get("delete", 0) / count,
            "other": calls.get("other", 0) / count,
            "total": sum(calls.values()) / count,
        },
        "responses_429": int(worker["statuses"].get("429", 0)),
        "lag_s": quantiles(server.lags(delivered)),
        "turnaround_s": quantiles(turnaround),
        "queued_s": quantiles(durations["queued"]),
        "processing_s": quantiles(durations["processing"]),
        "wall_s": worker["wall_s"],
        "cpu_per_1000_jobs_s": worker["cpu_workload_s"] * 1000 / count,
    }
