"""Kudos prices and the upfront-kudos rules.

The image price is the server's deterministic legacy formula (its neural-network estimate
falls back to it), per image::

    size   = ((w·h − 64²) ** 1.75) / ((1024² − 64²) ** 1.75)
    kudos  = 0.1232·steps + size · 0.1232·steps·8.75          (steps as counted by accurate_steps)
    kudos ×= 1.2 for every post-processor;  ×3 with a ControlNet (unless return_control_map);
    kudos += 3 per LoRa, +1 if any TI;  ×1.2 when slow_workers is false

For 512×512 at 30 steps that is 6.5 kudos.  The 202 answer shows ``round(per_image)``; a dry
run and the upfront check use ``round(per_image · n · baseline + 1, 2)`` (baseline ×2 SDXL,
×4 Cascade, ×8 Flux/Z-Image, ×12 Qwen, from the model name) and the dry run rounds that.
Kudos are charged per image, as each one is delivered.

Text: ``round(max_length / 21, 2)`` per generation; a dry run says
``round(per_generation · n + 1)``; the upfront price is ``20·n`` without models, else
``per_generation · n``.  Alchemy: 1 per form, 3 for ``interrogation``, 3 per 512-px tile for a
post-processor, plus the burn (1, or 2 with slow workers).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

DOUBLE_STEP_SAMPLERS = frozenset({"k_heun", "k_dpm_2", "k_dpm_2_a", "k_dpmpp_2s_a", "k_dpmpp_sde"})
_BASELINE_MULTIPLIERS: tuple[tuple[str, float], ...] = (
    ("qwen", 12.0),
    ("flux", 8.0),
    ("z-image", 8.0),
    ("cascade", 4.0),
    ("sdxl", 2.0),
)


def accurate_steps(params: Mapping[str, Any]) -> int:
    """Steps as the server counts them: some samplers cost double, k_dpm_adaptive counts 40."""
    sampler = params.get("sampler_name", "k_euler_a")
    steps = int(params.get("steps", 30))
    if sampler == "k_dpm_adaptive":
        return 40
    if sampler in DOUBLE_STEP_SAMPLERS:
        return steps * 2
    return steps


def baseline_multiplier(models: Sequence[str]) -> float:
    best = 1.0
    for model in models:
        lowered = model.lower()
        for marker, multiplier in _BASELINE_MULTIPLIERS:
            if marker in lowered:
                best = max(best, multiplier)
                break
    return best


def image_kudos_per_image(params: Mapping[str, Any], *, slow_workers: bool = True) -> float:
    width, height = int(params.get("width", 512)), int(params.get("height", 512))
    size = max(width * height - 64 * 64, 0) ** 1.75 / (1024 * 1024 - 64 * 64) ** 1.75
    steps = accurate_steps(params)
    kudos: float = round(0.1232 * steps + size * (0.1232 * steps * 8.75), 2)
    for _ in params.get("post_processing", []):
        kudos = round(kudos * 1.2, 2)
    if params.get("control_type") and not params.get("return_control_map", False):
        kudos = round(kudos * 3, 2)
    kudos += 3 * len(params.get("loras", []))
    if params.get("tis"):
        kudos += 1
    if not slow_workers:
        kudos *= 1.2
    return round(float(kudos), 2)


def image_request_kudos(per_image: float, n: int, models: Sequence[str]) -> float:
    """The whole request's price: what the upfront check compares and a dry run rounds."""
    return round(per_image * n * baseline_multiplier(models) + 1, 2)


def max_resolution(threads: int, queued: int, models: Sequence[str]) -> int:
    """The largest side a user without the kudos in hand may ask for."""
    if any(marker in model.lower() for model in models for marker in ("sdxl", "cascade", "flux")):
        return 1024
    return max(576, min(1024, 1024 + 10 * threads - round(queued * 0.9)))


def image_needs_upfront(
    params: Mapping[str, Any], *, slow_workers: bool, resolution: int, max_steps: int
) -> bool:
    steps = accurate_steps(params)
    if not slow_workers:
        return True
    if int(params["width"]) * int(params["height"]) > resolution * resolution:
        return True
    if steps > max_steps:
        return True
    if params.get("sampler_name") == "lcm" and steps > 10:
        return True
    return bool(params.get("control_type")) and steps > 20


def upfront_message(resolution: int, required: float) -> str:
    return (
        f"Due to heavy demand, for requests over {resolution}x{resolution} or over 50 steps "
        "(10 steps for LCM work, 30 steps for Stable Cascade, and half those steps for k_heun, "
        "dpmpp_sde, and dpm_2*) the client needs to already have the required kudos. "
        f"This request requires {required} kudos to fulfil."
    )


def text_kudos_per_generation(max_length: int) -> float:
    return round(max_length / 21, 2)


def text_upfront_kudos(max_length: int, n: int, models: Sequence[str]) -> float:
    if not models:
        return float(20 * n)
    return round(text_kudos_per_generation(max_length) * n, 2)


def text_max_tokens(threads: int, queued: int) -> int:
    return max(256, min(512, 512 + 5 * threads - round(queued * 0.9)))


def text_upfront_message(tokens: int, required: float) -> str:
    return (
        f"Due to heavy demand, for requests over {tokens} tokens, the client needs to already have "
        f"the required kudos. This request requires {required} kudos to fulfil."
    )


def image_tiles(width: int, height: int) -> int:
    return math.ceil(width / 512) * math.ceil(height / 512)


def form_kudos(form: str, tiles: int, post_processors: Sequence[str]) -> float:
    if form == "interrogation":
        return 3.0
    if form in post_processors:
        return float(tiles * 3)
    return 1.0
