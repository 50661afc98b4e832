"""The real AI Horde for benchmarks: start it, mint plain users, run fake workers (standard library).

The server is ``../shared/real-horde/start.sh`` (see its README), run with this process's
environment, so its variables choose the instance: ``RH_DIR``, ``HORDE_PORT``, ``PG_PORT``,
``REDIS_PORT``, ``REF_PORT``, ``S3_PORT``, ``RH_PGDATA``. Keys come from ``$RH_DIR/keys.env``;
the worker owner's key (trusted) is only ever given to the fake workers: one generation sent
with a trusted key lifts the IP's limits for a day, and the benchmark measures plain users.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import processes

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SCRIPTS = REPO.parent / "shared" / "real-horde"
START_VARIABLES = ("RH_DIR", "HORDE_PORT", "PG_PORT", "REDIS_PORT", "REF_PORT", "S3_PORT", "RH_PGDATA")


@dataclass(frozen=True)
class WorkerSpec:
    """A fake worker: its name, the seconds a job takes, and how many jobs it runs at once."""

    name: str
    seconds: float
    slots: int

    def arg(self) -> str:
        return f"{self.name}:{self.seconds:g}:{self.slots}"


@dataclass(frozen=True)
class RealHorde:
    api: str  # …/api/
    worker_key: str
    rh_dir: Path

    def instance(self) -> dict[str, str]:
        """The start.sh variables this run used (for the report)."""
        return {name: os.environ[name] for name in START_VARIABLES if name in os.environ}


def rh_dir() -> Path:
    return Path(os.environ.get("RH_DIR", Path.home() / ".cache" / "realhorde"))


def start(scripts: Path = DEFAULT_SCRIPTS) -> RealHorde:
    """Run start.sh (idempotent: what runs is kept) and read the instance's keys."""
    started = subprocess.run([str(scripts / "start.sh")], capture_output=True, text=True, check=False)
    if started.returncode != 0:
        raise RuntimeError(f"start.sh failed ({started.returncode}):\n{started.stderr[-3000:]}")
    keys = _read_env(rh_dir() / "keys.env")
    return RealHorde(api=keys["HORDE_URL"], worker_key=keys["WORKER_KEY"], rh_dir=rh_dir())


def _read_env(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep:
            values[name.strip()] = value.strip()
    return values


def post_json(url: str, body: object) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def mint_plain_users(api: str, prefix: str, count: int, *, kudos: int = 100_000) -> list[str]:
    """``count`` plain (untrusted) users through ``POST v2/dev/test-user`` (loopback only), each
    with ``kudos``; minting again re-keys the same users (and sets their kudos)."""
    keys = []
    for i in range(count):
        name = f"{prefix}-{i}"
        body = {"username": name, "oauth_id": name, "kudos": kudos, "moderator": False, "trusted": False}
        user = post_json(api + "v2/dev/test-user", body)
        if user.get("trusted"):
            raise RuntimeError(f"{name} came back trusted: its generations would lift the IP's limits")
        keys.append(str(user["api_key"]))
    return keys


@contextlib.contextmanager
def fake_workers(
    horde: RealHorde, specs: Sequence[WorkerSpec], *, jitter: float, seed: str, log: Path, out: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """``bench/fake_workers.py`` serving ``specs`` until the block ends; events go to ``log``."""
    command = [
        sys.executable,
        str(REPO / "bench" / "fake_workers.py"),
        "--url",
        horde.api.rstrip("/"),
        "--key",
        horde.worker_key,
        "--jitter",
        str(jitter),
        "--seed",
        seed,
        "--log",
        str(log),
        *(arg for spec in specs for arg in ("--worker", spec.arg())),
    ]
    with out.open("a") as stdout:
        process = subprocess.Popen(command, stdout=stdout, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        processes.stop(process, 15)


def worker_events(log: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """``{event: {job id: record}}`` from the fake workers' log (``pop`` and ``submit``)."""
    events: dict[str, dict[str, dict[str, Any]]] = {}
    if not log.exists():
        return events
    for line in log.read_text().splitlines():
        record = json.loads(line)
        events.setdefault(record["event"], {})[record["id"]] = record
    return events
