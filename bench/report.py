"""The benchmark's report: tables, targets and the sections of BENCHMARKS.md it owns.

Each mode of ``bench/run.py`` rewrites only its own block of BENCHMARKS.md, between
``<!-- bench/run.py MODE -->`` and ``<!-- /bench/run.py MODE -->``; everything else in the file
(other benchmarks, hand-written sections) is left as it is.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
from pathlib import Path
from typing import Any


def quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {"p50": statistics.median(ordered), "p95": at(0.95), "max": ordered[-1]}


def machine(python_sdk_version: str) -> dict[str, str]:
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
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "ram": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "os": platform.platform(),
        "python_ours": platform.python_version(),
        "python_sdk": python_sdk_version,
    }


def load_average() -> str:
    """``uptime``'s load averages (1, 5, 15 min): how busy the machine was."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _ratio(ours: float | None, sdk: float | None) -> str:
    if ours is None or sdk is None or sdk == 0:
        return "n/a"
    return f"{ours / sdk:.2f}"


def _get(result: dict[str, Any], path: str) -> Any:
    value: Any = result
    for part in path.split("."):
        value = value[part]
    return value


def _cell(value: Any, fmt: str) -> str:
    return "n/a" if value is None else fmt.format(value)


def _pair(results: list[dict[str, Any]], n: int) -> tuple[dict[str, Any], dict[str, Any]]:
    ours = next(r for r in results if r["client"] == "ours" and r["n"] == n)
    sdk = next(r for r in results if r["client"] == "horde_sdk" and r["n"] == n)
    return ours, sdk


def table(results: list[dict[str, Any]], n: int, rows: list[tuple[str, str, str]]) -> list[str]:
    ours, sdk = _pair(results, n)
    lines = ["| measure | ours | horde_sdk | ours / sdk |", "|---|---:|---:|---:|"]
    for label, path, fmt in rows:
        a, b = _get(ours, path), _get(sdk, path)
        lines.append(f"| {label} | {_cell(a, fmt)} | {_cell(b, fmt)} | {_ratio(a, b)} |")
    return lines


def _mark(ok: bool) -> str:
    return "met" if ok else "**not met**"


def replace_block(path: Path, mode: str, text: str) -> None:
    """Put ``text`` between the mode's markers in ``path`` (appended if they are not there yet)."""
    begin, end = f"<!-- bench/run.py {mode} -->", f"<!-- /bench/run.py {mode} -->"
    block = f"{begin}\n{text.rstrip()}\n{end}"
    current = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(current):
        updated = pattern.sub(lambda _: block, current, count=1)
    else:
        updated = current.rstrip() + "\n\n" + block + "\n"
    path.write_text(updated)


# -- the burst workload on the simulator -------------------------------------------------------

BURST_ROWS: list[tuple[str, str, str]] = [
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


def burst_targets(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| N | calls per job ≤ 0.6× | p50 lag ≤ 0.5× | CPU per job ≤ 0.5× | memory per job in flight ≤ 0.5× "
        "| 0 × 429 (ours / sdk) |",
        "|---:|:-:|:-:|:-:|:-:|:-:|",
    ]
    for n in sorted({r["n"] for r in results}):
        ours, sdk = _pair(results, n)
        marks = [
            _mark(ours["calls_per_job"]["total"] <= 0.6 * sdk["calls_per_job"]["total"]),
            _mark((ours["lag_s"]["p50"] or 0) <= 0.5 * (sdk["lag_s"]["p50"] or 0)),
            _mark(ours["cpu_per_1000_jobs_s"] <= 0.5 * sdk["cpu_per_1000_jobs_s"]),
            _mark(ours["memory_per_job_kb"] <= 0.5 * sdk["memory_per_job_kb"]) if n >= 100 else "(RSS noise)",
        ]
        lines.append(f"| {n} | {' | '.join(marks)} | {ours['responses_429']} / {sdk['responses_429']} |")
    return lines


def burst_section(
    results: list[dict[str, Any]], info: dict[str, str], command: str, when: str, load: str
) -> str:
    sdk_version = next(r["client_version"] for r in results if r["client"] == "horde_sdk")
    parts = [
        "## At scale on the simulator: N jobs submitted at once",
        "",
        f"Command: `{command}` — run on {when}; load average before the run {load}.",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram']} RAM, {info['os']}. "
        f"Our client on Python {info['python_ours']}; "
        f"horde_sdk {sdk_version} on Python {info['python_sdk']}.",
        "",
        *burst_targets(results),
        "",
    ]
    for n in sorted({r["n"] for r in results}):
        parts += [f"### N = {n} generations in flight", "", *table(results, n, BURST_ROWS), ""]
    parts.append(BURST_TEXT)
    return "\n".join(parts)


BURST_TEXT = """### Reading the numbers

- Our calls per job: the first check 2.5 s after submitting (the Horde lists a request in its
  queue only at its next refresh, so an earlier check reads nothing), then one aimed just past
  the worker's countdown (`wait_time` × 1.06 + 0.3 s), which fetches `generate/status` in place
  of a check: a job found done there costs no separate fetch. A job longer than 15 s
  (`PollPolicy.max_interval`, which keeps progress messages fresh) gets a check in between.
  horde_sdk checks right away and then every 4 s, so its count grows with the job.
- Our lag is mostly the aim past the countdown (6 % + 0.3 s) and the simulator's rounding of the
  time left up to a whole second. horde_sdk's 4 s sleep does not depend on the estimate: its lag
  is 0–4 s plus whatever its event loop adds.
- Our tail at N = 1,000: a job the simulator has not yet handed to a worker at its first check
  is still queued, and its next check follows the queue estimate (half of it, at most 4 s until
  the session has measured how fast the queue drains), so a few short jobs are found late.
  Fetches are also capped at 200/s (bursts of 100) and 32 in flight, which spreads the thousand
  first checks over a few seconds.
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

### Method

- Workload: N image generations (64×64, one image each) submitted at once, each awaited
  until the client holds its final status (`image_generate_request` returns). The simulator runs
  N workers, so every job runs as soon as it is submitted; each worker's speed is drawn from
  2–30 s (seeded, `bench/sim_burst.py`) and each job lasts its worker's speed ± 10 %
  (`--worker-speeds … --speed-jitter 0.1`): the job's countdown starts from its worker's speed,
  as on the real server.
- Each run starts a fresh simulator process (`python -m horde_simulator`), configured over
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
    then fetches `generate/status` once. Ours polls through one `PollScheduler` per session
    with `PollPolicy()` (docs/ARCHITECTURE.md, *Polling*): 2.5 s after submitting, then at the
    moment the queue's measured drain rate says a worker takes the job, then just past the
    worker's countdown with `generate/status`; overdue: 1 s, backing off to 4 s. Both are used
    with their defaults.
  - The same N, durations range and seed for both; the durations are drawn in the order the
    simulator's workers pick jobs up, so individual jobs differ between the two runs while the
    distribution does not (mean job duration is in the tables).
"""


# -- the queue workload (real Horde or simulator) -----------------------------------------------

QUEUE_ROWS: list[tuple[str, str, str]] = [
    ("jobs delivered / run", "delivered", "{:.0f}"),
    ("Horde calls per job: total", "calls_per_job.total", "{:.2f}"),
    ("… generate/check", "calls_per_job.check", "{:.2f}"),
    ("… generate/status", "calls_per_job.status", "{:.2f}"),
    ("… generate/async", "calls_per_job.async", "{:.2f}"),
    ("… other (DELETE, models…)", "calls_per_job.other", "{:.2f}"),
    ("delivery lag p50 (s)", "lag_s.p50", "{:.2f}"),
    ("delivery lag p95 (s)", "lag_s.p95", "{:.2f}"),
    ("delivery lag max (s)", "lag_s.max", "{:.2f}"),
    ("submit → result in hand, p50 (s)", "turnaround_s.p50", "{:.1f}"),
    ("… of which queued, p50 (s)", "queued_s.p50", "{:.1f}"),
    ("… of which on a worker, p50 (s)", "processing_s.p50", "{:.1f}"),
    ("429s received", "responses_429", "{:.0f}"),
    ("errors", "error_count", "{:.0f}"),
    ("CPU s per 1,000 jobs", "cpu_per_1000_jobs_s", "{:.1f}"),
]


def queue_targets(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| N | calls per job (ours / sdk) | ≤ 0.6× | lag p50 (ours / sdk) | ≤ 0.5× | 429s (ours / sdk) |",
        "|---:|:-:|:-:|:-:|:-:|:-:|",
    ]
    for n in sorted({r["n"] for r in results}):
        ours, sdk = _pair(results, n)
        calls = ours["calls_per_job"]["total"], sdk["calls_per_job"]["total"]
        lag = ours["lag_s"]["p50"], sdk["lag_s"]["p50"]
        lag_ok = lag[0] is not None and lag[1] is not None and lag[0] <= 0.5 * lag[1]
        calls_ok = calls[0] <= 0.6 * calls[1]
        lines.append(
            f"| {n} | {calls[0]:.2f} / {calls[1]:.2f} = {_ratio(*calls)} | {_mark(calls_ok)} "
            f"| {_cell(lag[0], '{:.2f}')} / {_cell(lag[1], '{:.2f}')} s = {_ratio(*lag)} | {_mark(lag_ok)} "
            f"| {ours['responses_429']} / {sdk['responses_429']} |"
        )
    return lines


def queue_section(
    results: list[dict[str, Any]],
    *,
    title: str,
    command: str,
    when: str,
    load: str,
    workload: str,
    info: dict[str, str],
    notes: str,
) -> str:
    sdk_version = next(r["client_version"] for r in results if r["client"] == "horde_sdk")
    parts = [
        f"## {title}",
        "",
        f"Command: `{command}` — run on {when}; load average before the run {load}.",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram']} RAM. Our client on Python "
        f"{info['python_ours']}; horde_sdk {sdk_version} on Python {info['python_sdk']}.",
        "",
        f"Workload: {workload}.",
        "",
        *queue_targets(results),
        "",
    ]
    for n in sorted({r["n"] for r in results}):
        ours, _ = _pair(results, n)
        background = ours.get("background_depth", 0)
        extra = f"; a background user kept {background} more in flight" if background else ""
        parts += [
            f"### N = {n} jobs in flight per client ({ours['jobs']} jobs each{extra})",
            "",
            *table(results, n, QUEUE_ROWS),
            "",
        ]
    parts.append(notes)
    return "\n".join(parts)


AGREEMENT_LIMIT = 0.2


def agreement(real: list[dict[str, Any]], sim: list[dict[str, Any]]) -> str:
    """How far the simulator's figures are from the real server's, for the same workload."""
    lines = [
        "### The simulator against the real server (same workload)",
        "",
        "Simulator ÷ real, from the latest `--real` run on this machine; the target is within "
        f"±{AGREEMENT_LIMIT:.0%}.",
        "",
        "| N | client | calls per job (sim / real) | | lag p50 (sim / real) | |",
        "|---:|---|:-:|:-:|:-:|:-:|",
    ]
    if not real:
        return "\n".join([*lines[:2], "No `--real` results on this machine yet: run `--real` first."])
    for result in sim:
        twin = next((r for r in real if r["client"] == result["client"] and r["n"] == result["n"]), None)
        if twin is None:
            continue
        cells = []
        for path, fmt in (("calls_per_job.total", "{:.2f}"), ("lag_s.p50", "{:.2f} s")):
            a, b = _get(result, path), _get(twin, path)
            within = a is not None and b and abs(a / b - 1) <= AGREEMENT_LIMIT
            cells += [
                f"{_cell(a, fmt)} / {_cell(b, fmt)} = {_ratio(a, b)}",
                "within" if within else "**outside**",
            ]
        lines.append(f"| {result['n']} | {result['client']} | {' | '.join(cells)} |")
    return "\n".join(lines)


QUEUE_NOTES = """### Reading the numbers

- Our polls follow the real server's timeline (docs/ARCHITECTURE.md, *Polling*): a first check
  once the Horde has listed the request (2.5 s, steered per queue by what first checks found);
  while queued, the next check at the moment the queue's drain rate, measured from the session's
  own checks (`QueueEstimate`), says a worker takes the job; then the worker's countdown, with a
  `generate/status` aimed just past its end. So a job costs about one check in the queue, one
  when it reaches a worker, and one or two status fetches, whatever its wait; horde_sdk checks
  every 4 s, so its calls grow with the wait (at N = 100 the queue is long: 18 checks a job).
- The queued `wait_time` is not used to aim (the real server's is one job's estimate, not the
  queue's) except as a bounded probe before any drain rate is known; `status/models` is not
  read: its counts are refreshed every 10 s and mix every queue, while the session's own polls
  measure the queue its jobs are in, at no extra call.
- Status fetches over 1 per job: a countdown that ran out early (the worker's average speed
  against this job's ±10 %): the status is fetched again (at most 3 times, then checks).
- Lag: ours is the aim past the countdown's end (6 % + 0.3 s) and the server's 1 s check cache;
  horde_sdk's is up to its 4 s sleep. Timing figures share 2 cores with the Horde, its
  PostgreSQL and the workers; the counts (calls, 429s) do not depend on the load.

### Method

- Both clients run at the same time, each in a process of its own, against the same Horde and
  workers; each keeps N jobs in flight (N lanes: a lane submits its next job once it holds the
  last one's final status). Every submission of every process takes a permit from one pacer
  (`bench/pacer.py`: one every 0.75 s, at most 80 in any 61 s), under the Horde's 2/s and
  90/min per IP for plain users, so submissions are never refused.
- Plain (untrusted) users only, minted through `POST /api/v2/dev/test-user` (at most 25 lanes per
  user: the Horde allows 30 requests in flight per user). The worker owner's trusted key only
  serves the fake workers.
- Horde calls per job: every HTTP request of the client process, counted by an aiohttp trace
  (`bench/_worker.py`), divided by the jobs it ran; 429s likewise.
- Delivery lag: from the worker's submit (the fake worker's log, stamped when the Horde has
  answered it, i.e. the result is in its database) to the client holding the final status, both
  in wall time on this machine. On the simulator: from `finished_at` (`GET /_sim/requests`).
- Queued and on-a-worker times come from the fake workers' pop and submit events.
"""
