"""Polling benchmarks: the bot's client against horde_sdk 0.33.3, on the real AI Horde and the simulator.

    python bench/run.py                # burst on the simulator: N = 1, 100, 1000 jobs at once
                                       # (submission limits lifted); CPU and memory per job
    python bench/run.py --quick        # the same with job durations / 10; prints, writes nothing
    python bench/run.py --real         # the queue workload on the real AI Horde, N = 1, 10, 100
    python bench/run.py --queue-on-sim # the same queue workload on the simulator

``--real`` starts the real Horde with ``../shared/real-horde/start.sh`` (``--real-horde DIR``
elsewhere), using this process's environment, so the start.sh variables pick the instance::

    RH_DIR=/root/.cache/rh-poll HORDE_PORT=7201 PG_PORT=5502 REDIS_PORT=6402 REF_PORT=7202 \\
        S3_PORT=7203 RH_PGDATA=/var/lib/postgresql/rh-poll-pg15 python bench/run.py --real

It runs the fake workers (``bench/fake_workers.py``), mints plain users, and runs both clients
side by side (``bench/workload.py``). Each mode rewrites its own block of BENCHMARKS.md
(``--no-write`` to print only); ``--render MODE`` rewrites a block from that mode's last run,
kept in ``bench/.last-MODE.json``. horde_sdk runs from ``bench/.venv-sdk`` (Python 3.12, made here).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``bench`` and ``bot`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import real_horde, report, sim_burst, workload
from bench.pacer import Pacer, serve_permits

REPO = Path(__file__).resolve().parents[1]
SDK_VENV = REPO / "bench" / ".venv-sdk"
SDK_PYTHON = "3.12.1"
SDK_VERSION = "0.33.3"
RESULTS = REPO / "BENCHMARKS.md"
LAST_RUNS = REPO / "bench"  # .last-MODE.json: each mode's latest results (git-ignored)
CLIENTS = ("ours", "horde_sdk")
BURST_SIZES = (1, 100, 1000)
QUEUE_SIZES = (1, 10, 100)
WARM_UP_S = 45.0


def sdk_python() -> Path:
    """``bench/.venv-sdk/bin/python`` with horde_sdk installed, made on first use."""
    python = SDK_VENV / "bin" / "python"
    if python.exists() and _run([str(python), "-c", "import horde_sdk"], check=False).returncode == 0:
        return python
    pyenv_root = _run(["pyenv", "root"]).stdout.strip() if shutil.which("pyenv") else "~/.pyenv"
    base = Path(pyenv_root).expanduser() / "versions" / SDK_PYTHON / "bin" / "python"
    print(f"creating {SDK_VENV} with {base}", file=sys.stderr)
    _run([str(base), "-m", "venv", str(SDK_VENV)])
    _run([str(python), "-m", "pip", "install", "--quiet", f"horde_sdk=={SDK_VERSION}"])
    return python


def _run(command: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=check, cwd=REPO)


def _info(python_sdk: Path) -> dict[str, str]:
    version = _run([str(python_sdk), "-c", "import sys; print(sys.version.split()[0])"]).stdout.strip()
    return report.machine(version)


def _progress(label: str, result: dict[str, Any]) -> None:
    print(f"{label}: {json.dumps(result)}", file=sys.stderr, flush=True)


# -- the modes ---------------------------------------------------------------------------------


def run_burst(args: argparse.Namespace, python_sdk: Path, logs: Path) -> tuple[list[dict[str, Any]], str]:
    burst = sim_burst.QUICK if args.quick else sim_burst.FULL
    sizes = args.sizes or BURST_SIZES
    results = []
    for n in sizes:
        for client in args.clients:
            print(f"burst N={n} {client} …", file=sys.stderr, flush=True)
            result = sim_burst.run_case(client, n, burst, python_sdk, logs)
            _progress(f"burst N={n} {client}", result)
            results.append(result)
    return results, "python bench/run.py" + (" --quick" if args.quick else "")


def _queue_cases(
    server: workload.Server,
    queue: workload.QueueWorkload,
    args: argparse.Namespace,
    python_sdk: Path,
    logs: Path,
) -> list[dict[str, Any]]:
    results = []
    pool = tuple(server.keys("bench-user", workload.POOL_USERS))
    with serve_permits(Pacer(pool)) as permit:
        if isinstance(server, workload.RealServer):
            # Other users' jobs first, so every worker has a measured speed (the Horde's wait_time
            # comes from it, as on the public Horde, whose workers are known).
            print(f"warming the workers up for {WARM_UP_S:.0f} s …", file=sys.stderr, flush=True)
            warm = dataclasses.replace(queue, settle_s=WARM_UP_S)
            with workload.background(server, warm, queue.in_flight_floor, permit, logs / "warm-up.log"):
                pass
        for n in args.sizes or QUEUE_SIZES:
            print(f"queue N={n} on {server.name} …", file=sys.stderr, flush=True)
            case = workload.run_case(server, queue, n, tuple(args.clients), python_sdk, permit, logs)
            for result in case:
                _progress(f"queue N={n} {result['client']}", result)
            results += case
    return results


def _queue_workload(args: argparse.Namespace) -> workload.QueueWorkload:
    queue = workload.QueueWorkload()
    if args.jobs_per_lane:
        queue = dataclasses.replace(
            queue, jobs_per_lane=dict.fromkeys(args.sizes or QUEUE_SIZES, args.jobs_per_lane)
        )
    return queue


def run_real(args: argparse.Namespace, python_sdk: Path, logs: Path) -> tuple[list[dict[str, Any]], str]:
    queue = _queue_workload(args)
    horde = real_horde.start(Path(args.real_horde))
    events = logs / "worker-events.jsonl"
    with real_horde.fake_workers(
        horde, queue.workers, jitter=queue.jitter, seed=queue.seed, log=events, out=logs / "fake-workers.log"
    ):
        results = _queue_cases(workload.RealServer(horde, events), queue, args, python_sdk, logs)
    instance = " ".join(f"{name}={value}" for name, value in horde.instance().items())
    return results, f"{instance} python bench/run.py --real".strip()


def run_queue_on_sim(
    args: argparse.Namespace, python_sdk: Path, logs: Path
) -> tuple[list[dict[str, Any]], str]:
    queue = _queue_workload(args)
    with sim_burst.simulator(
        options=workload.sim_knobs(queue), log=logs / "sim.log", lift_submit_limits=False
    ) as sim:
        results = _queue_cases(workload.SimServer(sim.root), queue, args, python_sdk, logs)
    return results, "python bench/run.py --queue-on-sim"


def _last(block: str) -> list[dict[str, Any]]:
    """The latest results of a mode (``[]`` if it never ran here)."""
    path = LAST_RUNS / f".last-{block}.json"
    return list(json.loads(path.read_text())["results"]) if path.exists() else []


# -- main --------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--real", action="store_true", help="the queue workload on the real AI Horde")
    mode.add_argument("--queue-on-sim", action="store_true", help="the queue workload on the simulator")
    parser.add_argument("--quick", action="store_true", help="burst: durations / 10; print only")
    parser.add_argument("--sizes", type=lambda text: [int(n) for n in text.split(",")], help="N values")
    parser.add_argument("--clients", type=lambda text: text.split(","), default=list(CLIENTS))
    parser.add_argument("--jobs-per-lane", type=int, help="queue workload: jobs per lane at every N")
    parser.add_argument("--no-write", action="store_true", help="print; leave BENCHMARKS.md as it is")
    parser.add_argument("--real-horde", default=str(real_horde.DEFAULT_SCRIPTS), help="start.sh's directory")
    parser.add_argument(
        "--render", choices=("real", "queue-sim", "burst"), help="rewrite a block from its last run's record"
    )
    args = parser.parse_args(argv)
    python_sdk = sdk_python()
    if args.render:
        record = json.loads((LAST_RUNS / f".last-{args.render}.json").read_text())
        _write(record, _info(python_sdk), write=True)
        return
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = report.load_average()
    logs = Path(tempfile.mkdtemp(prefix="horde-bench-"))
    print(f"logs in {logs}; load average {load}", file=sys.stderr, flush=True)
    started = time.monotonic()
    if args.real:
        results, command = run_real(args, python_sdk, logs)
        block = "real"
    elif args.queue_on_sim:
        results, command = run_queue_on_sim(args, python_sdk, logs)
        block = "queue-sim"
    else:
        results, command = run_burst(args, python_sdk, logs)
        block = "burst"
    record = {
        "block": block,
        "results": results,
        "command": command,
        "when": when,
        "load": load,
        "workload": _queue_workload(args).describe(),
    }
    (LAST_RUNS / f".last-{block}.json").write_text(json.dumps(record, indent=1))
    print(
        f"done in {time.monotonic() - started:.0f} s; load average now {report.load_average()}",
        file=sys.stderr,
    )
    if set(args.clients) != set(CLIENTS):
        print(json.dumps(results, indent=1))
        return
    _write(record, _info(python_sdk), write=not (args.no_write or args.quick))


def _write(record: dict[str, Any], info: dict[str, str], *, write: bool) -> None:
    """The mode's block of BENCHMARKS.md from one run's record (written unless ``write`` is false)."""
    block, results = record["block"], record["results"]
    if block == "burst":
        text = report.burst_section(results, info, record["command"], record["when"], record["load"])
    else:
        title = (
            "The real AI Horde: plain users, jobs waiting in a queue"
            if block == "real"
            else "The same queue workload on the simulator"
        )
        text = report.queue_section(
            results,
            title=title,
            command=record["command"],
            when=record["when"],
            load=record["load"],
            workload=record["workload"],
            info=info,
            notes=report.QUEUE_NOTES,
        )
        if block == "queue-sim":
            text += "\n\n" + report.agreement(_last("real"), results)
    if write:
        report.replace_block(RESULTS, block, text)
        print(f"wrote the {block} block of {RESULTS}", file=sys.stderr)
    print(text)


if __name__ == "__main__":
    main()
