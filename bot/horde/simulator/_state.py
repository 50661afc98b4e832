"""The simulator's world: users, requests and their jobs, workers, styles and stored images.

All methods take ``lock`` (re-entrant), so a test thread may call them while the server runs
in another thread; handlers also hold it while they turn records into JSON.
"""

from __future__ import annotations

import copy
import hashlib
import math
import random
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from bot.horde.simulator._errors import bad_request
from bot.horde.simulator._faults import FaultPlan
from bot.horde.simulator.config import Knobs, SimulatorConfig, SimUser, anonymous_user

Kind = Literal["image", "text"]
RequestEnd = Literal["open", "finished", "faulted", "cancelled", "expired"]
WorkerType = Literal["image", "text", "interrogation"]
FormState = Literal["waiting", "processing", "done", "cancelled", "faulted"]

VERSION = "5.1.5"


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
    queued_at: float = 0.0
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
        return self.faulted or (self.waiting == 0 and self.finished >= self.jobs)


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


class State:
    def __init__(self, config: SimulatorConfig) -> None:
        self.lock = threading.RLock()
        self.clock = config.clock
        self.knobs: Knobs = copy.deepcopy(config.knobs)
        self.faults: FaultPlan = config.faults
        self.rng = random.Random(config.seed)
        self.started = self.clock()
        self.users: dict[int, SimUser] = {}
        self.requests: dict[str, GenRequest] = {}
        self.interrogations: dict[str, Interrogation] = {}
        self.idempotency: dict[tuple[int, str], tuple[int, int]] = {}
        self.recent_transfers: dict[tuple[int, int], float] = {}
        self.transfer_log: list[tuple[int, int, int]] = []
        self.user_created: dict[int, float] = {}
        self._r2: dict[str, tuple[bytes, float]] = {}
        self.expired: dict[str, LedgerEntry] = {}
        """Requests the janitor (or ``expire``) removed, as they were then: tests check that
        nothing was left behind unobserved."""
        self._round_robin: dict[str, int] = {}
        self._listeners: list[Callable[[], None]] = []
        self.workers = self._make_workers()
        self.styles = self._make_styles()
        users = [copy.copy(user) for user in config.users]
        if not any(user.is_anon for user in users):
            users.insert(0, anonymous_user())
        for user in users:
            self.add_user(user)

    # -- plumbing ---------------------------------------------------------------------------

    def now(self) -> float:
        return self.clock()

    def new_id(self) -> str:
        with self.lock:
            return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def on_change(self, listener: Callable[[], None]) -> None:
        """``listener`` is called when work may have appeared (the worker pool wakes up)."""
        self._listeners.append(listener)

    def changed(self) -> None:
        for listener in self._listeners:
            listener()

    # -- users -----------------------------------------------------------------------------

    def add_user(self, user: SimUser) -> SimUser:
        with self.lock:
            if user.id in self.users:
                raise ValueError(f"a user with id {user.id} already exists")
            if any(other.api_key == user.api_key for other in self.users.values()):
                raise ValueError("a user with that api key already exists")
            self.users[user.id] = user
            self.user_created[user.id] = self.now()
            return user

    def next_user_id(self) -> int:
        with self.lock:
            return max(self.users, default=0) + 1

    def user_by_key(self, api_key: str) -> SimUser | None:
        with self.lock:
            return next((u for u in self.users.values() if u.api_key == api_key), None)

    def user_by_username(self, username: str) -> SimUser | None:
        with self.lock:
            return next((u for u in self.users.values() if u.username == username), None)

    def transfer_kudos(
        self, source: SimUser, username: str, amount: int, idempotency_key: str | None
    ) -> float:
        """``POST /v2/kudos/transfer`` after the key check, with the server's rcs and order."""
        with self.lock:
            dest = self.user_by_username(username)
            if dest is None:
                raise bad_request("Invalid target username.", "InvalidTargetUsername")
            if dest.is_anon:
                raise bad_request(
                    "Tried to burn kudos via sending to Anonymous. Assuming PEBKAC and aborting.",
                    "KudosTransferToAnon",
                )
            if dest is source:
                raise bad_request("Cannot send kudos to yourself, ya monkey!", "KudosTransferToSelf")
            now = self.now()
            reverse = self.recent_transfers.get((dest.id, source.id))
            if reverse is not None and now - reverse < 60:
                raise bad_request(
                    "This user transferred kudos to you very recently. Please wait at least 1 minute.",
                    "TooFastKudosTransfers",
                )
            _check_accounts(source, dest)
            if amount < 0:
                raise bad_request("Nice try...", "NegativeKudosTransfer")
            if amount == 0:
                raise bad_request("Transfer amount must be positive.", "InvalidKudosTransferAmount")
            if idempotency_key is not None:
                prior = self.idempotency.get((source.id, idempotency_key))
                if prior is not None:
                    if prior != (dest.id, amount):
                        raise bad_request(
                            "Idempotency key was already used with different transfer parameters.",
                            "IdempotencyKeyConflict",
                        )
                    return float(amount)
            if amount > source.kudos:
                raise bad_request("Not enough kudos.", "KudosTransferNotEnough")
            source.kudos = round(source.kudos - amount, 2)
            dest.kudos = round(dest.kudos + amount, 2)
            self.transfer_log.append((source.id, dest.id, amount))
            self.recent_transfers[(source.id, dest.id)] = now
            if idempotency_key is not None:
                self.idempotency[(source.id, idempotency_key)] = (dest.id, amount)
            return float(amount)

    # -- records and lifetimes ---------------------------------------------------------------

    def add_request(self, request: GenRequest) -> None:
        with self.lock:
            self.requests[request.id] = request
        self.changed()

    def add_interrogation(self, interrogation: Interrogation) -> None:
        with self.lock:
            self.interrogations[interrogation.id] = interrogation
        self.changed()

    def get_request(self, request_id: str, kind: Kind) -> GenRequest | None:
        with self.lock:
            self.purge_expired()
            found = self.requests.get(request_id)
            return found if found is not None and found.kind == kind else None

    def get_interrogation(self, request_id: str) -> Interrogation | None:
        with self.lock:
            self.purge_expired()
            return self.interrogations.get(request_id)

    def expire(self, request_id: str) -> bool:
        """Forget a request now, as the janitor does when its lifetime is over."""
        with self.lock:
            record: GenRequest | Interrogation | None = self.requests.pop(request_id, None)
            if record is None:
                record = self.interrogations.pop(request_id, None)
            if record is None:
                return False
            self._remember_expired(record)
            return True

    def purge_expired(self) -> None:
        with self.lock:
            now = self.now()
            stores: tuple[dict[str, GenRequest] | dict[str, Interrogation], ...] = (
                self.requests,
                self.interrogations,
            )
            for store in stores:
                for key in [k for k, record in store.items() if now >= record.expires_at]:
                    self._remember_expired(store.pop(key))
            for key in [k for k, (_, expires) in self._r2.items() if now >= expires]:
                del self._r2[key]

    def _remember_expired(self, record: GenRequest | Interrogation) -> None:
        entry = ledger_entry(record)
        self.expired[record.id] = LedgerEntry(
            entry.kind, entry.created, entry.finished_at, "expired", entry.retrieved, entry.end
        )

    def ledger(self) -> dict[str, LedgerEntry]:
        """Every request accepted since start (image, text and alchemy), expired ones included."""
        with self.lock:
            self.purge_expired()
            entries = dict(self.expired)
            records: list[GenRequest | Interrogation] = [*self.requests.values()]
            for record in [*records, *self.interrogations.values()]:
                entries[record.id] = ledger_entry(record)
            return entries

    def orphans(self) -> dict[str, LedgerEntry]:
        """Requests nobody is done with: still open, or finished with results never fetched.

        Ended requests are not orphans when they were cancelled (DELETE), faulted, expired, or
        finished and their final status was served.
        """
        return {
            request_id: entry
            for request_id, entry in self.ledger().items()
            if entry.end == "open" or (entry.end == "finished" and not entry.retrieved)
        }

    def _touch(self, record: GenRequest | Interrogation) -> None:
        record.expires_at = max(record.expires_at, self.now() + self.knobs.request_lifetime)

    def store_image(self, image_id: str, data: bytes) -> None:
        with self.lock:
            self._r2[image_id] = (data, self.now() + self.knobs.r2_lifetime)

    def get_image(self, image_id: str) -> bytes | None:
        with self.lock:
            self.purge_expired()
            entry = self._r2.get(image_id)
            return entry[0] if entry else None

    # -- workers and models -----------------------------------------------------------------

    def _make_workers(self) -> list[SimWorker]:
        names: list[tuple[str, WorkerType]] = [
            ("Sim Dreamer 1", "image"),
            ("Sim Dreamer 2", "image"),
            ("Sim Scribe", "text"),
            ("Sim Alchemist", "interrogation"),
        ]
        return [SimWorker(self.new_id(), name, kind, self.started) for name, kind in names]

    def workers_of(self, kind: WorkerType) -> list[SimWorker]:
        return [worker for worker in self.workers if worker.type == kind]

    def served_models(self, kind: Kind) -> tuple[str, ...] | None:
        return self.knobs.served_image_models if kind == "image" else self.knobs.served_text_models

    def listed_models(self, kind: Kind) -> list[str]:
        """The models the simulated workers announce (and that ``status/models`` lists)."""
        with self.lock:
            served = self.served_models(kind)
            if served is not None:
                return list(served)
            advertised = (
                self.knobs.advertised_image_models if kind == "image" else self.knobs.advertised_text_models
            )
            extra = [m for r in self.requests.values() if r.kind == kind and not r.done for m in r.models]
            return list(dict.fromkeys([*advertised, *extra]))

    def allowed_workers(self, request: GenRequest) -> list[SimWorker]:
        candidates = self.workers_of(request.kind)
        if not request.workers:
            return candidates
        return [w for w in candidates if (w.id in request.workers) != request.worker_blacklist]

    def can_serve(self, request: GenRequest) -> bool:
        with self.lock:
            if not self.allowed_workers(request):
                return False
            served = self.served_models(request.kind)
            if served is None:
                return True
            return bool(served) if not request.models else any(m in served for m in request.models)

    def pick_model(self, request: GenRequest) -> str:
        served = self.served_models(request.kind)
        for model in request.models:
            if served is None or model in served:
                return model
        return self.listed_models(request.kind)[0] if self.listed_models(request.kind) else "unknown"

    def _next_worker(self, workers: Sequence[SimWorker]) -> SimWorker:
        kind = workers[0].type
        turn = self._round_robin.get(kind, 0)
        self._round_robin[kind] = turn + 1
        return workers[turn % len(workers)]

    def draw_duration(self) -> float:
        speed = self.knobs.speed
        with self.lock:
            return self.rng.uniform(*speed) if isinstance(speed, tuple) else float(speed)

    # -- queue statistics -------------------------------------------------------------------

    def queued_jobs(self, kind: Kind) -> int:
        with self.lock:
            return sum(r.waiting + len(r.processing) for r in self.requests.values() if r.kind == kind)

    def queued_things(self, kind: Kind) -> float:
        """Megapixelsteps (images) or tokens (text) still to make."""
        with self.lock:
            total = 0.0
            for r in self.requests.values():
                if r.kind == kind:
                    total += (r.waiting + len(r.processing)) * _things_per_job(r)
            return total

    def queued_forms(self) -> int:
        with self.lock:
            return sum(
                1
                for i in self.interrogations.values()
                for f in i.forms
                if f.state in ("waiting", "processing")
            )

    def _waiting_before(self, request: GenRequest) -> list[GenRequest]:
        ahead: list[GenRequest] = []
        for other in self.requests.values():
            if other is request:
                break
            if other.kind == request.kind and other.waiting > 0 and not other.faulted:
                ahead.append(other)
        return ahead

    def queue_position(self, request: GenRequest) -> int:
        with self.lock:
            return 0 if request.waiting == 0 else len(self._waiting_before(request)) + 1

    def wait_time(self, request: GenRequest) -> int:
        """Seconds until every job of the request should be done, from the queue and knobs."""
        with self.lock:
            if request.done:
                return 0
            now = self.now()
            per_job = self.knobs.average_speed() + self.knobs.worker_delay
            threads = max(1, self.knobs.worker_threads)
            ahead = sum(r.waiting for r in self._waiting_before(request))
            running_in_lane = sum(len(r.processing) for r in self.requests.values() if r.kind == request.kind)
            rounds = math.ceil((running_in_lane + ahead + request.waiting) / threads)
            queued = rounds * per_job if request.waiting else 0.0
            running = max((job.due - now for job in request.processing), default=0.0)
            return math.ceil(max(queued, running, 0.0))

    def waiting_n(self, user: SimUser, kind: Kind, models: Sequence[str]) -> int:
        """What the concurrency limit counts: the user's images or texts not yet picked up."""
        with self.lock:
            total = 0
            for r in self.requests.values():
                if r.user is not user or r.kind != kind or r.faulted or r.waiting < 1:
                    continue
                if user.is_anon and models and not set(models) & set(r.models):
                    continue
                total += r.waiting
            return total

    def active_forms(self, user: SimUser) -> int:
        with self.lock:
            return sum(
                1
                for i in self.interrogations.values()
                if i.user is user
                for f in i.forms
                if f.state in ("waiting", "processing")
            )

    # -- the simulated workers' side --------------------------------------------------------

    def pop_job(self, kind: Kind) -> Job | None:
        """Hand the oldest eligible waiting image or text to a worker."""
        with self.lock:
            self.purge_expired()
            now = self.now()
            for request in self.requests.values():
                if request.kind != kind or request.faulted or request.waiting <= 0:
                    continue
                if now < request.queued_at + self.knobs.worker_delay or not self.can_serve(request):
                    continue
                request.waiting -= 1
                job = Job(
                    id=self.new_id(),
                    request=request,
                    worker=self._next_worker(self.allowed_workers(request)),
                    model=self.pick_model(request),
                    seed=self._next_seed(request),
                    started=now,
                    due=now + self.draw_duration(),
                )
                request.processing.append(job)
                self._touch(request)
                return job
            return None

    def _next_seed(self, request: GenRequest) -> int:
        index = request.seeds_issued
        request.seeds_issued += 1
        if request.kind == "text":
            return self.rng.randrange(2**31)
        given = request.params.get("seed")
        if given is None:
            return self.rng.randrange(2**32)
        seed = seed_to_int(str(given)) + int(request.params.get("seed_variation") or 0) * index
        while seed >= 2**32:
            seed >>= 32
        return seed

    def finish_job(self, job: Job, generation: Generation) -> bool:
        """Deliver a generation; ``False`` if the request is gone (expired) meanwhile."""
        with self.lock:
            request = job.request
            if job in request.processing:
                request.processing.remove(job)
            if self.requests.get(request.id) is not request:
                return False
            request.generations.append(generation)
            self._mark_finished(request)
            request.consumed = round(request.consumed + generation.kudos, 2)
            request.user.kudos = round(request.user.kudos - generation.kudos, 2)
            worker = job.worker
            worker.requests_fulfilled += 1
            worker.kudos_rewards = round(worker.kudos_rewards + generation.kudos, 2)
            if request.kind == "image":
                worker.megapixelsteps += _things_per_job(request)
            else:
                worker.tokens += int(request.params.get("max_length", 80))
            self._touch(request)
            return True

    def fault_job(self, job: Job) -> None:
        """A worker reported failure: the job restarts, or the request faults after 3 failures."""
        with self.lock:
            request = job.request
            if job in request.processing:
                request.processing.remove(job)
            job.worker.uncompleted_jobs += 1
            request.restarted += 1
            request.fault_count += 1
            if request.fault_count > 2:
                request.faulted = True
                request.waiting = 0
                self._mark_finished(request)
            elif not request.cancelled:
                request.waiting += 1
                request.queued_at = self.now()
        self.changed()

    def _mark_finished(self, request: GenRequest) -> None:
        if request.done and request.finished_at is None:
            request.finished_at = self.now()

    def should_fault_job(self) -> bool:
        with self.lock:
            if self.knobs.fail_next_jobs > 0:
                self.knobs.fail_next_jobs -= 1
                return True
            return (
                self.knobs.job_fault_probability > 0 and self.rng.random() < self.knobs.job_fault_probability
            )

    def censorship_for(self, request: GenRequest) -> str | None:
        """``"csam"`` whatever the flags; ``"nsfw"`` only when the request is SFW and asks to censor."""
        prompt = request.prompt.lower()
        with self.lock:
            if any(word and word.lower() in prompt for word in self.knobs.csam_words):
                return "csam"
            if request.nsfw or not request.censor_nsfw:
                return None
            if any(word and word.lower() in prompt for word in self.knobs.censor_words):
                return "nsfw"
            chance = self.knobs.censor_probability
            return "nsfw" if chance > 0 and self.rng.random() < chance else None

    def pop_form(self) -> tuple[Interrogation, Form, SimWorker] | None:
        with self.lock:
            self.purge_expired()
            now = self.now()
            workers = self.workers_of("interrogation")
            if not workers:
                return None
            for interrogation in self.interrogations.values():
                if now < interrogation.queued_at + self.knobs.worker_delay:
                    continue
                for form in interrogation.forms:
                    if form.state == "waiting":
                        form.state = "processing"
                        form.worker = self._next_worker(workers)
                        form.due = now + self.draw_duration()
                        self._touch(interrogation)
                        return interrogation, form, form.worker
            return None

    def finish_form(self, interrogation: Interrogation, form: Form, result: dict[str, Any]) -> bool:
        with self.lock:
            if form.state != "processing" or self.interrogations.get(interrogation.id) is not interrogation:
                return False
            form.state = "done"
            form.result = result
            burn = 2.0 if interrogation.slow_workers else 1.0
            interrogation.consumed = round(interrogation.consumed + form.kudos + burn, 2)
            interrogation.user.kudos = round(interrogation.user.kudos - form.kudos - burn, 2)
            if form.worker is not None:
                form.worker.requests_fulfilled += 1
                form.worker.kudos_rewards = round(form.worker.kudos_rewards + form.kudos, 2)
            self._touch(interrogation)
            return True

    def fault_form(self, interrogation: Interrogation, form: Form) -> None:
        with self.lock:
            if form.state != "processing":
                return
            if form.worker is not None:
                form.worker.uncompleted_jobs += 1
            if form.abort_count > 2:
                form.state = "faulted"
            else:
                form.state = "waiting"
                form.abort_count += 1
                interrogation.queued_at = self.now()
        self.changed()

    # -- cancelling -------------------------------------------------------------------------

    def cancel_request(self, request: GenRequest) -> None:
        """DELETE: no more jobs are handed out; images also stop waiting for in-flight ones."""
        with self.lock:
            request.waiting = 0
            request.cancelled = True
            if request.kind == "image":
                request.jobs = request.finished
            self._mark_finished(request)

    def cancel_interrogation(self, interrogation: Interrogation) -> None:
        with self.lock:
            interrogation.deleted = True
            for form in interrogation.forms:
                if form.state != "done":
                    form.state = "cancelled"
                    form.result = None

    # -- styles -----------------------------------------------------------------------------

    def _make_styles(self) -> list[SimStyle]:
        return [
            SimStyle(
                self.new_id(),
                "image",
                "sim-photoreal",
                "Photorealistic pictures, sharp focus.",
                "{p}, photorealistic, sharp focus{np}",
                {"steps": 25, "cfg_scale": 6.0, "sampler_name": "k_dpmpp_2m", "karras": True},
                ["stable_diffusion"],
                ["photorealistic"],
                "alice#1",
                self.started,
                use_count=12,
                examples=[],
            ),
            SimStyle(
                self.new_id(),
                "image",
                "sim-sketch",
                "Pencil sketches on paper.",
                "pencil sketch of {p}{np}",
                {"steps": 20, "width": 768, "height": 512, "sampler_name": "k_euler_a"},
                ["Deliberate"],
                ["sketch", "monochrome"],
                "bob#2",
                self.started + 1,
                use_count=3,
                examples=[],
            ),
            SimStyle(
                self.new_id(),
                "text",
                "sim-storyteller",
                "Short bedtime stories.",
                "Tell a short story about {p}",
                {"max_length": 120, "temperature": 0.8},
                ["koboldcpp/SimLlama-8B"],
                ["story"],
                "alice#1",
                self.started,
                use_count=5,
            ),
        ]

    def find_style(self, kind: Kind | None, key: str) -> SimStyle | None:
        """By id, by ``alias#id::style::name``, or by plain name."""
        with self.lock:
            for style in self.styles:
                if kind is not None and style.kind != kind:
                    continue
                if key in (style.id, style.name, f"{style.creator}::style::{style.name}"):
                    return style
            return None


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


def _check_accounts(source: SimUser, dest: SimUser) -> None:
    if source.flagged:
        raise bad_request(
            "The target account has been flagged for suspicious activity "
            "and tranferring kudos to them is blocked.",
            "SourceAccountFlagged",
        )
    if source.education:
        raise bad_request("Education accounts cannot transfer kudos away", "EducationCannotSendKudos")
    if dest.flagged:
        raise bad_request(
            "Your account has been flagged for suspicious activity. Please contact the mods.",
            "TargetAccountFlagged",
        )
    if dest.deleted:
        raise bad_request(
            "This destination account has been scheduled for deletion and is disabled", "DeletedUser"
        )
    if source.deleted:
        raise bad_request(
            "This source account has been scheduled for deletion and is disabled", "DeletedUser"
        )


def seed_to_int(seed: str) -> int:
    if seed.isdigit():
        return int(seed) % 2**32
    return int.from_bytes(hashlib.sha256(seed.encode()).digest()[:4], "big")


def _things_per_job(request: GenRequest) -> float:
    if request.kind == "text":
        return float(request.params.get("max_length", 80))
    params = request.params
    return round(int(params["width"]) * int(params["height"]) * int(params["steps"]) / 1_000_000, 2)
