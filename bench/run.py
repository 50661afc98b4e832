"""Polling benchmark: the bot's client against horde_sdk's, on the same simulated Horde.

    python bench/run.py            # the full run (several minutes); writes BENCHMARKS.md
    python bench/run.py --quick    # job durations / 10, a smoke run; prints, writes nothing

For every N (1, 100, 1000) and every client, a fresh simulator is started in its own process
(``python -m bot.horde.simulator``), so its CPU is not the client's; N generations are
submitted at once by a client worker process, each waited for until its final status is in
hand; then the simulator's counters and per-request ``finished_at`` times give the calls per
job and the delivery lag. horde_sdk runs from ``bench/.venv-sdk`` (Python 3.12, created here).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SDK_VENV = REPO / "bench" / ".venv-sdk"
SDK_PYTHON = "3.12.1"
RESULTS = REPO / "BENCHMARKS.md"
LAST_RUN = REPO / "bench" / ".last-run.json"

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
}
SIZES = (1, 100, 1000)
SEED = 20_251_127
CLIENTS = ("ours", "horde_sdk")


@dataclass(frozen=True)
class Workload:
    speed: tuple[float, float]
    worker_timeout_s: float


FULL = Workload(speed=(2.0, 30.0), worker_timeout_s=900.0)
QUICK = Workload(speed=(0.2, 3.0), worker_timeout_s=300.0)


# -- the horde_sdk venv ------------------------------------------------------------------------


def sdk_python() -> Path:
    """``bench/.venv-sdk/bin/python`` with horde_sdk installed, made on first use."""
    python = SDK_VENV / "bin" / "python"
    if python.exists() and _run([str(python), "-c", "import horde_sdk"], check=False).returncode == 0:
        return python
    pyenv_root = _run(["pyenv", "root"]).stdout.strip() if shutil.which("pyenv") else "~/.pyenv"
    base = Path(pyenv_root).expanduser() / "versions" / SDK_PYTHON / "bin" / "python"
    print(f"creating {SDK_VENV} with {base}", file=sys.stderr)
    _run([str(base), "-m", "venv", str(SDK_VENV)])
    _run([str(python), "-m", "pip", "install", "--quiet", "horde_sdk"])
    return python


def _run(command: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=check, cwd=REPO)


# -- the simulator -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _http(url: str, body: object | None = None) -> Any:
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
def simulator(workload: Workload, threads: int, log: Path) -> Iterator[Sim]:
    port = _free_port()
    low, high = workload.speed
    command = [
        sys.executable,
        "-m",
        "bot.horde.simulator",
        "--port",
        str(port),
        "--speed",
        f"{low}-{high}",
        "--threads",
        str(threads),
        "--seed",
        str(SEED),
        "--log-level",
        "WARNING",
    ]
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    sim = Sim(f"http://127.0.0.1:{port}/", process.pid)
    try:
        _wait_until_up(sim, process)
        _http(sim.root + "_sim/config", {"rate_limits": SUBMIT_LIMITS_OFF})
        _http(sim.root + "_sim/users", BENCH_USER)
        _http(sim.root + "_sim/reset", {"counters": True})  # forget the start-up heartbeats
        yield sim
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_up(sim: Sim, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the simulator exited with {process.returncode}")
        with contextlib.suppress(OSError):
            _http(sim.api + "v2/status/heartbeat")
            return
        time.sleep(0.1)
    raise RuntimeError("the simulator did not start")


# -- one case ----------------------------------------------------------------------------------


def run_case(client: str, n: int, workload: Workload, python_sdk: Path, logs: Path) -> dict[str, Any]:
    with simulator(workload, threads=max(n, 1), log=logs / f"sim-{client}-{n}.log") as sim:
        if client == "ours":
            command = [sys.executable, "-m", "bench.worker_ours"]
            env = dict(os.environ)
        else:
            command = [str(python_sdk), "-m", "bench.worker_sdk"]
            env = {**os.environ, "AI_HORDE_URL": sim.api, "LOGFIRE_IGNORE_NO_CONFIG": "1"}
        command += ["--url", sim.api, "--apikey", APIKEY, "--n", str(n)]
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
        counters = _http(sim.root + "_sim/counters")
        before = time.monotonic()
        requests = _http(sim.root + "_sim/requests")
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
        "responses_429": too_many,
        "rate_limited": sum(counters["rate_limited"].values()),
        "lag_s": _quantiles(lags),
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


def _quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {"p50": statistics.median(ordered), "p95": at(0.95), "max": ordered[-1]}


# -- the report --------------------------------------------------------------------------------


def machine(sdk: Path) -> dict[str, str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    sdk_version = _run([str(sdk), "-c", "import sys; print(sys.version.split()[0])"]).stdout.strip()
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "ram": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "os": platform.platform(),
        "python_ours": platform.python_version(),
        "python_sdk": sdk_version,
    }


def _ratio(ours: float | None, sdk: float | None) -> str:
    if ours is None or sdk is None or sdk == 0:
        return "n/a"
    return f"{ours / sdk:.2f}"


ROWS: list[tuple[str, str, str]] = [
    # (label, key path, format)
    ("generations delivered", "delivered", "{:.0f}"),
    ("Horde calls per job: total", "calls_per_job.total", "{:.2f}"),
    ("… generate/check", "calls_per_job.check", "{:.2f}"),
    ("… generate/status", "calls_per_job.status", "{:.2f}"),
    ("… generate/async", "calls_per_job.async", "{:.2f}"),
    ("delivery lag p50 (s)", "lag_s.p50", "{:.3f}"),
    ("delivery lag p95 (s)", "lag_s.p95", "{:.3f}"),
    ("delivery lag max (s)", "lag_s.max", "{:.3f}"),
    ("CPU s per 1,000 jobs (workload)", "cpu_per_1000_jobs_s", "{:.2f}"),
    ("CPU s, whole client process", "cpu_process_s", "{:.2f}"),
    ("peak RSS (MiB)", "peak_rss_mb", "{:.1f}"),
    ("RSS before submitting (MiB)", "rss_before_mb", "{:.1f}"),
    ("memory per job in flight (KiB)", "memory_per_job_kb", "{:.1f}"),
    ("429s received", "responses_429", "{:.0f}"),
    ("wall time (s)", "wall_s", "{:.1f}"),
    ("mean job duration on the simulator (s)", "job_duration_mean_s", "{:.1f}"),
    ("simulator CPU s", "sim_cpu_s", "{:.1f}"),
    ("clock offset simulator − runner (ms)", "clock_skew_ms", "{:.1f}"),
]


def _get(result: dict[str, Any], path: str) -> Any:
    value: Any = result
    for part in path.split("."):
        value = value[part]
    return value


def _cell(value: Any, fmt: str) -> str:
    return "n/a" if value is None else fmt.format(value)


def table(results: list[dict[str, Any]], n: int) -> list[str]:
    ours = next(r for r in results if r["client"] == "ours" and r["n"] == n)
    sdk = next(r for r in results if r["client"] == "horde_sdk" and r["n"] == n)
    lines = ["| measure | ours | horde_sdk | ours / sdk |", "|---|---:|---:|---:|"]
    for label, path, fmt in ROWS:
        a, b = _get(ours, path), _get(sdk, path)
        lines.append(f"| {label} | {_cell(a, fmt)} | {_cell(b, fmt)} | {_ratio(a, b)} |")
    return lines


def targets(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| N | fewer calls per job | lower p50 lag | less CPU per job | less memory per job in flight "
        "| 0 × 429 (ours / sdk) |",
        "|---:|:-:|:-:|:-:|:-:|:-:|",
    ]
    for n in sorted({r["n"] for r in results}):
        ours = next(r for r in results if r["client"] == "ours" and r["n"] == n)
        sdk = next(r for r in results if r["client"] == "horde_sdk" and r["n"] == n)
        checks = [
            ours["calls_per_job"]["total"] < sdk["calls_per_job"]["total"],
            (ours["lag_s"]["p50"] or 0) < (sdk["lag_s"]["p50"] or 0),
            ours["cpu_per_1000_jobs_s"] < sdk["cpu_per_1000_jobs_s"],
            ours["memory_per_job_kb"] < sdk["memory_per_job_kb"] and ours["peak_rss_mb"] < sdk["peak_rss_mb"],
        ]
        marks = " | ".join("met" if ok else "**not met**" for ok in checks)
        zero = f"{ours['responses_429']} / {sdk['responses_429']}"
        lines.append(f"| {n} | {marks} | {zero} |")
    return lines


def report(results: list[dict[str, Any]], info: dict[str, str], command: str, when: str) -> str:
    sdk_version = next(r["client_version"] for r in results if r["client"] == "horde_sdk")
    parts = [
        "# Benchmarks: polling at scale",
        "",
        f"Command: `{command}` — run on {when}.",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram']} RAM, {info['os']}. "
        f"Our client on Python {info['python_ours']}; "
        f"horde_sdk {sdk_version} on Python {info['python_sdk']}.",
        "",
        "## Targets",
        "",
        *targets(results),
        "",
    ]
    for n in sorted({r["n"] for r in results}):
        parts += [f"## N = {n} generations in flight", "", *table(results, n), ""]
    parts.append(METHOD)
    return "\n".join(parts)


METHOD = """## Reading the numbers

- Our checks per job: one right after submitting, one when the worker's `wait_time` says the
  job ends; a job longer than 15 s (`PollPolicy.max_interval`, which keeps progress messages
  fresh) gets one check in between. horde_sdk checks every 4 s, so its count grows with the job.
- Our lag is mostly the rounding of `wait_time`: the simulator rounds the time left up to a
  whole second, so the aimed check lands 0–1 s after the end. The simulator's estimate is exact;
  the real Horde's (the worker's average speed, rounded to the second) is not, so there expect
  more overdue checks (1 s, backing off to 4 s) and a little more lag. horde_sdk's 4 s sleep does
  not depend on the estimate: its lag is 0–4 s plus whatever its event loop adds.
- Our tail at N = 1,000: a job the simulator has not yet handed to a worker at its first check
  is still queued, and its next check follows the queue estimate (half of it, at most 15 s), so
  a few short jobs are found late. Fetches are also capped at 200/s (bursts of 100) and 32 in
  flight, which spreads the thousand first checks over a few seconds.
- horde_sdk's CPU and lag grow with N: its session (`GenericAsyncHordeAPISession.submit_request`)
  appends every request to a list and, under two class-level `asyncio.Lock`s, removes it and
  scans every pending follow-up on each response, so each call costs O(jobs in flight). At
  N = 1,000 its checks then come later than every 4 s, which lowers its calls per job and raises
  its lag; these figures vary noticeably from run to run (each case is run once).
- Memory per job at N = 1 is below the resolution of RSS (noise, even negative); read it at
  N = 100 and 1,000. Most of horde_sdk's larger footprint is what it imports (pydantic models,
  horde_model_reference, logfire, loguru) before the first request.
- CPU per 1,000 jobs at N = 1 extrapolates one job, first-request warm-up included.
- The simulator is busy too (a thousand simulated workers, each woken every 10 ms) and shares
  the machine's cores with the client; both clients ran under the same conditions, one after
  the other.

## Method

- Workload: N image generations (64×64, one image each) submitted at once, each awaited
  until the client holds its final status (`image_generate_request` returns). Job durations
  are drawn uniformly from 2–30 s by the simulator's seeded RNG (`--speed 2-30 --seed 20251127`);
  it runs N worker threads, so every job runs as soon as it is submitted.
- Each run starts a fresh simulator process (`python -m bot.horde.simulator`), configured over
  `POST /_sim/config` and `POST /_sim/users`; the client runs in a worker process of its own
  (`bench/worker_ours.py`, `bench/worker_sdk.py`), so neither's CPU counts against the other.
- Horde calls per job come from the simulator's counters (`GET /_sim/counters`), divided by N;
  image downloads are not made (nor counted).
- Delivery lag: the time from a request becoming `done` on the simulator (`finished_at` from
  `GET /_sim/requests`) to the worker holding the final status. Both sides read
  `CLOCK_MONOTONIC` (`time.monotonic`), which Linux shares between processes. The runner
  checks it: the simulator's `now` against the midpoint of the request that fetched it (the
  "clock offset" row; any offset is the request's own asymmetry, a few ms at most).
- CPU: `resource.getrusage(RUSAGE_SELF)` of the client process, user + system, from just
  before the first submission to the last result ("workload"), scaled to 1,000 jobs; the whole
  process (imports included) is shown as well. Memory: `ru_maxrss` of the client process, and
  (peak − RSS just before submitting) / N as the cost of one job in flight.
- 429s: every 429 the simulator sent, of any kind.
- Fairness and configuration:
  - Rate limits are on, as the Horde's: check 10/s per id, status 10/min per id, DELETE,
    users, everything. Only the submission limits (async 2/s and 90/min per IP, 2/s per key)
    are lifted (`rate_limits` patched to `null`), for both clients alike: otherwise a thousand
    submissions would take 11 minutes and never be in flight together. Our client's own limiter
    is told the same (`bench/worker_ours.py`); horde_sdk has none.
  - Both use the same registered 22-character key (horde_sdk validates the key's format), made
    on the simulator with enough kudos and concurrency (`POST /_sim/users`).
  - horde_sdk sends its agent in a `client_agent` header (underscore), which the simulator
    ignores like an unknown agent; nothing is refused for it. It is pointed at the simulator
    with `AI_HORDE_URL`; its loguru output is cut to WARNING and logfire's "not configured"
    warning is silenced (`LOGFIRE_IGNORE_NO_CONFIG=1`), as our client logs nothing below
    WARNING either.
  - horde_sdk polls `generate/check` right after submitting, then every 4 s (a fixed sleep),
    then fetches `generate/status` once. Ours polls through one `PollScheduler` per session:
    right after submitting, then at the worker's own `wait_time` estimate (at most 15 s ahead),
    then, if the job is overdue, after 1 s, backing off to 4 s; then `generate/status` once.
    Both are used with their defaults.
  - The same N, durations range and seed for both; the durations are drawn in the order the
    simulator's workers pick jobs up, so individual jobs differ between the two runs while the
    distribution does not (mean job duration is in the tables).
"""


# -- main --------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="durations / 10; print only")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated N values")
    parser.add_argument("--clients", default=",".join(CLIENTS), help="ours,horde_sdk")
    parser.add_argument("--write", action="store_true", help="write BENCHMARKS.md (default for a full run)")
    args = parser.parse_args(argv)
    workload = QUICK if args.quick else FULL
    sizes = [int(size) for size in args.sizes.split(",")]
    clients = args.clients.split(",")
    python_sdk = sdk_python()
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="horde-bench-") as tmp:
        logs = Path(tmp)
        for n in sizes:
            for client in clients:
                print(f"N={n} {client} …", file=sys.stderr, flush=True)
                try:
                    result = run_case(client, n, workload, python_sdk, logs)
                except (subprocess.SubprocessError, OSError, RuntimeError):
                    for log in sorted(logs.iterdir()):
                        print(f"--- {log.name}\n{log.read_text()[-3000:]}", file=sys.stderr)
                    raise
                results.append(result)
                print(json.dumps(result, indent=1), file=sys.stderr, flush=True)
    LAST_RUN.write_text(json.dumps(results, indent=1))
    command = "python bench/run.py" + (" --quick" if args.quick else "")
    text = report(results, machine(python_sdk), command, when) if set(clients) == set(CLIENTS) else ""
    if text and (args.write or not args.quick):
        RESULTS.write_text(text)
        print(f"wrote {RESULTS}", file=sys.stderr)
    print(text or json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
