"""Records → the JSON the server marshals, key for key (compare fixtures/horde/real)."""

from __future__ import annotations

import base64
from typing import Any

from horde_simulator import _forms
from horde_simulator._content import R2_PLACEHOLDER
from horde_simulator._records import GenRequest, Interrogation, Kind, SimStyle, SimWorker
from horde_simulator._state import VERSION, State
from horde_simulator._teams import worker_team
from horde_simulator.config import SimUser

IMAGE_NO_WORKER_MESSAGE = (
    "Warning: No available workers can fulfill this request. It will expire in 20 minutes unless a worker "
    "appears. Please confider reducing its size of the request or choosing a different model."
)
TEXT_NO_WORKER_MESSAGE = (
    "Warning: No available workers can fulfill this request. It will expire in 20 minutes. "
    "Consider reducing the amount of tokens to generate."
)


def r2_url(origin: str, image_id: str) -> str:
    return f"{origin}/_sim/r2/{image_id}.webp"


def check(state: State, request: GenRequest) -> dict[str, Any]:
    """The lite status.  ``is_possible`` is true while a job runs, whatever the workers now serve."""
    return {
        "finished": request.finished,
        "processing": len(request.processing),
        "restarted": request.restarted,
        "waiting": request.waiting,
        "done": request.done,
        "faulted": request.faulted,
        "wait_time": state.wait_time(request),
        "queue_position": state.queue_position(request),
        "kudos": float(request.consumed),
        "is_possible": state.can_serve(request) or bool(request.processing),
    }


def image_status(state: State, request: GenRequest, origin: str) -> dict[str, Any]:
    generations = []
    for gen in request.generations:
        data = gen.image or b""
        generations.append(
            {
                "img": r2_url(origin, gen.id) if request.r2 else base64.b64encode(data).decode("ascii"),
                "seed": str(gen.seed),
                "id": gen.id,
                "censored": gen.censorship is not None,
                "gen_metadata": [{"type": "censorship", "value": gen.censorship}] if gen.censorship else [],
                "worker_id": gen.worker.id,
                "worker_name": gen.worker.name,
                "model": gen.model,
                "state": "ok",
            }
        )
    return {"generations": generations, "shared": False, **check(state, request)}


def text_status(state: State, request: GenRequest) -> dict[str, Any]:
    generations = [
        {
            "text": gen.text or "",
            "seed": gen.seed,
            "gen_metadata": [],
            "worker_id": gen.worker.id,
            "worker_name": gen.worker.name,
            "model": gen.model,
            "state": "ok",
        }
        for gen in request.generations
    ]
    return {"generations": generations, **check(state, request)}


def interrogation_status(interrogation: Interrogation, origin: str) -> dict[str, Any]:
    forms = []
    for form in interrogation.forms:
        result = form.result
        if result is not None:
            result = {k: r2_url(origin, form.id) if v == R2_PLACEHOLDER else v for k, v in result.items()}
        forms.append({"form": form.name, "state": form.state, "result": result})
    return {"state": interrogation.overall_state, "forms": forms}


def _number(value: float) -> float | int:
    """Zero stays an int, as the server's untouched counters do."""
    return 0 if value == 0 else round(value, 2)


def user_details(state: State, user: SimUser, *, privileged: bool) -> dict[str, Any]:
    with state.lock:
        own = [r for r in state.requests.values() if r.user is user]
        images = [r for r in own if r.kind == "image"]
        texts = [r for r in own if r.kind == "text"]
        alchemy = [i for i in state.interrogations.values() if i.user is user]
        consumed = sum(r.consumed for r in own) + sum(i.consumed for i in alchemy)
        received = sum(amount for _, dest, amount in state.transfer_log if dest == user.id)
        gifted = sum(amount for src, _, amount in state.transfer_log if src == user.id)
        details: dict[str, Any] = {
            "username": user.username,
            "id": user.id,
            "kudos": float(user.kudos),
            "concurrency": user.concurrency,
            "worker_invited": 0,
            "moderator": user.moderator,
            "kudos_details": {
                "accumulated": _number(-consumed),
                "gifted": _number(-gifted),
                "donated": 0,
                "admin": 0,
                "received": _number(received),
                "recurring": 0,
                "awarded": 0,
                "styled": 0,
            },
            "worker_count": 0,
        }
        if privileged:
            details["worker_ids"] = []
        details["styles"] = [
            {"name": f"{s.creator}::style::{s.name}", "id": s.id, "type": s.kind}
            for s in state.styles
            if s.creator == user.username
        ]
        if privileged:
            details["sharedkey_ids"] = []
            # Every image and text request the server still holds (finished ones too, until they
            # expire), by kind; alchemy is not listed at all, and without any the key is absent.
            active: dict[str, list[str]] = {}
            for record in own:
                active.setdefault(record.kind, []).append(record.id)
            if active:
                details["active_generations"] = active
        details["trusted"] = user.trusted
        details["flagged"] = user.flagged
        if privileged:
            details["vpn"] = False
        details.update({"service": user.service, "education": user.education, "customizer": False})
        if privileged:
            details["special"] = False
        megapixelsteps = sum(r.finished * _mps(r) for r in images)
        tokens = sum(r.finished * int(r.params.get("max_length", 80)) for r in texts)
        details.update(
            {
                "deleted": user.deleted,
                "pseudonymous": False,
                "account_age": int(state.now() - state.user_created.get(user.id, state.started)),
                "usage": {"megapixelsteps": None, "requests": None},
                "contributions": {"megapixelsteps": None, "fulfillments": None},
                "records": {
                    "usage": {"megapixelsteps": _number(megapixelsteps), "tokens": tokens},
                    "contribution": {"megapixelsteps": 0, "tokens": 0},
                    "fulfillment": {"image": 0, "text": 0, "interrogation": 0},
                    "request": {
                        "image": sum(r.jobs for r in images),
                        "text": sum(r.jobs for r in texts),
                        "interrogation": sum(len(i.forms) for i in alchemy),
                    },
                    "style": {"image": 0, "text": 0, "interrogation": 0},
                },
            }
        )
        return details


def _mps(request: GenRequest) -> float:
    p = request.params
    return int(p["width"]) * int(p["height"]) * int(p["steps"]) / 1_000_000


def worker_details(state: State, worker: SimWorker) -> dict[str, Any]:
    if worker.type == "interrogation":
        declared = state.knobs.worker_threads
    else:
        declared = state.declared_threads("image" if worker.type == "image" else "text")
    threads = max(1, declared // max(1, len(state.workers_of(worker.type))))
    speed = max(state.knobs.average_speed(), 0.001)
    generated = float(round(worker.kudos_rewards))
    details: dict[str, Any] = {
        "requests_fulfilled": worker.requests_fulfilled,
        # Whole kudos as floats; nothing "generated" before a first job, and (like a worker
        # on AI-Horde 5.1.5 that has not been up an hour) no uptime reward yet.
        "kudos_rewards": generated,
        "kudos_details": {"generated": generated if worker.requests_fulfilled else None, "uptime": None},
        "threads": threads,
        "uptime": int(state.now() - worker.created),
        "maintenance_mode": False,
        "nsfw": True,
        "trusted": True,
        "flagged": False,
        "uncompleted_jobs": worker.uncompleted_jobs,
        "team": worker_team(worker),
        "bridge_agent": "AI Horde Simulator:1:https://github.com/Haidra-Org/AI-Horde",
    }
    if worker.type == "image":
        details["performance"] = f"{round(0.512 * 0.512 * 30 / speed, 1)} megapixelsteps per second"
        details["models"] = sorted(state.listed_models("image"))
        details.update(
            {
                "max_pixels": 4194304,
                "megapixelsteps_generated": float(round(worker.megapixelsteps)),
                "img2img": True,
                "painting": True,
                "post-processing": True,
                "lora": True,
                "controlnet": False,
                "sdxl_controlnet": False,
            }
        )
    elif worker.type == "text":
        details["performance"] = f"{round(80 / speed, 1)} tokens per second"
        details["models"] = sorted(state.listed_models("text"))
        details.update({"max_length": 512, "max_context_length": 8192})
    else:
        details["performance"] = f"{round(speed, 1)} seconds per form"
        details["forms"] = ["caption", "interrogation", "nsfw", "post-process"]
    details.update({"type": worker.type, "name": worker.name, "id": worker.id, "online": True})
    return _ordered_like_capture(details)


_WORKER_KEY_ORDER = (
    "requests_fulfilled", "kudos_rewards", "kudos_details", "performance", "threads", "uptime",
    "maintenance_mode", "nsfw", "trusted", "flagged", "uncompleted_jobs", "models", "forms", "team",
    "bridge_agent", "max_pixels", "megapixelsteps_generated", "img2img", "painting", "post-processing",
    "lora", "controlnet", "sdxl_controlnet", "max_length", "max_context_length", "type", "name", "id",
    "online",
)  # fmt: skip


def _ordered_like_capture(details: dict[str, Any]) -> dict[str, Any]:
    return {key: details[key] for key in _WORKER_KEY_ORDER if key in details}


def model_stats(state: State, kind: Kind, name: str) -> dict[str, Any]:
    with state.lock:
        workers = len(state.workers_of(kind))
        requests = [r for r in state.requests.values() if r.kind == kind and name in r.models]
        jobs = sum(r.waiting + len(r.processing) for r in requests)
        per_job = _mps_or_tokens(requests)
        speed = max(state.knobs.average_speed(), 0.001)
        threads = max(1, state.knobs.worker_threads)
        return {
            "name": name,
            "count": workers,
            "performance": round((0.512 * 0.512 * 30 if kind == "image" else 80) / speed, 2),
            "queued": round(jobs * per_job, 2),
            "jobs": float(jobs),
            "eta": int(jobs / threads * (speed + state.knobs.worker_delay)),
            "type": kind,
        }


def _mps_or_tokens(requests: list[GenRequest]) -> float:
    if not requests:
        return 0.0
    first = requests[0]
    return float(first.params.get("max_length", 80)) if first.kind == "text" else _mps(first)


def style(style_record: SimStyle) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": style_record.name,
        "info": style_record.info,
        "prompt": style_record.prompt,
        "params": dict(style_record.params),
        "public": style_record.public,
        "nsfw": style_record.nsfw,
        "tags": list(style_record.tags),
        "models": list(style_record.models),
        "id": style_record.id,
        "use_count": style_record.use_count,
        "creator": style_record.creator,
    }
    if style_record.kind == "image":
        data["examples"] = list(style_record.examples)
    return data


def heartbeat(state: State) -> dict[str, Any]:
    return {
        "message": state.knobs.heartbeat_message,
        "version": VERSION,
        "queue": state.queued_jobs("image") + state.queued_jobs("text"),
        "threads": state.knobs.worker_threads * 3,
        "active_count": len(state.workers),
        "db_connection": True,
    }


def performance(state: State) -> dict[str, Any]:
    threads = state.knobs.worker_threads
    return {
        "queued_requests": state.queued_jobs("image"),
        "queued_text_requests": state.queued_jobs("text"),
        "worker_count": len(state.workers_of("image")),
        "text_worker_count": len(state.workers_of("text")),
        "thread_count": threads,
        "text_thread_count": threads,
        "queued_megapixelsteps": round(state.queued_things("image"), 2),
        "past_minute_megapixelsteps": 0.0,
        "queued_forms": float(_forms.queued_forms(state)),
        "interrogator_count": len(state.workers_of("interrogation")),
        "interrogator_thread_count": threads,
        "queued_tokens": float(state.queued_things("text")),
        "past_minute_tokens": 0.0,
    }


NEWS: tuple[dict[str, Any], ...] = (
    {
        "date_published": "2025-12-16",
        "newspiece": "You are talking to the AI Horde simulator: images, texts and alchemy are made locally "
        "by simulated workers, and no kudos are spent on the real Horde.",
        "importance": "Information",
        "tags": ["simulator"],
        "title": "Local simulator",
        "more_info_urls": ["https://aihorde.net"],
    },
    {
        "date_published": "2025-06-25",
        "newspiece": "Simulated workers serve only the models they announce: a request for another one is "
        "accepted with a NoAvailableWorker warning and waits, as on the real Horde.",
        "importance": "Workers",
        "tags": ["simulator", "workers"],
        "title": "Simulated workers",
        "more_info_urls": [],
    },
)
