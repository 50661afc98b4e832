"""A local AI Horde (API v2, server 5.1.5) with simulated workers, for tests and trying the bot.

It speaks the wire contract of ``horde-api.md``: the same routes under ``/api``, the same
defaults, validation messages, error shapes, rate limits and lifetimes.  Images are real webp
files (drawn with Pillow) served by the simulator itself under ``/_sim/r2``; ``/_sim`` also has a
small JSON control surface (``GET /_sim/counters``, ``POST /_sim/reset``, ``GET|POST /_sim/config``,
``POST /_sim/users``, ``POST /_sim/expire``, ``GET /_sim/requests``: every request accepted since
start, expired ones too, with its ``finished_at``, how it ``end``-ed and whether its results were
``retrieved``, and the ``orphans`` nobody cancelled or collected; in process ``sim.state.ledger()``
and ``sim.state.orphans()``).

In process::

    async with run_simulator(SimulatorConfig(knobs=Knobs(speed=0.01))) as sim:
        sim.base_url                         # "http://127.0.0.1:PORT/api/"
        sim.state.knobs.maintenance_mode = True
        sim.state.faults.script("generate_check", Fault.http(503, retry_after=1), times=2)
        sim.counters.calls("generate_check", id=gen_id)

Out of process: ``python -m horde_simulator --port 8765`` (see ``__main__``).
"""

from horde_simulator._counters import Counters
from horde_simulator._faults import Fault, FaultPlan
from horde_simulator._server import Simulator, SimulatorThread, run_simulator
from horde_simulator._state import State
from horde_simulator.config import (
    Knobs,
    ManualClock,
    RateLimits,
    SimulatorConfig,
    SimUser,
    default_users,
    load_users_file,
)

__all__ = [
    "Counters",
    "Fault",
    "FaultPlan",
    "Knobs",
    "ManualClock",
    "RateLimits",
    "SimUser",
    "Simulator",
    "SimulatorConfig",
    "SimulatorThread",
    "State",
    "default_users",
    "load_users_file",
    "run_simulator",
]
