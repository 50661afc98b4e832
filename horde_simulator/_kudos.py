"""Kudos prices, what a request is charged and when, and the upfront-kudos rules.

Images.  The server prices one image with a small neural network (``KudosModel``, kudos-v21) that
estimates the job's time against a 512×512, 50-step reference worth 10 kudos.  The simulator
does not carry that network: it interpolates a table of the network's answers (512×512 at
k_euler_a, cfg 5, karras, txt2img, for the sides and steps below) over the image's area and its
steps, then scales by the sampler, hires fix, ControlNet and img2img factors the network gives on
average and adds the post-processors' cost.  For aspect ratios up to 2:1 that lands within 7 % of
the server's price for nine requests in ten (16 % at worst); a 4:1 image can be 60 % off.  Then,
as the server: ``+ 3`` per LoRa and ``+ 1`` if any TI (``calculate_kudos``).

Charges, as the server's ledger shows them (``consumed_kudos`` is an integer column, so each
charge is rounded to a whole kudos):

- at submit, the horde tax: 3 for an image request (1, plus 2 the server adds as if every image
  request used a style) and 1 for a text request;
- for each image delivered, or still on a worker when the request is cancelled:
  ``burn(per_image)``: ×1.3 with a source image, ×the post-processors' multipliers, +1, ×1.2
  without slow workers, ×1.1 with a worker blacklist (``calculate_extra_kudos_burn``); a
  censored image costs only the +1;
- for each text: its reward (its tokens × the model's billions of parameters / 125 × the context
  multiplier of the prompt, as for a model the server's text reference knows) + 1.

The 202 answer shows ``round(per_image)``; a dry run (and the upfront check) use
``burn(per_image) · n · baseline + 1`` (baseline ×2 SDXL, ×4 Cascade, ×8 Flux/Z-Image, ×12 Qwen,
from the model name) and the dry run rounds it.  Text: the 202 always says 0 kudos (the server
never prices a text request there); a dry run says
``round((max_length · size · context / 100 + 1) · n + 1)``, ``size`` the model's billions of
parameters (13 without models; the server answers 500 for a model its reference does not know,
which the simulator does not copy: its models are all "known").  Alchemy: 1 per form, 3 for
``interrogation``, 3 per 512-px tile for a post-processor, plus the burn (1, or 2 with slow
workers).
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from horde_simulator._records import Generation, GenRequest

DOUBLE_STEP_SAMPLERS = frozenset({"k_heun", "k_dpm_2", "k_dpm_2_a", "k_dpmpp_2s_a", "k_dpmpp_sde"})
_MODEL_SIZE = re.compile(r"(\d+(?:\.\d+)?)B\b")
IMAGE_SUBMIT_TAX = 3.0
TEXT_SUBMIT_TAX = 1.0
_BASELINE_MULTIPLIERS: tuple[tuple[str, float], ...] = (
    ("qwen", 12.0),
    ("flux", 8.0),
    ("z-image", 8.0),
    ("cascade", 4.0),
    ("sdxl", 2.0),
)

# The server's KudosModel for square images of these sides at these steps (k_euler_a, cfg 5,
# karras, txt2img), as AI-Horde 5.1.5 answers; interpolated over the area and the steps.
_SIDES = (64, 256, 512, 768, 1024, 1280, 1536, 2048)
_AREAS = tuple(side * side for side in _SIDES)
_STEPS = (1, 10, 20, 30, 50, 75, 100, 150)
_PRICES = (
    (3.14, 3.89, 4.74, 5.64, 7.83, 12.06, 14.16, 18.21),
    (3.27, 4.01, 4.83, 5.80, 8.80, 12.93, 15.96, 20.69),
    (3.46, 4.26, 5.76, 7.61, 10.98, 14.96, 19.92, 27.18),
    (5.08, 6.51, 9.11, 11.75, 16.44, 22.72, 29.91, 37.31),
    (9.77, 12.53, 15.98, 20.99, 29.59, 39.31, 48.54, 59.95),
    (14.50, 18.45, 25.38, 35.13, 52.92, 64.14, 74.03, 91.96),
    (24.73, 32.51, 43.91, 57.08, 79.01, 94.16, 104.05, 124.56),
    (74.87, 86.87, 100.23, 113.58, 134.40, 157.24, 175.86, 202.95),
)
# The network's average factor for a sampler against k_euler_a (512-1024 px, 10-50 steps);
# samplers it does not know are priced as k_euler.
_SAMPLER_FACTORS = {
    "ddim": 1.25, "k_dpm_2": 1.54, "k_dpm_2_a": 1.54, "k_dpm_adaptive": 1.63, "k_dpm_fast": 0.98,
    "k_dpmpp_2m": 1.02, "k_dpmpp_2s_a": 1.55, "k_dpmpp_sde": 1.54, "k_euler": 1.02, "k_euler_a": 1.0,
    "k_heun": 1.55, "k_lms": 1.04, "plms": 1.34, "uni_pc": 1.28, "uni_pc_bh2": 1.32,
}  # fmt: skip
_HIRES_FACTOR = 1.38
_CONTROLNET_FACTOR = 1.75
_INPAINTING_FACTOR = 1.4
# What one post-processor adds at 512×512 and at 1024×1024 (interpolated over the area).
_POST_PROCESSOR_COST = {
    "4x_AnimeSharp": (3.12, 6.74), "CodeFormers": (-0.54, -1.17), "GFPGAN": (1.22, 2.18),
    "NMKD_Siax": (1.71, 5.68), "RealESRGAN_x2plus": (2.61, 8.17), "RealESRGAN_x4plus": (2.64, 14.23),
    "RealESRGAN_x4plus_anime_6B": (1.28, 1.82), "strip_background": (1.16, 2.97),
}  # fmt: skip
# The server's KNOWN_POST_PROCESSORS: what each multiplies the requester's charge by.
_POST_PROCESSOR_BURN = {
    "RealESRGAN_x4plus": 1.05, "RealESRGAN_x2plus": 1.05, "RealESRGAN_x4plus_anime_6B": 1.05,
    "NMKD_Siax": 1.05, "4x_AnimeSharp": 1.05,
}  # fmt: skip


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


def _position(points: Sequence[float], value: float) -> tuple[int, float]:
    """The cell of ``points`` holding ``value`` and how far into it (extrapolated at the ends)."""
    index = min(max(bisect.bisect_right(points, value) - 1, 0), len(points) - 2)
    return index, (value - points[index]) / (points[index + 1] - points[index])


def _network_price(width: int, height: int, steps: int) -> float:
    i, a = _position(_AREAS, width * height)
    j, b = _position(_STEPS, steps)
    a, b = max(a, 0.0), max(b, 0.0)
    low = _PRICES[i][j] + (_PRICES[i][j + 1] - _PRICES[i][j]) * b
    high = _PRICES[i + 1][j] + (_PRICES[i + 1][j + 1] - _PRICES[i + 1][j]) * b
    return low + (high - low) * a


def image_kudos_per_image(
    params: Mapping[str, Any], *, source_image: bool = False, source_mask: bool = False
) -> float:
    """``wp.kudos``: what one image is worth to its worker, and the 202 answer's ``round()``."""
    width, height = int(params.get("width", 512)), int(params.get("height", 512))
    steps = int(params.get("steps", 30))
    price = _network_price(width, height, steps)
    price *= _SAMPLER_FACTORS.get(str(params.get("sampler_name", "k_euler_a")), _SAMPLER_FACTORS["k_euler"])
    if params.get("hires_fix"):
        price *= _HIRES_FACTOR
    if source_image and params.get("control_type"):
        price *= _CONTROLNET_FACTOR
    elif source_image and source_mask:
        price *= _INPAINTING_FACTOR
    elif source_image:
        price *= 0.82 + 0.18 * float(params.get("denoising_strength", 1.0))
    share = min(max((width * height - 512 * 512) / (1024 * 1024 - 512 * 512), 0.0), 3.0)
    for name in params.get("post_processing", []):
        at_512, at_1024 = _POST_PROCESSOR_COST.get(name, (1.0, 2.0))
        price += at_512 + (at_1024 - at_512) * share
    kudos = round(max(price, 0.1), 2) + 3 * len(params.get("loras", []))
    if params.get("tis"):
        kudos += 1
    return round(kudos, 2)


def image_burn(
    per_image: float,
    params: Mapping[str, Any],
    *,
    source_image: bool = False,
    slow_workers: bool = True,
    worker_blacklist: bool = False,
) -> float:
    """What one image costs its requester (the server's ``calculate_extra_kudos_burn``)."""
    kudos = per_image * 1.3 if source_image else per_image
    for name in params.get("post_processing", []):
        kudos *= _POST_PROCESSOR_BURN.get(name, 1.0)
    kudos += 1
    if not slow_workers:
        kudos *= 1.2
    if worker_blacklist:
        kudos *= 1.1
    return kudos


def image_request_kudos(per_image_burn: float, n: int, models: Sequence[str]) -> float:
    """The whole request's price: what the upfront check compares and a dry run rounds."""
    return per_image_burn * n * baseline_multiplier(models) + 1


def charged(consumed: float, amount: float) -> float:
    """``consumed_kudos`` after a charge: the server stores it in an integer column."""
    return float(round(consumed + amount))


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


def context_multiplier(context_tokens: float) -> float:
    """Longer contexts need more VRAM: ``1.2 + 2.2 ** log2(context / 1024)``, kept in [0.1, 30]."""
    value: float = 1.2 + 2.2 ** math.log2(max(context_tokens, 1.0) / 1024)
    return min(max(value, 0.1), 30.0)


def text_model_size(model: str) -> float:
    """Billions of parameters, as the server's text reference knows them: read from the name
    (``koboldcpp/SimLlama-8B`` → 8); 13 when the name says nothing."""
    found = _MODEL_SIZE.search(model)
    return float(found[1]) if found else 13.0


def _size_bonus(size: float) -> float:
    return float((max(size, 13.0) / 13.0) ** 0.2)


def text_request_kudos(max_length: int, max_context_length: int, models: Sequence[str]) -> float:
    """The server's ``calculate_kudos`` for a text request, per generation (13B without models)."""
    multiplier = context_multiplier(max_context_length)
    size = text_model_size(models[0]) if models else 13.0
    return round(max_length * _size_bonus(size) * size * multiplier / 100, 2)


def text_dry_run_kudos(max_length: int, max_context_length: int, n: int, models: Sequence[str]) -> float:
    return (text_request_kudos(max_length, max_context_length, models) + 1) * n + 1


def text_tokens(text: str, max_length: int) -> int:
    """The server's quick count: a token per four characters, at least 20, at most ``max_length``."""
    return min(max(20, math.ceil(len(text) / 4)), max_length)


def text_generation_kudos(text: str, prompt: str, max_length: int, model: str) -> float:
    """A worker's reward for one text (validated backend): its tokens priced by the model's size,
    times the context multiplier of the prompt's tokens."""
    size = text_model_size(model)
    tokens, context = text_tokens(text, max_length), text_tokens(prompt, max_length)
    return round(tokens * _size_bonus(size) * size / 125 * context_multiplier(context), 2)


def text_upfront_kudos(max_length: int, n: int, models: Sequence[str]) -> float:
    """What a text request must have in hand when it needs kudos upfront: ``20·n`` without models,
    else ``round(max_length / 21, 2) · n`` (a model the reference does not know counts as 1)."""
    if not models:
        return float(20 * n)
    return round(max_length / 21, 2) * n


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


def generation_cost(request: GenRequest, generation: Generation) -> float:
    """What one delivered generation is charged (the horde tax is charged at submit)."""
    if request.kind == "text":
        return generation.kudos + 1
    reward = 0.0 if generation.censorship is not None else generation.kudos
    return image_burn(
        reward,
        request.params,
        source_image=request.source_image,
        slow_workers=request.slow_workers,
        worker_blacklist=request.worker_blacklist,
    )
