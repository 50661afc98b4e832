"""Starting and stopping the simulator, in the running event loop or in a thread of its own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType

from aiohttp import web

from horde_simulator._app import SimulatorApp
from horde_simulator._counters import Counters
from horde_simulator._ratelimit import RateLimiter
from horde_simulator._state import State
from horde_simulator._workers import WorkerPool
from horde_simulator.config import SimulatorConfig

log = logging.getLogger("horde_simulator")


@dataclass(frozen=True)
class Simulator:
    """A running simulator. ``base_url`` ends with ``/api/`` like the real Horde's."""

    host: str
    port: int
    state: State
    counters: Counters
    limiter: RateLimiter

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}api/"

    def url(self, path: str) -> str:
        """``sim.url("v2/status/heartbeat")`` → the full URL under ``/api/``."""
        return self.base_url + path.lstrip("/")

    def reset(self) -> None:
        """Forget counters, rate-limit windows and scripted faults (not the requests)."""
        self.counters.reset()
        self.limiter.reset()
        self.state.faults.clear()


@contextlib.asynccontextmanager
async def run_simulator(config: SimulatorConfig | None = None) -> AsyncIterator[Simulator]:
    """Serve the simulator until the block ends::

    async with run_simulator(SimulatorConfig(knobs=Knobs(speed=0.01))) as sim:
        ...  # sim.base_url == "http://127.0.0.1:PORT/api/"
    """
    config = config or SimulatorConfig()
    state = State(config)
    counters = Counters()
    limiter = RateLimiter(config.clock)
    app = SimulatorApp(state, counters, limiter, fault_rng_seed=config.seed + 1).build()
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    pool: WorkerPool | None = None
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
        host, port = _bound_address(runner, config.host)
        pool = WorkerPool(state, config.tick)
        pool.start()
        sim = Simulator(host, port, state, counters, limiter)
        log.info("AI Horde simulator listening on %s", sim.base_url)
        yield sim
    finally:
        if pool is not None:
            await pool.stop()
        await runner.cleanup()


def _bound_address(runner: web.AppRunner, host: str) -> tuple[str, int]:
    address = runner.addresses[0]
    bound_host = host if host not in ("0.0.0.0", "::", "") else "127.0.0.1"
    return bound_host, int(address[1])


class SimulatorThread:
    """The simulator on its own event loop in a background thread, for synchronous tests::

    with SimulatorThread(SimulatorConfig()) as sim:
        requests.get(sim.base_url + "v2/status/heartbeat")

    ``state`` may be used from the calling thread: its methods take a lock.
    """

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self._config = config or SimulatorConfig()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._sim: Simulator | None = None
        self._error: BaseException | None = None

    @property
    def simulator(self) -> Simulator:
        if self._sim is None:
            raise RuntimeError("the simulator thread is not running")
        return self._sim

    @property
    def base_url(self) -> str:
        return self.simulator.base_url

    @property
    def state(self) -> State:
        return self.simulator.state

    @property
    def counters(self) -> Counters:
        return self.simulator.counters

    def url(self, path: str) -> str:
        return self.simulator.url(path)

    def start(self, timeout: float = 10.0) -> SimulatorThread:
        if self._thread is not None:
            raise RuntimeError("the simulator thread was already started")
        self._thread = threading.Thread(target=self._run, name="horde-simulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the simulator did not start in time")
        if self._error is not None:
            raise RuntimeError("the simulator failed to start") from self._error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
        self._sim = None

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # handed over to the thread that called start()
            self._error = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with run_simulator(self._config) as sim:
            self._sim = sim
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> SimulatorThread:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
