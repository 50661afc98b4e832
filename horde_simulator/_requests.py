"""Turning validated async bodies into requests: the checks, defaults and prices of §1.1–§1.6."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from bot.horde.apimodels.styles import image_style_prompt, text_style_prompt
from horde_simulator import _errors as err
from horde_simulator import _images
from horde_simulator import _kudos as kudos
from horde_simulator import _painting as painting
from horde_simulator._records import GenRequest, Kind
from horde_simulator._schema import KNOWN_POST_PROCESSORS, KNOWN_UPSCALERS
from horde_simulator._state import State
from horde_simulator.config import SimUser

IMAGE_DEFAULTS: dict[str, Any] = {
    "n": 1,
    "steps": 30,
    "width": 512,
    "height": 512,
    "sampler_name": "k_euler_a",
    "cfg_scale": 5.0,
    "karras": True,
}
TEXT_DEFAULTS: dict[str, Any] = {"n": 1, "max_length": 80, "max_context_length": 2048}
ANONYMOUS_PRIORITY = -1e9
BANNED_CLIENT_AGENTS = frozenset({"My-Project:v0.0.1:My-Contact"})
_NO_CONTROLNET = ("sdxl", "cascade", "flux", "qwen", "z-image")
_NO_HIRES_FIX = ("flux", "qwen", "z-image")


def apply_style(state: State, kind: Kind, body: dict[str, Any]) -> None:
    """Replace prompt, models and params by the style's, keeping ``n`` (and the size if unset)."""
    key = body.get("style")
    if key is None:
        return
    found = state.find_style(kind, str(key))
    if found is None:
        raise err.thing_not_found("Style", str(key))
    user_params: Mapping[str, Any] = body.get("params") or {}
    prompt = str(body.get("prompt", ""))
    # The server's own template rules (horde/apis/v2/stable.py and kobold.py, apply_style).
    body["prompt"] = (
        image_style_prompt(found.prompt, prompt)
        if kind == "image"
        else text_style_prompt(found.prompt, prompt)
    )
    body["models"] = list(found.models)
    params = dict(found.params)
    for name in ("n", "width", "height") if kind == "image" else ("n",):
        if name in user_params and (name == "n" or name not in found.params):
            params[name] = user_params[name]
    body["params"] = params
    with state.lock:
        found.use_count += 1


def check_proxied_account(body: Mapping[str, Any], user: SimUser) -> None:
    if body.get("proxied_account") and not user.service:
        raise err.bad_request(
            "Only service accounts can provide a proxied_account value.", "OnlyServiceAccountProxy"
        )


def check_workers(state: State, worker_ids: list[str]) -> None:
    known = {worker.id for worker in state.workers}
    for worker_id in worker_ids:
        if worker_id not in known:
            raise err.worker_not_found(worker_id)


def check_concurrency(state: State, user: SimUser, kind: Kind, models: list[str], n: int) -> None:
    count = state.waiting_n(user, kind, models) + n
    if count > user.concurrency:
        raise err.too_many_prompts(count, user.concurrency)


def check_image_request(
    body: Mapping[str, Any], params: Mapping[str, Any], user: SimUser, client_agent: str
) -> None:
    """The rc-bearing checks of ``ImageAsyncGenerate.validate``, in the server's order."""
    models = [m.lower() for m in body.get("models") or []]
    if body.get("disable_batching") and params.get("n", 1) > 1 and not user.trusted:
        raise err.forbidden(
            "Only Trusted users and Patreons can disable batching for n > 1.", "RequiresTrust"
        )
    if not body.get("source_image") and body.get("source_mask"):
        raise err.bad_request(
            "Please do not pass a source_mask unless you are sending a source_image as well",
            "SourceMaskUnnecessary",
        )
    if "control_type" in params and not body.get("source_image"):
        raise err.bad_request("Controlnet Requires a source image.", "ControlNetSourceMissing")
    painting.check_submit(body, params)
    if "control_type" in params and any(marker in m for m in models for marker in _NO_CONTROLNET):
        raise err.bad_request(
            "ControlNet does not work with this model family currently.", "ControlNetMismatch"
        )
    if params.get("hires_fix") and any(marker in m for m in models for marker in _NO_HIRES_FIX):
        raise err.bad_request("hires fix does not work with this model family currently.", "HiResMismatch")
    loras = params.get("loras", [])
    if len(loras) > 5:
        raise err.bad_request("You cannot request more than 5 loras per generation.", "TooManyLoras")
    for lora in loras:
        if lora.get("is_version") and not str(lora["name"]).isdigit():
            raise err.bad_request(
                "explicit LoRa version requests have to be a version ID (i.e integer).", "BadLoraVersion"
            )
    if len(params.get("tis", [])) > 20:
        raise err.bad_request(
            "You cannot request more than 20 Textual Inversions per generation.", "TooManyTIs"
        )
    extra = body.get("extra_source_images") or []
    if len(extra) > 5:
        raise err.bad_request("You can send a maximum of 5 extra source images.", "TooManyExtraSourceImages")
    if extra and body.get("source_processing") != "remix":
        raise err.bad_request(
            "This request type does not accept extra source images.", "InvalidExtraSourceImages"
        )
    if len(str(body["prompt"]).split()) > 7500:
        raise err.bad_request(
            "Too large prompt. Please reduce the amount of tokens contained.", "InvalidPromptSize"
        )
    if any(model in KNOWN_POST_PROCESSORS for model in body.get("models") or []):
        raise err.bad_request("This model is not supported in this mode the moment", "UnexpectedModelName")
    if len([pp for pp in params.get("post_processing", []) if pp in KNOWN_UPSCALERS]) > 1:
        raise err.bad_request("Cannot use more than 1 upscaler at a time.", "TooManyUpscalers")
    cfg_scale = params.get("cfg_scale")
    if cfg_scale is not None and round(cfg_scale, 2) != cfg_scale:
        raise err.bad_request("cfg_scale must be rounded to 2 decimal places", "BadCFGDecimals")
    if client_agent in BANNED_CLIENT_AGENTS:
        raise err.forbidden(
            "This Client-Agent appears badly designed and is causing too many warnings. "
            "First ensure it provides a proper name and contact details. "
            "Then contact us on Discord to discuss the issue it's creating.",
            "BannedClientAgent",
        )
    for name in ("source_image", "source_mask"):
        source = body.get(name)
        if isinstance(source, str) and not source.startswith(("http://", "https://")):
            try:
                _images.decode(decode_base64(source))
            except ValueError as exc:
                raise err.image_validation_failed() from exc


def image_params(given: Mapping[str, Any]) -> dict[str, Any]:
    """The server's defaults (``extract_params``), not the swagger's."""
    params = {**IMAGE_DEFAULTS, **given}
    if "control_type" in given:
        params["steps"] = min(int(given.get("steps", 20)), 40)
    return params


def price_image(
    state: State, user: SimUser, body: Mapping[str, Any], params: dict[str, Any], models: list[str]
) -> tuple[float, float]:
    """``(per_image, whole_request)`` kudos; raises ``KudosUpfront`` or downgrades the params."""
    slow = bool(body.get("slow_workers", True))
    threads = state.declared_threads("image")
    resolution = kudos.max_resolution(threads, state.queued_jobs("image"), models)
    max_steps = state.knobs.upfront_max_steps
    per_image, required = _image_price(body, params, models)
    needs_upfront = kudos.image_needs_upfront(
        params, slow_workers=slow, resolution=resolution, max_steps=max_steps
    )
    if needs_upfront and required > user.kudos:
        if not body.get("allow_downgrade"):
            raise err.kudos_upfront(kudos.upfront_message(resolution, round(required, 2)))
        _downgrade(params, resolution, max_steps)
        per_image, required = _image_price(body, params, models)
    return per_image, required


def _image_price(
    body: Mapping[str, Any], params: Mapping[str, Any], models: list[str]
) -> tuple[float, float]:
    source_image = bool(body.get("source_image"))
    per_image = kudos.image_kudos_per_image(
        params, source_image=source_image, source_mask=bool(body.get("source_mask"))
    )
    burn = kudos.image_burn(
        per_image,
        params,
        source_image=source_image,
        slow_workers=bool(body.get("slow_workers", True)),
        worker_blacklist=bool(body.get("worker_blacklist", False)),
    )
    return per_image, kudos.image_request_kudos(burn, int(params["n"]), models)


def _downgrade(params: dict[str, Any], resolution: int, max_steps: int) -> None:
    width, height = int(params["width"]), int(params["height"])
    while width * height > resolution * resolution and max(width, height) > 64:
        if width >= height:
            width -= 64
        else:
            height -= 64
    params["width"], params["height"] = width, height
    params["steps"] = min(int(params["steps"]), max_steps)


def check_text_request(body: Mapping[str, Any], params: Mapping[str, Any]) -> None:
    if int(params["max_context_length"]) < int(params["max_length"]):
        raise err.bad_request("You cannot request more tokens than your context length.", "TokenOverflow")
    if "sampler_order" in params and len(set(params["sampler_order"])) < 7:
        raise err.bad_request(
            "When sending a custom sampler order, you need to specify all possible samplers in the order",
            "MissingFullSamplerOrder",
        )
    stops = set(params.get("stop_sequence", []))
    if len(stops) > 128:
        raise err.bad_request(
            "Too many stop sequences specified (max allowed is 128).", "TooManyStopSequences"
        )
    if sum(len(stop) for stop in stops) > 2000:
        raise err.bad_request(
            "Your total stop sequence length exceeds the allowed limit (2000 chars).", "ExcessiveStopSequence"
        )
    if body.get("extra_source_images"):
        raise err.bad_request(
            "This request type does not accept extra source images.", "InvalidExtraSourceImages"
        )


def price_text(state: State, user: SimUser, body: Mapping[str, Any], params: Mapping[str, Any]) -> float:
    """What a dry run says; raises ``KudosUpfront`` for long answers the user cannot pay for."""
    max_length, n = int(params["max_length"]), int(params["n"])
    models = list(body.get("models") or [])
    tokens = kudos.text_max_tokens(state.declared_threads("text"), state.queued_jobs("text"))
    if not body.get("slow_workers", True) or max_length > tokens:
        required = kudos.text_upfront_kudos(max_length, n, models)
        if required > user.kudos:
            raise err.kudos_upfront(kudos.text_upfront_message(tokens, required))
    return kudos.text_dry_run_kudos(max_length, int(params["max_context_length"]), n, models)


def new_request(
    state: State,
    kind: Kind,
    user: SimUser,
    body: Mapping[str, Any],
    params: dict[str, Any],
    models: list[str],
    per_generation: float,
) -> GenRequest:
    now = state.now()
    n = int(params["n"])
    return GenRequest(
        id=state.new_id(),
        kind=kind,
        user=user,
        prompt=str(body.get("prompt", "")),
        params=params,
        models=models,
        kudos_per_generation=per_generation,
        created=now,
        expires_at=now + state.knobs.request_lifetime,
        jobs=n,
        waiting=n,
        workers=list(body.get("workers") or []),
        worker_blacklist=bool(body.get("worker_blacklist", False)),
        nsfw=bool(body.get("nsfw", True)),
        censor_nsfw=bool(body.get("censor_nsfw", True)),
        r2=bool(body.get("r2", True)),
        slow_workers=bool(body.get("slow_workers", True)),
        source_image=bool(body.get("source_image")),
        source_processing=painting.processing_of(body),
        proxied_account=str(body["proxied_account"]) if body.get("proxied_account") else None,
        queued_at=now,
        disable_batching=bool(body.get("disable_batching", False)),
        # The anonymous account's kudos are deeply negative on the real Horde: it comes last.
        priority=ANONYMOUS_PRIORITY if user.is_anon else user.kudos,
        seq=state.next_seq(),
    )


def check_activation(body: Mapping[str, Any]) -> None:
    """What the server checks once the request is priced, as it stores the source image."""
    source = body.get("source_image")
    inline = isinstance(source, str) and not source.startswith(("http://", "https://"))
    painting.check_activation(body, decode_base64(source) if inline and isinstance(source, str) else None)


def decode_base64(data: str) -> bytes:
    try:
        return base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise err.image_validation_failed() from exc
