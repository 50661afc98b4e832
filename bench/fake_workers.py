#!/usr/bin/env python3
"""Fake image workers for benchmarks against the real AI Horde on loopback.

Extended from ``../shared/real-horde/fake_worker.py`` (same request bodies): several workers in
one process, each with its own job duration, each running up to ``slots`` jobs at once (it pops
as many as it has free slots, at most 4 a pop), every job finishing after its own duration (the
worker's, times a seeded random factor in ``1 ± jitter``). Standard library only.

    python bench/fake_workers.py --url http://127.0.0.1:7201/api --key WORKER_KEY \
        --worker fast:3 --worker mid:5:2 --worker slow:9 --jitter 0.15 --seed 1 --log events.jsonl

``--worker NAME:SECONDS[:SLOTS]`` (SLOTS default 4). ``--log`` appends one JSON object a line:
``{"event": "pop" | "submit", "id": job id, "t": unix time, "worker": NAME, "duration": s}``;
a submit's ``t`` is taken when the Horde answered it, i.e. once the result is in the Horde's
database. Stops after ``--seconds`` or on SIGTERM/SIGINT, finishing nothing it popped.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

# A 64x64 webp (solid red), as in fake_worker.py.
WEBP_B64 = (
    "UklGRlQAAABXRUJQVlA4IEgAAADQAwCdASpAAEAAPm02mEkkIyKhIggAgA2JZwB2AAAgbqagCvELcgAA/vA4Q//i1rcLSw"
    "//+0s/+pZ/9Sz/GG1uSzydWgoAAAA="
)
AGENT = "AI Horde Worker reGen:9.0.1-fake:https://github.com/Haidra-Org/horde-worker-reGen"
IMAGE_MODELS = ["Deliberate", "stable_diffusion", "SDXL 1.0", "AlbedoBase XL (SDXL)"]
MAX_POP = 4
IDLE_POP_INTERVAL = 0.5


def call(base: str, key: str, method: str, path: str, body: object) -> tuple[int, Any]:
    data = json.dumps(body).encode()
    headers = {"apikey": key, "Content-Type": "application/json"}
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
            return response.status, (json.loads(text) if text[:1] in (b"{", b"[") else text)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()[:300]
    except (OSError, ValueError) as exc:
        return 0, str(exc)


@dataclass(frozen=True)
class WorkerSpec:
    name: str
    seconds: float
    slots: int

    @classmethod
    def parse(cls, text: str) -> WorkerSpec:
        parts = text.split(":")
        if len(parts) not in (2, 3):
            raise argparse.ArgumentTypeError(f"expected NAME:SECONDS[:SLOTS], got {text!r}")
        slots = int(parts[2]) if len(parts) == 3 else MAX_POP
        return cls(parts[0], float(parts[1]), max(1, slots))


class EventLog:
    def __init__(self, path: str | None) -> None:
        self._path = path
        self._lock = threading.Lock()
        self.counts = {"pop": 0, "submit": 0, "submit_failed": 0}

    def write(self, event: str, **fields: object) -> None:
        with self._lock:
            self.counts[event] = self.counts.get(event, 0) + 1
            if self._path is not None:
                with open(self._path, "a", encoding="utf-8") as out:
                    out.write(json.dumps({"event": event, **fields}) + "\n")


class Worker:
    """One named worker: pops while it has free slots, each job runs on its own timer."""

    def __init__(
        self, spec: WorkerSpec, args: argparse.Namespace, log: EventLog, stop: threading.Event
    ) -> None:
        self.spec = spec
        self.args = args
        self.log = log
        self.stop = stop
        self.rng = random.Random(f"{args.seed}:{spec.name}")
        self.free = threading.Semaphore(spec.slots)
        self.busy = 0
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.stop.is_set():
            self.free.acquire()
            with self.lock:
                self.busy += 1
                free = self.spec.slots - self.busy + 1
            # Take the other free slots too (non-blocking), so one pop may fetch several jobs.
            extra = 0
            while extra < min(free, MAX_POP) - 1 and self.free.acquire(blocking=False):
                extra += 1
            with self.lock:
                self.busy += extra
            taken = 1 + extra
            jobs = self.pop(taken)
            for _ in range(taken - len(jobs)):
                self.release()
            for job_id, payload in jobs:
                duration = self.spec.seconds * self.rng.uniform(1 - self.args.jitter, 1 + self.args.jitter)
                self.log.write("pop", id=job_id, t=time.time(), worker=self.spec.name, duration=duration)
                timer = threading.Timer(duration, self.finish, (job_id, payload, duration))
                timer.daemon = True
                timer.start()
            if not jobs:
                self.stop.wait(IDLE_POP_INTERVAL)

    def release(self) -> None:
        with self.lock:
            self.busy -= 1
        self.free.release()

    def pop(self, amount: int) -> list[tuple[str, dict[str, Any]]]:
        code, pop = call(
            self.args.url,
            self.args.key,
            "POST",
            "/v2/generate/pop",
            {
                "name": self.spec.name,
                "models": IMAGE_MODELS,
                "bridge_agent": AGENT,
                "nsfw": True,
                "amount": amount,
                "max_pixels": 4194304,
                "threads": self.spec.slots,
                "allow_img2img": True,
                "allow_post_processing": True,
                "allow_lora": True,
            },
        )
        if code != 200 or not isinstance(pop, dict) or not pop.get("ids"):
            return []
        payload = pop.get("payload") or {}
        return [(job_id, payload) for job_id in pop["ids"]]

    def finish(self, job_id: str, payload: dict[str, Any], duration: float) -> None:
        try:
            if self.stop.is_set():
                return
            body = {
                "id": job_id,
                "generation": WEBP_B64,
                "state": "ok",
                "seed": int(payload.get("seed", 0) or 0),
            }
            code, answer = call(self.args.url, self.args.key, "POST", "/v2/generate/submit", body)
            if code == 200:
                self.log.write("submit", id=job_id, t=time.time(), worker=self.spec.name, duration=duration)
            else:
                self.log.write("submit_failed", id=job_id, t=time.time(), code=code, answer=str(answer)[:200])
        finally:
            self.release()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", required=True, help="base URL ending in /api")
    parser.add_argument("--key", required=True, help="API key of the workers' (trusted) owner")
    parser.add_argument("--worker", type=WorkerSpec.parse, action="append", required=True)
    parser.add_argument("--jitter", type=float, default=0.0, help="each job lasts SECONDS × (1 ± jitter)")
    parser.add_argument("--seed", default="0")
    parser.add_argument("--seconds", type=float, default=3600)
    parser.add_argument("--log", help="append JSON lines: pops and submits")
    args = parser.parse_args()
    args.url = args.url.rstrip("/")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    log = EventLog(args.log)
    workers = [Worker(spec, args, log, stop) for spec in args.worker]
    threads = [threading.Thread(target=worker.run, name=worker.spec.name, daemon=True) for worker in workers]
    for thread in threads:
        thread.start()
    stop.wait(args.seconds)
    stop.set()
    print(json.dumps(log.counts), flush=True)


if __name__ == "__main__":
    main()
