"""Settings of the AI Horde simulator: users, run-time knobs and start-up configuration.

``SimulatorConfig`` is read once at start-up.  Its ``knobs`` are copied into the running
simulator (``sim.state.knobs``) where they can be changed at any time, in process or through
``POST /_sim/config``.

Default users (``default_users()``; the anonymous user is always added):

- ``Anonymous#0``, key ``0000000000``: 0 kudos, concurrency 30 (the shared anonymous key).
- ``alice#1``, key ``sim-alice-key-00000001``: 5000 kudos; can afford anything.
- ``bob#2``, key ``sim-bob-key-0000000002``: 100 kudos (``KudosUpfront`` tests).

Every default user is plain (untrusted), as most members are and as ``../shared/real-horde`` mints
them: one generation by a trusted user lifts the caller's IP to the whitelisted rate limits for a
day (see :class:`RateLimits`), which would hide the limits production clients meet.
- ``poor#3``, key ``sim-poor-key-000000003``: 0 kudos, concurrency 2 (``TooManyPrompts`` tests).

Keys are fake and only mean something to the simulator.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from bot.horde.consts import ANON_API_KEY
from horde_simulator._faults import FaultPlan

Speed = float | tuple[float, float]


@dataclass
class SimUser:
    """A Horde account. Mutable: the simulator charges and credits ``kudos`` in place."""

    alias: str
    id: int
    api_key: str = field(repr=False)
    kudos: float = 0.0
    concurrency: int = 30
    trusted: bool = False
    moderator: bool = False
    flagged: bool = False
    education: bool = False
    deleted: bool = False
    service: bool = False
    """A service account: only these may send ``proxied_account``."""

    @property
    def username(self) -> str:
        return f"{self.alias}#{self.id}"

    @property
    def is_anon(self) -> bool:
        return self.api_key == ANON_API_KEY

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, default_id: int) -> SimUser:
        """Build a user from ``{"alias", "api_key", "id"?, "kudos"?, "concurrency"?, ...}``."""
        allowed = {f.name for f in fields(cls)}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown user field(s): {sorted(unknown)}")
        alias, api_key = data.get("alias"), data.get("api_key")
        if not isinstance(alias, str) or not alias or "#" in alias:
            raise ValueError("'alias' must be a non-empty string without '#'")
        if not isinstance(api_key, str) or not api_key:
            raise ValueError("'api_key' must be a non-empty string")
        user = cls(alias=alias, id=default_id, api_key=api_key)
        for name in allowed - {"alias", "api_key"}:
            if name in data:
                setattr(user, name, _coerce(name, getattr(user, name), data[name]))
        return user


def anonymous_user() -> SimUser:
    return SimUser("Anonymous", 0, ANON_API_KEY, kudos=0.0, concurrency=30)


def default_users() -> tuple[SimUser, ...]:
    return (
        SimUser("alice", 1, "sim-alice-key-00000001", kudos=5000.0),
        SimUser("bob", 2, "sim-bob-key-0000000002", kudos=100.0),
        SimUser("poor", 3, "sim-poor-key-000000003", kudos=0.0, concurrency=2),
    )


def load_users_file(path: str | Path) -> tuple[SimUser, ...]:
    """Read a JSON list of user objects (see :meth:`SimUser.from_json`)."""
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(raw, list):
        raise ValueError("the users file must hold a JSON list of user objects")
    return tuple(SimUser.from_json(item, default_id=index + 1) for index, item in enumerate(raw))


_LIMIT_RE = re.compile(r"^\s*(\d+)\s*(?:/|\s+per\s+)\s*(\d+)?\s*(second|minute|hour|day)s?\s*$")
_UNIT_SECONDS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}


@dataclass(frozen=True)
class Limit:
    """One flask-limiter rule; ``text`` is what the 429 body says (``"10 per 1 minute"``).
    ``unit_seconds`` is its unit's length (1 for "5 per 2 seconds"): flask-limiter tries the
    rules of an endpoint shortest unit first."""

    amount: int
    seconds: float
    text: str
    unit_seconds: float = 1.0


def parse_limit(spec: str) -> Limit:
    """Parse ``"10/second"``, ``"90/minute"``, ``"10 per 1 minute"`` or ``"5 per 2 seconds"``."""
    match = _LIMIT_RE.match(spec)
    if match is None:
        raise ValueError(f"bad rate limit {spec!r}; use e.g. '10/second' or '10 per 1 minute'")
    amount, multiples, unit = int(match[1]), int(match[2] or 1), match[3]
    if amount < 1 or multiples < 1:
        raise ValueError(f"bad rate limit {spec!r}: amounts must be positive")
    unit_seconds = _UNIT_SECONDS[unit]
    return Limit(amount, multiples * unit_seconds, f"{amount} per {multiples} {unit}", unit_seconds)


@dataclass
class RateLimits:
    """The server's flask-limiter rules (horde-api.md §2). ``None`` turns one rule off.

    A generation request by a trusted user (or an education or service account) whitelists the
    caller's IP for ``whitelist_seconds``: its async submits then count against the ``*_whitelisted``
    rules, and every key against ``generate_async_key_anon`` (the server's ``DynamicIPWhitelist``).
    """

    enabled: bool = True
    generate_async_ip: str | None = "90/minute"
    generate_async_ip_burst: str | None = "2/second"
    generate_async_key: str | None = "2/second"
    generate_async_key_anon: str | None = "60/second"
    generate_async_ip_whitelisted: str | None = "300/minute"
    generate_async_ip_burst_whitelisted: str | None = "10/second"
    whitelist_seconds: float = 86_400.0
    check: str | None = "10/second"
    image_status: str | None = "10/minute"
    text_status: str | None = "60/minute"
    interrogate_status: str | None = "10/second"
    kudos_transfer: str | None = "1/second"
    kudos_transfer_hourly: str | None = "90/hour"
    user_details: str | None = "60/minute"
    status_modes: str | None = "30/minute"
    default: str | None = "90/minute"

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, str):
                parse_limit(value)
        if self.whitelist_seconds < 0:
            raise ValueError("'whitelist_seconds' must not be negative")

    def limit(self, name: str) -> Limit | None:
        spec = getattr(self, name)
        return parse_limit(spec) if isinstance(spec, str) else None


@dataclass
class Knobs:
    """Everything that can change while the simulator runs (``sim.state.knobs``).

    Times are seconds on the simulator's clock.  ``speed`` is the time a simulated worker
    spends on one pop: a number, or a ``(low, high)`` range drawn with the seeded RNG.
    ``worker_delay`` is how long a job waits before a worker picks it up.
    ``worker_threads`` is how many pops of each kind (image, text, alchemy) run at once (0: the
    workers are online but take nothing, so every request waits).  ``worker_batch`` is how many
    jobs of one request a worker takes in one pop (the real reGen worker's ``amount``; the fake
    worker of ``../shared/real-horde`` takes 4): they run together and finish together.  Workers
    announce ``worker_threads × worker_batch`` threads, which is what the queue estimates divide by.
    ``worker_speeds``: workers of different speeds, one entry a thread (thread ``i`` takes
    ``worker_speeds[i % len]`` seconds a pop, times a seeded factor within ``1 ± speed_jitter``);
    they replace ``speed``. The countdown of a job on such a thread (``wait_time``) starts from
    its thread's seconds, as the server's starts from the worker's own average speed, and the
    queue part of ``wait_time`` uses their mean job time (``average_speed``).

    The server's caches, on the simulator's clock (0 turns one off):
    ``queue_refresh``: the queue positions (and the queue part of ``wait_time``) come from a
    snapshot taken at most this often; a request submitted since the last one is not in it and
    shows ``queue_position`` 0 and no queue wait, as on the real server right after a submit.
    ``check_cache``: a ``generate/check`` answer is served again to anyone asking for that id
    within this time.  The server caches it for 1 s (``@cache.cached(timeout=1)``); the default
    0 leaves that second of lag out, because clients and tests here poll every 50 ms to finish
    in one step.  Set 1.0 to measure delivery lag as on the real Horde.
    ``find_user_cache``: ``find_user`` and ``users/{id}`` answers are kept this long (Redis, 30 s),
    so kudos may lag after a transfer or a generation.
    """

    worker_delay: float = 0.0
    speed: Speed = 0.5
    worker_threads: int = 2
    worker_batch: int = 1
    worker_speeds: tuple[float, ...] = ()
    speed_jitter: float = 0.0
    queue_refresh: float = 1.0
    check_cache: float = 0.0
    find_user_cache: float = 30.0
    served_image_models: tuple[str, ...] | None = None
    served_text_models: tuple[str, ...] | None = None
    advertised_image_models: tuple[str, ...] = ("stable_diffusion", "AlbedoBase XL (SDXL)", "Deliberate")
    advertised_text_models: tuple[str, ...] = ("koboldcpp/SimLlama-8B",)
    censor_words: tuple[str, ...] = ("censor-me",)
    csam_words: tuple[str, ...] = ()
    censor_probability: float = 0.0
    job_fault_probability: float = 0.0
    fail_next_jobs: int = 0
    maintenance_mode: bool = False
    heartbeat_message: str = "OK"
    request_lifetime: float = 1200.0
    r2_lifetime: float = 7200.0
    max_image_side: int = 1024
    upfront_max_steps: int = 40
    rate_limits: RateLimits = field(default_factory=RateLimits)

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        if self.worker_threads < 0 or self.fail_next_jobs < 0 or self.worker_delay < 0:
            raise ValueError("worker_threads, fail_next_jobs and worker_delay must not be negative")
        if self.worker_batch < 1:
            raise ValueError("'worker_batch' must be at least 1")
        for name in ("queue_refresh", "check_cache", "find_user_cache"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name!r} must not be negative")
        for name in ("censor_probability", "job_fault_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name!r} must be between 0 and 1")
        if self.request_lifetime <= 0 or self.r2_lifetime <= 0:
            raise ValueError("lifetimes must be positive")
        if any(speed <= 0 for speed in self.worker_speeds) or not 0 <= self.speed_jitter < 1:
            raise ValueError("'worker_speeds' must be positive and 'speed_jitter' within [0, 1)")
        if self.max_image_side < 64:
            raise ValueError("'max_image_side' must be at least 64")

    def average_speed(self) -> float:
        """The mean seconds of a pop: with ``worker_speeds``, weighted by how many each thread
        finishes (threads / their summed rates)."""
        if self.worker_speeds:
            return len(self.worker_speeds) / sum(1 / speed for speed in self.worker_speeds)
        if isinstance(self.speed, tuple):
            return (self.speed[0] + self.speed[1]) / 2
        return float(self.speed)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, RateLimits):
                out[f.name] = {rf.name: getattr(value, rf.name) for rf in fields(value)}
            elif isinstance(value, tuple):
                out[f.name] = list(value)
            else:
                out[f.name] = value
        return out

    def apply_patch(self, patch: Mapping[str, Any]) -> None:
        """Validate then apply a JSON patch (``POST /_sim/config``); all or nothing."""
        staged = replace(self, rate_limits=replace(self.rate_limits))
        known = {f.name for f in fields(self)}
        for name, value in patch.items():
            if name not in known:
                raise ValueError(f"unknown knob {name!r}")
            if name == "rate_limits":
                staged.rate_limits = _patch_rate_limits(staged.rate_limits, value)
            else:
                setattr(staged, name, _coerce(name, getattr(self, name), value, field_type=_KNOB_TYPES[name]))
        staged.check()
        for f in fields(self):
            setattr(self, f.name, getattr(staged, f.name))


_KNOB_TYPES: dict[str, str] = {f.name: str(f.type) for f in fields(Knobs)}


def _patch_rate_limits(current: RateLimits, value: Any) -> RateLimits:
    if not isinstance(value, Mapping):
        raise ValueError("'rate_limits' must be an object")
    known = {f.name for f in fields(RateLimits)}
    unknown = set(value) - known
    if unknown:
        raise ValueError(f"unknown rate limit(s): {sorted(unknown)}")
    changes: dict[str, Any] = {}
    for name, item in value.items():
        if name == "enabled":
            if not isinstance(item, bool):
                raise ValueError("'rate_limits.enabled' must be a boolean")
        elif name == "whitelist_seconds":
            if not _is_number(item) or item < 0:
                raise ValueError("'rate_limits.whitelist_seconds' must be a non-negative number")
            item = float(item)
        elif item is not None and not isinstance(item, str):
            raise ValueError(f"'rate_limits.{name}' must be a string like '10/second' or null")
        changes[name] = item
    return replace(current, **changes)


def _coerce(name: str, current: Any, value: Any, *, field_type: str = "") -> Any:
    """Check a JSON value against the type of the attribute it replaces."""
    optional = "None" in field_type
    if value is None and (optional or current is None):
        return None
    if name == "speed":
        if isinstance(value, list | tuple) and len(value) == 2 and all(_is_number(v) for v in value):
            low, high = float(value[0]), float(value[1])
            if not 0 <= low <= high:
                raise ValueError("'speed' range must be 0 <= low <= high")
            return (low, high)
        if _is_number(value) and value >= 0:
            return float(value)
        raise ValueError("'speed' must be a non-negative number or a [low, high] pair")
    if name == "worker_speeds":
        if not isinstance(value, list | tuple) or not all(_is_number(v) and v > 0 for v in value):
            raise ValueError("'worker_speeds' must be a list of positive numbers")
        return tuple(float(v) for v in value)
    if isinstance(current, bool) or "bool" in field_type:
        if not isinstance(value, bool):
            raise ValueError(f"{name!r} must be a boolean")
        return value
    if isinstance(current, tuple) or "tuple" in field_type:
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{name!r} must be a list of strings")
        return tuple(value)
    if isinstance(current, int) and not isinstance(current, bool) and field_type != "float":
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{name!r} must be an integer")
        return value
    if isinstance(current, float):
        if not _is_number(value):
            raise ValueError(f"{name!r} must be a number")
        return float(value)
    if isinstance(current, str):
        if not isinstance(value, str):
            raise ValueError(f"{name!r} must be a string")
        return value
    raise ValueError(f"{name!r} cannot be set")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class ManualClock:
    """A clock for tests: time only moves when :meth:`advance` is called."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


@dataclass
class SimulatorConfig:
    """Start-up settings. ``port=0`` binds a free port.

    ``clock`` drives lifetimes, rate limits and the simulated workers' timing
    (``time.monotonic`` by default; :class:`ManualClock` in tests).  ``seed`` fixes every
    random choice: ids, seeds, durations, fault draws.
    """

    host: str = "127.0.0.1"
    port: int = 0
    users: Sequence[SimUser] = field(default_factory=default_users)
    knobs: Knobs = field(default_factory=Knobs)
    faults: FaultPlan = field(default_factory=FaultPlan)
    seed: int = 0
    clock: Callable[[], float] = time.monotonic
    tick: float = 0.01
