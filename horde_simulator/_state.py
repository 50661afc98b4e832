"""The simulator's world: users, requests and their jobs, workers, styles and stored images.

All methods take ``lock`` (re-entrant), so a test thread may call them while the server runs
in another thread; handlers also hold it while they turn records into JSON.  The records are in
``_records``; how the queue is reported in ``_queue``; prices and charges in ``_kudos``.
"""

from __future__ import annotations

import copy
import itertools
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from horde_simulator import _kudos as kudos
from horde_simulator import _painting as painting
from horde_simulator import _queue as queue
from horde_simulator._faults import FaultPlan
from horde_simulator._records import (
    Generation,
    GenRequest,
    Interrogation,
    Job,
    Kind,
    LedgerEntry,
    SimStyle,
    SimWorker,
    WorkerType,
    ledger_entry,
    seed_to_int,
    things_per_job,
)
from horde_simulator._styles import make_styles
from horde_simulator.config import Knobs, SimulatorConfig, SimUser, anonymous_user

VERSION = "5.1.5"
STILL_CLOCK_GRACE_S = 5.0


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
        self._seq = itertools.count()
        self.queue_board = queue.QueueBoard()
        self.answer_cache: dict[tuple[object, ...], tuple[tuple[float, float], Any]] = {}
        """Answers the server keeps for a while (``check``, ``find_user``): key → (time, answer)."""
        self.workers = self._make_workers()
        self.styles = make_styles(self.new_id, self.started)
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

    def next_seq(self) -> int:
        return next(self._seq)

    def stamp(self) -> tuple[float, float]:
        """Now on the simulator's clock and on the machine's: see :meth:`age`."""
        return self.now(), time.monotonic()

    def age(self, then: tuple[float, float]) -> float:
        """Seconds since ``then`` on the simulator's clock; on a :class:`ManualClock` nobody moves,
        what the server keeps also expires ``STILL_CLOCK_GRACE_S`` real seconds later than that."""
        sim_now, real_now = self.stamp()
        return max(sim_now - then[0], real_now - then[1] - STILL_CLOCK_GRACE_S)

    def expire_caches(self) -> None:
        """Forget what the server keeps for a while (``find_user`` and ``users/{id}`` answers,
        ``check`` answers, the queue snapshot): as if their time were up."""
        with self.lock:
            self.answer_cache.clear()
            self.queue_board.forget()

    def cached(self, key: tuple[object, ...], lifetime: float, make: Callable[[], Any]) -> Any:
        """``make()``'s answer, or the one made for ``key`` less than ``lifetime`` ago."""
        with self.lock:
            kept = self.answer_cache.get(key)
            if kept is not None and lifetime > 0 and self.age(kept[0]) < lifetime:
                return kept[1]
            answer = make()
            if lifetime > 0:
                self.answer_cache[key] = (self.stamp(), answer)
            return answer

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

    def touch(self, record: GenRequest | Interrogation) -> None:
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

    def served_models(self, kind: Kind) -> tuple[str, ...]:
        """What the workers serve: the ``served_*_models`` knob, else the advertised models."""
        knobs = self.knobs
        if kind == "image":
            served = knobs.served_image_models
            return served if served is not None else knobs.advertised_image_models
        served = knobs.served_text_models
        return served if served is not None else knobs.advertised_text_models

    def listed_models(self, kind: Kind) -> list[str]:
        """The models the simulated workers announce (and that ``status/models`` lists)."""
        with self.lock:
            return list(self.served_models(kind))

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
            if request.kind == "image" and not painting.worker_can_take(request.source_processing, served):
                return False
            return bool(served) if not request.models else any(m in served for m in request.models)

    def pick_model(self, request: GenRequest) -> str:
        served = self.served_models(request.kind)
        for model in request.models:
            if model in served:
                return model
        return self.listed_models(request.kind)[0] if self.listed_models(request.kind) else "unknown"

    def next_worker(self, workers: Sequence[SimWorker]) -> SimWorker:
        kind = workers[0].type
        turn = self._round_robin.get(kind, 0)
        self._round_robin[kind] = turn + 1
        return workers[turn % len(workers)]

    def draw_duration(self, thread: int = 0) -> tuple[float, float | None]:
        """A pop's seconds, and what its worker expects (``None``: the average speed)."""
        knobs = self.knobs
        with self.lock:
            if knobs.worker_speeds:
                expected = knobs.worker_speeds[thread % len(knobs.worker_speeds)]
                jitter = knobs.speed_jitter
                return expected * self.rng.uniform(1 - jitter, 1 + jitter), expected
            speed = knobs.speed
            return (self.rng.uniform(*speed) if isinstance(speed, tuple) else float(speed)), None

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
                    total += (r.waiting + len(r.processing)) * things_per_job(r)
            return total

    def declared_threads(self, kind: Kind) -> int:
        """The threads the workers of ``kind`` announce: ``worker_threads × worker_batch``."""
        return self.knobs.worker_threads * self.knobs.worker_batch if self.workers_of(kind) else 0

    def queue(self, kind: Kind) -> list[GenRequest]:
        """The requests of ``kind`` with jobs to hand out, in the order workers get them."""
        with self.lock:
            live = (r for r in self.requests.values() if r.kind == kind and not r.faulted)
            return [r for r in queue.queue_order(live) if isinstance(r, GenRequest)]

    def _queue_stats(self, request: GenRequest) -> tuple[int, int]:
        if request.waiting <= 0 or request.faulted:
            return queue.NOT_QUEUED
        return self.queue_board.stats(
            request.kind,
            request.id,
            stamp=self.stamp(),
            age=self.age,
            refresh=self.knobs.queue_refresh,
            live=lambda: self.queue(request.kind),
        )

    def queue_position(self, request: GenRequest) -> int:
        with self.lock:
            return self._queue_stats(request)[0] + 1

    def wait_time(self, request: GenRequest) -> int:
        """The server's estimate (see ``_queue``): the queue up to this request, then its jobs."""
        with self.lock:
            now = self.now()
            per_job = self.knobs.average_speed()
            _, jobs_ahead = self._queue_stats(request)
            running_left = [
                job.started + (per_job if job.expected is None else job.expected) - now
                for job in request.processing
            ]
            return queue.wait_time(jobs_ahead, self.declared_threads(request.kind), per_job, running_left)

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

    # -- the simulated workers' side --------------------------------------------------------

    def pop_jobs(self, kind: Kind, thread: int = 0) -> list[Job]:
        """What one simulated worker pops: up to ``worker_batch`` jobs of the first request in the
        queue it can serve (one with ``disable_batching``); they start and end together.
        ``thread`` picks the speed among ``worker_speeds``."""
        with self.lock:
            self.purge_expired()
            now = self.now()
            for request in self.queue(kind):
                if now < request.queued_at + self.knobs.worker_delay or not self.can_serve(request):
                    continue
                batch = 1 if request.disable_batching else self.knobs.worker_batch
                amount = min(batch, request.waiting)
                request.waiting -= amount
                worker = self.next_worker(self.allowed_workers(request))
                model = self.pick_model(request)
                duration, expected = self.draw_duration(thread)
                due = now + duration
                jobs = [
                    Job(self.new_id(), request, worker, model, self._next_seed(request), now, due, expected)
                    for _ in range(amount)
                ]
                request.processing.extend(jobs)
                self.touch(request)
                return jobs
            return []

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
            self.charge(request, kudos.generation_cost(request, generation))
            worker = job.worker
            worker.requests_fulfilled += 1
            worker.kudos_rewards = round(worker.kudos_rewards + generation.kudos, 2)
            if request.kind == "image":
                worker.megapixelsteps += things_per_job(request)
            else:
                worker.tokens += int(request.params.get("max_length", 80))
            self.touch(request)
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

    def charge(self, request: GenRequest, amount: float) -> None:
        """Charge ``amount`` to the request and its user; the server keeps whole kudos."""
        with self.lock:
            before = request.consumed
            request.consumed = kudos.charged(before, amount)
            request.user.kudos = round(request.user.kudos - (request.consumed - before), 2)

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

    # -- cancelling -------------------------------------------------------------------------

    def cancel_request(self, request: GenRequest) -> None:
        """DELETE, as the server does it: nothing more is handed out (``waiting`` 0) and, for
        images, ``jobs`` becomes the images delivered so far, so the request is done once the jobs
        still on workers are delivered (and charged).  A text request keeps its ``jobs``."""
        with self.lock:
            request.waiting = 0
            request.cancelled = True
            if request.kind == "image":
                request.jobs = request.finished
            self._mark_finished(request)

    # -- styles -----------------------------------------------------------------------------

    def find_style(self, kind: Kind | None, key: str) -> SimStyle | None:
        """By id, by ``alias#id::style::name``, or by plain name."""
        with self.lock:
            for style in self.styles:
                if kind is not None and style.kind != kind:
                    continue
                if key in (style.id, style.name, f"{style.creator}::style::{style.name}"):
                    return style
            return None
