"""The two sides of the conformance suite: a real AI Horde and the simulator, driven alike.

A :class:`Side` sends requests as the plain users alice and bob (never with the worker owner's
key: one generation by a trusted user lifts the IP's rate limits for a day and would spoil every
later measurement), starts and stops a worker, and DELETEs every request it made when the test
ends, so the real server's queue is empty for the next test.

The real side is given by ``REAL_HORDE_KEYS``: the ``keys.env`` that ``../shared/real-horde/start.sh``
writes (``ALICE_KEY``, ``BOB_KEY``, ``WORKER_KEY``, ``HORDE_URL``).  Its worker is
``fake_worker.py`` (``REAL_HORDE_WORKER``, by default ``../shared/real-horde/fake_worker.py`` beside
the repository): it pops up to 4 jobs of one request at once and submits them after ``--delay``.
The simulator side is configured to match it (:func:`sim_config`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from horde_simulator import Knobs, Simulator, SimulatorConfig, SimUser, run_simulator

KEYS_ENV = "REAL_HORDE_KEYS"
WORKER_ENV = "REAL_HORDE_WORKER"
REPO = Path(__file__).resolve().parents[2]
DEFAULT_WORKER = REPO.parent / "shared" / "real-horde" / "fake_worker.py"
SKIP_REASON = (
    f"the conformance suite needs a real AI Horde: set {KEYS_ENV}=/path/to/keys.env "
    "(written by ../shared/real-horde/start.sh); .ci/run does"
)
# Each test module: ``pytestmark = needs_real_horde``. (No conftest.py here: a second module named
# conftest on sys.path would shadow tests/conftest.py for the `from conftest import` of other tests.)
needs_real_horde = pytest.mark.skipif(not os.environ.get(KEYS_ENV), reason=SKIP_REASON)

# What the fake worker serves (fake_worker.py: IMAGE_MODELS, TEXT_MODELS).
IMAGE_MODELS = ("Deliberate", "stable_diffusion", "SDXL 1.0", "AlbedoBase XL (SDXL)")
TEXT_MODELS = ("koboldcpp/LLaMA2-13B-Psyfighter2", "koboldcpp/tiny-test-model")
CLIENT_AGENT = "horde-discord-bot-conformance:1:tests@example.invalid"
USERS = ("alice", "bob")


def read_keys(path: str) -> dict[str, str]:
    """``KEY=value`` lines of ``keys.env``."""
    pairs = (line.strip().split("=", 1) for line in Path(path).read_text().splitlines() if "=" in line)
    return {name.strip(): value.strip().strip("'\"") for name, value in pairs}


def sim_config() -> SimulatorConfig:
    """The simulator as the real side runs: one fake worker (threads 4, 4 jobs a pop) that is
    off until a test starts it, the server's 1 s check cache, rate limits on, plain users."""
    knobs = Knobs(
        speed=1.0,
        worker_threads=0,
        worker_batch=4,
        check_cache=1.0,
        advertised_image_models=IMAGE_MODELS,
        advertised_text_models=TEXT_MODELS,
    )
    users = (
        SimUser("alice", 1, "conformance-alice-key", kudos=100_000.0),
        SimUser("bob", 2, "conformance-bob-key0", kudos=100_000.0),
    )
    return SimulatorConfig(users=users, knobs=knobs)


@dataclass(frozen=True)
class Exchange:
    """One answer: status, headers, the JSON body (or the text when it is not JSON)."""

    status: int
    headers: Mapping[str, str]
    body: Any
    content_type: str
    answered_at: float
    """``time.time()`` when the answer arrived (to check ``X-RateLimit-Reset``)."""

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


@dataclass
class Side:
    name: str
    base_url: str
    keys: Mapping[str, str]
    http: aiohttp.ClientSession
    start_worker: Callable[[float], Awaitable[None]]
    stop_worker: Callable[[], Awaitable[None]]
    made: list[tuple[str, str]] = field(default_factory=list)
    """(kind, id) of every request made, DELETEd at the end."""

    async def call(
        self,
        method: str,
        path: str,
        *,
        user: str | None = None,
        json: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> Exchange:
        headers = {"Client-Agent": CLIENT_AGENT}
        if user is not None:
            headers["apikey"] = self.keys[user]
        async with self.http.request(
            method, self.base_url + path, headers=headers, json=json, params=params
        ) as response:
            text = await response.text()
            body: Any = text
            if response.content_type == "application/json":
                body = await response.json()
            return Exchange(response.status, dict(response.headers), body, response.content_type, time.time())

    async def submit(self, kind: str, body: Mapping[str, Any], *, user: str = "bob") -> Exchange:
        """POST an image (``kind`` "image"), text or alchemy request; remembers its id."""
        path = {"image": "v2/generate/async", "text": "v2/generate/text/async"}.get(
            kind, "v2/interrogate/async"
        )
        answer = await self.call("POST", path, user=user, json=body)
        if answer.status == 202:
            self.made.append((kind, str(answer.body["id"])))
        return answer

    async def clean_up(self) -> None:
        paths = {"image": "v2/generate/status/", "text": "v2/generate/text/status/"}
        for kind, request_id in self.made:
            with contextlib.suppress(aiohttp.ClientError):
                await self.call("DELETE", paths.get(kind, "v2/interrogate/status/") + request_id)
        self.made.clear()


@contextlib.asynccontextmanager
async def real_side(http: aiohttp.ClientSession) -> AsyncIterator[Side]:
    keys = read_keys(os.environ[KEYS_ENV])
    worker_script = Path(os.environ.get(WORKER_ENV) or DEFAULT_WORKER)
    base_url = keys["HORDE_URL"].rstrip("/") + "/"
    processes: list[asyncio.subprocess.Process] = []

    async def start(delay: float) -> None:
        command = ["--url", base_url.rstrip("/"), "--key", keys["WORKER_KEY"], "--delay", str(delay)]
        command += ["--seconds", "900", "--name", "Conformance"]
        processes.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                str(worker_script),
                *command,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
        )
        # The server counts a worker (and the models it serves) from its first pop.
        await asyncio.sleep(1.5)

    async def stop() -> None:
        while processes:
            process = processes.pop()
            if process.returncode is None:
                process.terminate()
            await asyncio.wait_for(process.wait(), 10)

    side = Side("real", base_url, {"alice": keys["ALICE_KEY"], "bob": keys["BOB_KEY"]}, http, start, stop)
    try:
        yield side
    finally:
        await side.clean_up()
        await stop()


@contextlib.asynccontextmanager
async def sim_side(http: aiohttp.ClientSession) -> AsyncIterator[Side]:
    async with run_simulator(sim_config()) as sim:

        async def start(delay: float) -> None:
            set_worker(sim, threads=1, delay=delay)

        async def stop() -> None:
            set_worker(sim, threads=0, delay=sim.state.knobs.average_speed())

        keys = {user.alias: user.api_key for user in sim.state.users.values() if user.alias in USERS}
        side = Side("sim", sim.base_url, keys, http, start, stop)
        try:
            yield side
        finally:
            await side.clean_up()


def set_worker(sim: Simulator, *, threads: int, delay: float) -> None:
    with sim.state.lock:
        sim.state.knobs.worker_threads = threads
        sim.state.knobs.speed = delay
    sim.state.changed()


async def both(sides: tuple[Side, Side], scenario: Callable[[Side], Awaitable[Any]]) -> tuple[Any, Any]:
    """Run ``scenario`` on the real side and on the simulator at the same time."""
    real, sim = await asyncio.gather(scenario(sides[0]), scenario(sides[1]))
    return real, sim


# -- comparing ----------------------------------------------------------------------------------------


def shape(value: Any) -> Any:
    """Keys and JSON types, not values: ``{"a": [1, 2.0]}`` → ``{"a": ["float", "int"]}``."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        shapes = {repr(shape(item)): shape(item) for item in value}
        return [shapes[key] for key in sorted(shapes)]
    if value is None:
        return "null"
    return type(value).__name__


def assert_same_shape(real: Any, sim: Any, what: str) -> None:
    assert shape(sim) == shape(real), f"{what}: the simulator's shape differs from the real server's"


def keys(value: Any, *, optional: frozenset[str] = frozenset()) -> Any:
    """The keys at every level of nested objects (lists and values left out), minus ``optional``:
    for answers whose lists and numbers depend on the account's history."""
    if not isinstance(value, dict):
        return None
    return {key: keys(item) for key, item in value.items() if key not in optional}


LIMIT_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After")


def limit_headers(exchange: Exchange) -> dict[str, str | None]:
    return {name: exchange.header(name) for name in LIMIT_HEADERS}


def assert_limit_headers(exchange: Exchange, *, limit: int, window: float, what: str) -> None:
    """The headers flask-limiter adds to every answer of a limited endpoint, for ``limit`` per
    ``window`` seconds: whole seconds, the reset an epoch time within the window."""
    headers = limit_headers(exchange)
    assert None not in headers.values(), f"{what}: missing rate-limit headers {headers}"
    assert int(str(headers["X-RateLimit-Limit"])) == limit, f"{what}: {headers}"
    assert 0 <= int(str(headers["X-RateLimit-Remaining"])) < limit, f"{what}: {headers}"
    retry_after = int(str(headers["Retry-After"]))
    assert 0 <= retry_after <= window, f"{what}: {headers}"
    reset = int(str(headers["X-RateLimit-Reset"]))
    assert exchange.answered_at - 1 <= reset <= exchange.answered_at + window + 2, f"{what}: {headers}"


@pytest.fixture(name="sides")
async def sides_fixture() -> AsyncIterator[tuple[Side, Side]]:
    """``(real, sim)``: the same users, no worker running until a test starts one; every request
    made is DELETEd and every worker stopped at the end.  Import it as ``sides_fixture``."""
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession())
        real = await stack.enter_async_context(real_side(http))
        sim = await stack.enter_async_context(sim_side(http))
        yield real, sim
