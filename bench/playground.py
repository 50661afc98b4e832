"""``horde-bot playground``: how fast it starts, and how much memory it holds after 20 generations.

    python bench/playground.py                      # 5 starts, then 20 generations; Markdown + JSON
    python bench/playground.py --starts 10 --generations 50

- *start to URL*: seconds from launching ``python -m bot playground`` until it printed its URL,
  over ``--starts`` runs; the first run warms the install (bytecode, the OS's file cache) and is
  reported apart: the figure that matters is the warm one.
- *RSS*: the playground process's resident memory (``/proc/PID/status``: VmRSS now, VmHWM its
  peak) after its page was opened, and after ``--generations`` ``/imagine`` runs typed in that page
  by a headless Chromium, each waited for until "✅ Done" with its image shown. Bot, simulator,
  SimCord and its preview server are all in that one process. The simulator's workers take
  ``--speed`` seconds per image (short: memory, not the Horde's pace, is measured).

Needs the test extra and a Chromium (see tests/playground/playground_page.py). Not part of the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "playground"))

from playground_page import PlaygroundPage, browser_page, start_playground  # noqa: E402

MIB = 1024 * 1024


def memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of ``pid``, in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        name, _, value = line.partition(":")
        if name in {"VmRSS", "VmHWM"}:
            fields[name] = int(value.split()[0]) * 1024 / MIB
    return fields


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of ``pid`` so far: what the start costs whatever else loads the machine."""
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def starts(count: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds from launch to the printed URL, per run."""
    wall, cpu = [], []
    for _ in range(count):
        running = start_playground()
        cpu.append(cpu_seconds(running.process.pid))
        wall.append(running.started_in_s)
        running.stop(signal.SIGINT)
    return wall, cpu


def generate(page: PlaygroundPage, index: int) -> None:
    job, job_id = page.imagine(f"generation {index}")
    page.until(lambda: "✅ Done" in page.text(job_id), 60, f"generation {index} done")
    page.image_width(job)


def generations(count: int, speed: float) -> dict[str, Any]:
    running = start_playground("--speed", str(speed))
    try:
        with browser_page() as page:
            page.open(running.url)
            opened = memory(running.process.pid)
            started = time.monotonic()
            for index in range(1, count + 1):
                generate(page, index)
            took = time.monotonic() - started
            after = memory(running.process.pid)
    finally:
        code, stop_s = running.stop(signal.SIGINT)
    return {
        "generations": count,
        "rss_page_open_mib": round(opened["VmRSS"], 1),
        "rss_after_mib": round(after["VmRSS"], 1),
        "peak_rss_mib": round(after["VmHWM"], 1),
        "seconds": round(took, 1),
        "exit_code": code,
        "stop_s": round(stop_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--generations", type=int, default=20)
    parser.add_argument("--speed", type=float, default=0.5, help="simulated seconds per image")
    args = parser.parse_args()

    started, cpu = starts(args.starts)
    warm = started[1:] or started
    warm_cpu = cpu[1:] or cpu
    memory_figures = generations(args.generations, args.speed)
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.processor() or platform.machine()}, Python {platform.python_version()}",
        "start_to_url_s": {
            "first": round(started[0], 2),
            "warm_median": round(statistics.median(warm), 2),
            "warm_max": round(max(warm), 2),
            "warm_cpu_median": round(statistics.median(warm_cpu), 2),
            "runs": len(started),
        },
        "load_average": [round(value, 2) for value in os.getloadavg()],
        **memory_figures,
    }
    print("| measure | value | target |")
    print("|---|---:|---:|")
    url = result["start_to_url_s"]
    print(f"| start to URL, warm, median of {len(warm)} (s) | {url['warm_median']} | < 3 |")
    print(f"| start to URL, warm, slowest (s) | {url['warm_max']} | < 3 |")
    print(f"| CPU to URL, warm, median (s) | {url['warm_cpu_median']} | |")
    print(f"| start to URL, first run (s) | {url['first']} | |")
    print(f"| RSS with the page open (MiB) | {result['rss_page_open_mib']} | |")
    print(f"| RSS after {args.generations} generations (MiB) | {result['rss_after_mib']} | < 200 |")
    print(f"| peak RSS (MiB) | {result['peak_rss_mib']} | |")
    print(f"| Ctrl-C to exit (s), exit code | {result['stop_s']}, {result['exit_code']} | < 5, 0 |")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
