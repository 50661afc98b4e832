"""The simulator for benchmarks, and the burst workload (N jobs at once, submission limits lifted).

Each case starts a fresh simulator process (``python -m horde_simulator``), so its CPU is not
the client's; N generations are submitted at once by a client worker process, each waited for
until its final status is in hand; then the simulator's counters and per-request ``finished_at``
times give the calls per job and the delivery lag.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import processes
from bench.report import quantiles

REPO = Path(__file__).resolve().parents[1]

# A registered 22-character key (horde_sdk validates the format) with enough kudos and
# concurrency for a thousand generations at once.
APIKEY = "bench-key-00000000001A"
BENCH_USER = {"alias": "bench", "api_key": APIKEY, "kudos": 1e9, "concurrency": 1_000_000, "trusted": True}
# Submissions are not what is measured: lifting them lets N jobs be in flight together (at the
# Horde's 2/s and 90/min per IP, a thousand submissions take 11 minutes). Check (10/s per id)
# and status (10/min per id) keep the Horde's limits, and so does everything else.
SUBMIT_LIMITS_OFF = {
    "generate_async_ip": None,
    "generate_async_ip_burst": None,
    "generate_async_key": None,
    "generate_async_key_anon": None,
    "generate_async_ip_whitelisted": None,
    "generate_async_ip_burst_whitelisted": None,
}
SEED = 20_251_127


@dataclass(frozen=True)
class BurstWorkload:
    speed: tuple[float, float]
    worker_timeout_s: float


FULL = BurstWorkload(speed=(2.0, 30.0), worker_timeout_s=900.0)
QUICK = BurstWorkload(speed=(0.2, 3.0), worker_timeout_s=300.0)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def http(url: str, body: object | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


@dataclass(frozen=True)
class Sim:
    root: str
    pid: int

    @property
    def api(self) -> str:
        return self.root + "api/"

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def simulator(*, options: dict[str, str], log: Path, lift_submit_limits: bool) -> Iterator[Sim]:
    """A fresh simulator process with these command-line ``options`` (``--speed``, ``--threads``…)."""
    port = _free_port()
    command = [
        sys.executable, "-m", "horde_simulator", "--port", str(port), "--seed", str(SEED),
        "--log-level", "WARNING", *(part for pair in options.items() for part in pair),
    ]  # fmt: skip
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    sim = Sim(f"http://127.0.0.1:{port}/", process.pid)
    try:
        _wait_until_up(sim, process)
        if lift_submit_limits:
            http(sim.root + "_sim/config", {"rate_limits": SUBMIT_LIMITS_OFF})
        http(sim.root + "_sim/users", BENCH_USER)
        http(sim.root + "_sim/reset", {"counters": True})  # forget the start-up heartbeats
        yield sim
    finally:
        processes.stop(process, 30)


def _wait_until_up(sim: Sim, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the simulator exited with {process.returncode}")
        with contextlib.suppress(OSError):
            http(sim.api + "v2/status/heartbeat")
            return
        time.sleep(0.1)
    raise RuntimeError("the simulator did not start")


def _workers(low: float, high: float, threads: int) -> dict[str, str]:
    """``threads`` workers whose speeds are drawn from ``[low, high]`` (seeded), each job its
    worker's speed ± 10 %: the real server counts a job down from its worker's own speed, so
    jobs of any length on workers of one average speed would make every countdown wrong."""
    rng = random.Random(SEED)
    speeds = ",".join(f"{rng.uniform(low, high):.2f}" for _ in range(threads))
    return {"--threads": str(threads), "--worker-speeds": speeds, "--speed-jitter": "0.1"}


def run_case(client: str, n: int, workload: BurstWorkload, python_sdk: Path, logs: Path) -> dict[str, Any]:
    low, high = workload.speed
    with simulator(
        options=_workers(low, high, max(n, 1)),
        log=logs / f"sim-{client}-{n}.log",
        lift_submit_limits=True,
    ) as sim:
        if client == "ours":
            command = [sys.executable, "-m", "bench.worker_ours"]
            env = dict(os.environ)
        else:
            command = [str(python_sdk), "-m", "bench.worker_sdk"]
            env = {**os.environ, "AI_HORDE_URL": sim.api, "LOGFIRE_IGNORE_NO_CONFIG": "1"}
        command += ["--url", sim.api, "--keys", APIKEY, "--lanes", str(n), "--lifted-submit-limits"]
        sim_cpu_before = sim.cpu_s()
        with (logs / f"worker-{client}-{n}.log").open("w") as stderr:
            finished = subprocess.run(
                command,
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                timeout=workload.worker_timeout_s,
                check=True,
            )
        worker = json.loads(finished.stdout)
        sim_cpu = sim.cpu_s() - sim_cpu_before
        counters = http(sim.root + "_sim/counters")
        before = time.monotonic()
        requests = http(sim.root + "_sim/requests")
        clock_skew = requests["now"] - (before + time.monotonic()) / 2
    return summarise(worker, counters, requests["requests"], sim_cpu=sim_cpu, clock_skew=clock_skew)


def summarise(
    worker: dict[str, Any],
    counters: dict[str, Any],
    requests: dict[str, dict[str, Any]],
    *,
    sim_cpu: float,
    clock_skew: float,
) -> dict[str, Any]:
    n = worker["n"]
    delivered = [job for job in worker["jobs"] if "id" in job]
    errors = [job["error"] for job in worker["jobs"] if "error" in job]
    lags, durations = [], []
    for job in delivered:
        record = requests[job["id"]]
        if record["finished_at"] is not None:
            lags.append(job["delivered"] - record["finished_at"])
            durations.append(record["finished_at"] - record["created"])
    calls = counters["calls"]
    statuses = counters["statuses"]
    total_calls = sum(calls.get(name, 0) for name in calls if name != "r2_image")
    too_many = sum(int(by_code.get("429", 0)) for by_code in statuses.values())
    return {
        "client": worker["client"],
        "client_version": worker["client_version"],
        "python": worker["python"],
        "n": n,
        "delivered": len(delivered),
        "complete": sum(job["images"] >= 1 for job in delivered),
        "errors": errors[:5],
        "error_count": len(errors),
        "calls_per_job": {
            "async": calls.get("generate_async", 0) / n,
            "check": calls.get("generate_check", 0) / n,
            "status": calls.get("generate_status", 0) / n,
            "delete": calls.get("generate_delete", 0) / n,
            "total": total_calls / n,
        },
        # What the client itself counted (an aiohttp trace), to check against the simulator's.
        "client_calls_per_job": sum(worker["calls"].values()) / n,
        "responses_429": too_many,
        "rate_limited": sum(counters["rate_limited"].values()),
        "lag_s": quantiles(lags),
        "job_duration_mean_s": statistics.fmean(durations) if durations else None,
        "wall_s": worker["wall_s"],
        "cpu_workload_s": worker["cpu_workload_s"],
        "cpu_process_s": worker["cpu_process_s"],
        "cpu_per_1000_jobs_s": worker["cpu_workload_s"] * 1000 / n,
        "rss_before_mb": worker["rss_before_kb"] / 1024,
        "peak_rss_mb": worker["maxrss_kb"] / 1024,
        "memory_per_job_kb": (worker["maxrss_kb"] - worker["rss_before_kb"]) / n,
        "sim_cpu_s": sim_cpu,
        "clock_skew_ms": clock_skew * 1000,
    }
