"""The simulator's records: workers, requests and their jobs, generations, alchemy forms, styles,
and what ``ledger()`` says about each request."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

from horde_simulator.config import SimUser

Kind = Literal["image", "text"]
RequestEnd = Literal["open", "finished", "faulted", "cancelled", "expired"]
WorkerType = Literal["image", "text", "interrogation"]
FormState = Literal["waiting", "processing", "done", "cancelled", "faulted"]


@dataclass
class SimWorker:
    id: str
    name: str
    type: WorkerType
    created: float
    requests_fulfilled: int = 0
    kudos_rewards: float = 0.0
    megapixelsteps: float = 0.0
    tokens: int = 0
    uncompleted_jobs: int = 0
    team: str | None = None
    """The team's name (``_teams.py``); none by default, as on a fresh server."""


@dataclass
class Generation:
    id: str
    worker: SimWorker
    model: str
    seed: int
    kudos: float
    image: bytes | None = None
    text: str | None = None
    censorship: str | None = None


@dataclass(eq=False)
class Job:
    id: str
    request: GenRequest
    worker: SimWorker
    model: str
    seed: int
    started: float
    due: float
    expected: float | None = None
    """What the worker expects the pop to take (its average speed); ``None``: ``average_speed``."""


@dataclass(eq=False)
class GenRequest:
    """An image or text request (the server's waiting prompt)."""

    id: str
    kind: Kind
    user: SimUser
    prompt: str
    params: dict[str, Any]
    models: list[str]
    kudos_per_generation: float
    created: float
    expires_at: float
    jobs: int
    waiting: int
    workers: list[str] = field(default_factory=list)
    worker_blacklist: bool = False
    nsfw: bool = True
    censor_nsfw: bool = True
    r2: bool = True
    slow_workers: bool = True
    source_image: bool = False
    source_processing: str = "img2img"
    disable_batching: bool = False
    proxied_account: str | None = None
    queued_at: float = 0.0
    priority: float = 0.0
    """The server's ``extra_priority``: the user's kudos when the request was made."""
    seq: int = 0
    """Submission order, which breaks priority ties."""
    processing: list[Job] = field(default_factory=list)
    generations: list[Generation] = field(default_factory=list)
    restarted: int = 0
    fault_count: int = 0
    faulted: bool = False
    cancelled: bool = False
    consumed: float = 0.0
    seeds_issued: int = 0
    finished_at: float | None = None
    """When ``done`` first became true (simulator clock): benchmarks measure delivery lag from it."""
    retrieved: bool = False
    """A final status (with the results) was served to someone after the request was done."""

    @property
    def end(self) -> RequestEnd:
        if self.cancelled:
            return "cancelled"
        if self.faulted:
            return "faulted"
        return "finished" if self.done else "open"

    @property
    def finished(self) -> int:
        return len(self.generations)

    @property
    def done(self) -> bool:
        """The server's ``is_completed``: nothing left to hand out, and the delivered jobs minus
        those still on a worker make up ``jobs``.  A DELETE sets ``jobs`` to the images delivered
        so far (images only), so jobs still on a worker keep it open until they are delivered,
        and they are charged.  (The server also counts faulted jobs as ended; the simulator's
        restarts differ from the server's anyway, see docs/ARCHITECTURE.md.)"""
        if self.faulted:
            return True
        return self.waiting == 0 and self.finished - len(self.processing) >= self.jobs


@dataclass(eq=False)
class Form:
    id: str
    name: str
    payload: dict[str, Any] | None
    kudos: float
    state: FormState = "waiting"
    result: dict[str, Any] | None = None
    abort_count: int = 0
    worker: SimWorker | None = None
    due: float | None = None


@dataclass(eq=False)
class Interrogation:
    id: str
    user: SimUser
    image: bytes
    width: int
    height: int
    forms: list[Form]
    created: float
    expires_at: float
    slow_workers: bool = True
    queued_at: float = 0.0
    consumed: float = 0.0
    retrieved: bool = False
    """A status was served after every form had ended."""
    deleted: bool = False

    @property
    def final(self) -> bool:
        return all(form.state not in ("waiting", "processing") for form in self.forms)

    @property
    def end(self) -> RequestEnd:
        if self.deleted:
            return "cancelled"
        if self.overall_state == "faulted":
            return "faulted"
        return "finished" if self.final else "open"

    @property
    def overall_state(self) -> str:
        states = [form.state for form in self.forms]
        if all(s == "faulted" for s in states):
            return "faulted"
        if all(s == "done" for s in states):
            return "done"
        if "processing" in states:
            return "processing"
        if "waiting" in states:
            return "waiting"
        return "partial"


@dataclass
class SimStyle:
    id: str
    kind: Kind
    name: str
    info: str
    prompt: str
    params: dict[str, Any]
    models: list[str]
    tags: list[str]
    creator: str
    created: float
    use_count: int = 0
    public: bool = True
    nsfw: bool = False
    examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class LedgerEntry:
    """One accepted request as ``GET /_sim/requests`` reports it. ``ended_as`` is the state it
    was in when it expired (``end`` is then ``"expired"``)."""

    kind: str
    created: float
    finished_at: float | None
    end: RequestEnd
    retrieved: bool
    ended_as: RequestEnd | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "created": self.created,
            "finished_at": self.finished_at,
            "end": self.end,
            "retrieved": self.retrieved,
            "ended_as": self.ended_as,
        }


def ledger_entry(record: GenRequest | Interrogation) -> LedgerEntry:
    if isinstance(record, GenRequest):
        return LedgerEntry(record.kind, record.created, record.finished_at, record.end, record.retrieved)
    return LedgerEntry("alchemy", record.created, None, record.end, record.retrieved)


def seed_to_int(seed: str) -> int:
    if seed.isdigit():
        return int(seed) % 2**32
    return int.from_bytes(hashlib.sha256(seed.encode()).digest()[:4], "big")


def things_per_job(request: GenRequest) -> float:
    """Megapixelsteps of one image, or the tokens of one text."""
    if request.kind == "text":
        return float(request.params.get("max_length", 80))
    params = request.params
    return round(int(params["width"]) * int(params["height"]) * int(params["steps"]) / 1_000_000, 2)
