"""Alchemy on the simulated workers' side: forms handed out, finished, faulted and cancelled."""

from __future__ import annotations

from typing import Any

from horde_simulator._records import Form, Interrogation, SimWorker
from horde_simulator._state import State
from horde_simulator.config import SimUser


def queued_forms(state: State) -> int:
    with state.lock:
        return sum(
            1 for i in state.interrogations.values() for f in i.forms if f.state in ("waiting", "processing")
        )


def active_forms(state: State, user: SimUser) -> int:
    with state.lock:
        return sum(
            1
            for i in state.interrogations.values()
            if i.user is user
            for f in i.forms
            if f.state in ("waiting", "processing")
        )


def pop_form(state: State) -> tuple[Interrogation, Form, SimWorker] | None:
    with state.lock:
        state.purge_expired()
        now = state.now()
        workers = state.workers_of("interrogation")
        if not workers:
            return None
        for interrogation in state.interrogations.values():
            if now < interrogation.queued_at + state.knobs.worker_delay:
                continue
            for form in interrogation.forms:
                if form.state == "waiting":
                    form.state = "processing"
                    form.worker = state.next_worker(workers)
                    form.due = now + state.draw_duration()[0]
                    state.touch(interrogation)
                    return interrogation, form, form.worker
        return None


def finish_form(state: State, interrogation: Interrogation, form: Form, result: dict[str, Any]) -> bool:
    with state.lock:
        if form.state != "processing" or state.interrogations.get(interrogation.id) is not interrogation:
            return False
        form.state = "done"
        form.result = result
        burn = 2.0 if interrogation.slow_workers else 1.0
        interrogation.consumed = round(interrogation.consumed + form.kudos + burn, 2)
        interrogation.user.kudos = round(interrogation.user.kudos - form.kudos - burn, 2)
        if form.worker is not None:
            form.worker.requests_fulfilled += 1
            form.worker.kudos_rewards = round(form.worker.kudos_rewards + form.kudos, 2)
        state.touch(interrogation)
        return True


def fault_form(state: State, interrogation: Interrogation, form: Form) -> None:
    with state.lock:
        if form.state != "processing":
            return
        if form.worker is not None:
            form.worker.uncompleted_jobs += 1
        if form.abort_count > 2:
            form.state = "faulted"
        else:
            form.state = "waiting"
            form.abort_count += 1
            interrogation.queued_at = state.now()
    state.changed()


def cancel_interrogation(state: State, interrogation: Interrogation) -> None:
    with state.lock:
        interrogation.deleted = True
        for form in interrogation.forms:
            if form.state != "done":
                form.state = "cancelled"
                form.result = None
