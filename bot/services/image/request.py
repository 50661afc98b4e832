"""/imagine: what the user typed → a validated AI Horde image request and the parameters to journal.

Bounds are checked twice: Discord enforces the Horde's absolute ranges on the options, and
:func:`build_request` checks this server's limits (``max_steps``, ``max_n``, ``max_pixels``) and then
the request models, turning every failure into one :class:`UserInputError` line per field that says
what is allowed. Defaults come from a :class:`GenerationDefaults` object, so per-guild defaults drop in,
and from a Horde style when one applies (``bot.services.styles``): what the member typed wins.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from bot.config import GenerationDefaults
from bot.errors import UserInputError
from bot.generation_limits import MAX_CFG_SCALE, MAX_N, MAX_SIDE, MAX_STEPS, MIN_SIDE, SIDE_STEP
from bot.horde import ImageGenerateAsyncRequest, ImageGenerationInputPayload
from bot.horde.consts import (
    KNOWN_FACEFIXERS,
    KNOWN_IMAGE_SAMPLERS,
    KNOWN_POST_PROCESSORS,
    KNOWN_UPSCALERS,
    MAX_LORAS,
    MAX_PROMPT_WORDS,
    MAX_TIS,
    TI_INJECT,
)
from bot.services.formatting import clip, has_visible_text
from bot.services.image.aspect import AspectPreset, aspect_dimensions
from bot.services.image.source import SourceImage
from bot.services.policy import GenerationContext, Origin
from bot.services.styles import (
    AppliedStyle,
    first_of,
    image_style_prompt,
    style_model,
    style_param,
    style_params,
)

# The Horde's own bounds (swagger.json and the server's validation); shared ones in bot.generation_limits.
MIN_DENOISING: Final = 0.01
MAX_NETWORK_STRENGTH: Final = 5.0
MAX_SEED_LENGTH: Final = 256
MAX_CLIP_SKIP: Final = 12
MAX_SEED_VARIATION: Final = 1000


# -- LoRAs and textual inversions ------------------------------------------------------------------


class NamedStrength(BaseModel):
    """A LoRA or textual inversion as typed: ``name`` or ``name:strength``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    strength: float = 1.0


def parse_named_strengths(text: str | None, *, what: str, limit: int) -> tuple[NamedStrength, ...]:
    """Parse ``"a, b:0.5, 12345:-1"``; names may contain ``:``, only a numeric last part is a strength."""
    if text is None or not text.strip():
        return ()
    entries: list[NamedStrength] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        name, strength = item, 1.0
        head, sep, tail = item.rpartition(":")
        if sep:
            try:
                strength = float(tail)
            except ValueError:
                pass
            else:
                name = head.strip()
        if not name:
            raise UserInputError(f"Each {what} needs a name, e.g. `name` or `name:0.8`.")
        if not math.isfinite(strength) or abs(strength) > MAX_NETWORK_STRENGTH:
            raise UserInputError(
                f"The strength of {what} “{clip(name, 60)}” must be between "
                f"{-MAX_NETWORK_STRENGTH:g} and {MAX_NETWORK_STRENGTH:g}."
            )
        entries.append(NamedStrength(name=name, strength=strength))
    if len(entries) > limit:
        raise UserInputError(f"At most {limit} {what}s per request; you gave {len(entries)}.")
    return tuple(entries)


# -- options → request -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImagineOptions:
    """What the user typed; ``None`` means "use the default"."""

    prompt: str
    negative_prompt: str | None = None
    model: str | None = None
    sampler: KNOWN_IMAGE_SAMPLERS | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    width: int | None = None
    height: int | None = None
    aspect: AspectPreset | None = None
    seed: str | None = None
    n: int | None = None
    karras: bool | None = None
    hires_fix: bool | None = None
    upscaler: KNOWN_UPSCALERS | None = None
    facefixer: KNOWN_FACEFIXERS | None = None
    loras: str | None = None
    tis: str | None = None
    tiling: bool | None = None
    denoising_strength: float | None = None
    clip_skip: int | None = None
    seed_variation: int | None = None
    shared: bool | None = None
    style: AppliedStyle | None = None
    """A Horde style: its template, model and params are the defaults under what was typed."""


class ImagineParams(BaseModel):
    """The resolved parameters of one /imagine, journalled as ``params_json``.

    They are what the messages show (progress, result, Details); the exact request that was sent is
    journalled separately (``request_json``) and is what a rerun resends.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt: str
    negative_prompt: str = ""
    model: str
    sampler: KNOWN_IMAGE_SAMPLERS
    steps: int
    cfg_scale: float
    width: int
    height: int
    seed: str | None = None
    n: int
    karras: bool = True
    hires_fix: bool = False
    tiling: bool = False
    upscaler: KNOWN_UPSCALERS | None = None
    facefixer: KNOWN_FACEFIXERS | None = None
    loras: tuple[NamedStrength, ...] = ()
    tis: tuple[NamedStrength, ...] = ()
    source_image: str | None = None
    """The uploaded file's name, for img2img."""
    denoising_strength: float | None = None
    source_processing: Literal["img2img", "outpainting"] | None = None
    """Set by Vary (img2img) and Zoom out / Pan (outpainting) on an image of a result."""
    nsfw: bool = False
    clip_skip: int | None = None
    seed_variation: int | None = None
    shared: bool = False
    """Share the images with LAION (the Horde's ``shared``: 2 kudos less, when sharing is on)."""
    style: AppliedStyle | None = None

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> ImagineParams:
        return cls.model_validate_json(text)


@dataclass(frozen=True, slots=True)
class ImagineRequest:
    """A request ready for the job manager: the Horde payload (anonymous until a key is applied)
    and the parameters to journal and show."""

    request: ImageGenerateAsyncRequest
    params: ImagineParams

    @property
    def params_json(self) -> str:
        return self.params.to_json()

    def with_source_image(self, source: SourceImage) -> ImagineRequest:
        """The same request with the uploaded image, once it was downloaded and checked."""
        request = self.request.with_fields(source_image=source.webp_base64)
        return ImagineRequest(
            request=request, params=self.params.model_copy(update={"source_image": source.filename})
        )


def build_request(
    options: ImagineOptions,
    defaults: GenerationDefaults,
    *,
    allow_nsfw: bool,
    source_image: str | None = None,
) -> ImagineRequest:
    """The /imagine request for ``options``, or a :class:`UserInputError` saying what is allowed.

    Every problem is reported at once, one line per field: this server's limits first, then
    whatever the request models refuse. ``source_image`` names an attached file; its pixels are
    added with :meth:`ImagineRequest.with_source_image` once downloaded, so every option can be
    checked (and refused privately) before the slow part starts.
    """
    params, problems = _resolve(options, defaults, allow_nsfw=allow_nsfw, source_image=source_image)
    try:
        request = _request_for(params)
    except ValidationError as exc:
        for field, line in _validation_lines(exc, defaults).items():
            problems.setdefault(field, line)
    if problems:
        raise UserInputError(_join_lines(problems.values()), detail="invalid /imagine options")
    return ImagineRequest(request=request, params=params)


def _resolve(
    options: ImagineOptions,
    defaults: GenerationDefaults,
    *,
    allow_nsfw: bool,
    source_image: str | None,
) -> tuple[ImagineParams, dict[str, str]]:
    problems: dict[str, str] = {}
    rules = _FieldRules(defaults)
    style = options.style
    width, height = _dimensions(options, defaults)
    loras = _parse_networks(problems, "loras", options.loras, what="LoRA", limit=MAX_LORAS)
    tis = _parse_networks(problems, "tis", options.tis, what="textual inversion", limit=MAX_TIS)
    negative = options.negative_prompt if options.negative_prompt is not None else defaults.negative_prompt
    params = ImagineParams(
        prompt=options.prompt.strip(),
        negative_prompt=negative.strip(),
        model=(options.model or style_model(style) or defaults.model).strip(),
        sampler=options.sampler or _style_sampler(style) or defaults.sampler,
        steps=first_of(options.steps, style_param(style, "steps", int), defaults.steps),
        cfg_scale=first_of(
            options.cfg_scale, style_param(style, "cfg_scale", (int, float)), defaults.cfg_scale
        ),
        width=width,
        height=height,
        seed=(options.seed.strip() or None) if options.seed is not None else None,
        n=options.n if options.n is not None else defaults.n,
        karras=first_of(options.karras, style_param(style, "karras", bool), True),
        hires_fix=first_of(options.hires_fix, style_param(style, "hires_fix", bool), False),
        tiling=first_of(options.tiling, style_param(style, "tiling", bool), False),
        upscaler=options.upscaler,
        facefixer=options.facefixer,
        loras=loras,
        tis=tis,
        source_image=source_image,
        denoising_strength=options.denoising_strength,
        nsfw=allow_nsfw,
        clip_skip=first_of(options.clip_skip, style_param(style, "clip_skip", int), None),
        seed_variation=options.seed_variation,
        shared=bool(options.shared),
        style=style,
    )
    if not has_visible_text(params.prompt):
        problems["prompt"] = rules.message("prompt")
    if not params.model:
        problems["models"] = rules.message("models")
    if not 1 <= params.steps <= defaults.max_steps:
        problems["steps"] = rules.message("steps")
    if not 1 <= params.n <= defaults.max_n:
        problems["n"] = rules.message("n")
    if params.seed is not None and len(params.seed) > MAX_SEED_LENGTH:
        problems["seed"] = rules.message("seed")
    sides_valid = _valid_side(params.width) and _valid_side(params.height)
    if sides_valid and params.width * params.height > defaults.max_pixels:
        problems["pixels"] = rules.message("pixels")
    if params.clip_skip is not None and not 1 <= params.clip_skip <= MAX_CLIP_SKIP:
        problems["clip_skip"] = rules.message("clip_skip")
    if params.seed_variation is not None and not 1 <= params.seed_variation <= MAX_SEED_VARIATION:
        problems["seed_variation"] = rules.message("seed_variation")
    if params.denoising_strength is not None and params.source_image is None:
        problems["denoising_strength"] = (
            "Strength only applies to a source image: attach one, or leave strength out."
        )
    return params, problems


def _style_sampler(style: AppliedStyle | None) -> KNOWN_IMAGE_SAMPLERS | None:
    name = style_param(style, "sampler_name", str)
    return KNOWN_IMAGE_SAMPLERS(name) if name in KNOWN_IMAGE_SAMPLERS.__members__.values() else None


def generation_context(
    params: ImagineParams,
    origin: Origin,
    *,
    user_id: int,
    guild_id: int | None,
    channel_id: int | None,
    age_restricted: bool,
) -> GenerationContext:
    """What the policy checks for an /imagine request, however it was started."""
    return GenerationContext(
        origin=origin,
        command="imagine",
        user_id=user_id,
        guild_id=guild_id,
        channel_id=channel_id,
        age_restricted=age_restricted,
        prompt=params.prompt,
        negative_prompt=params.negative_prompt,
        model=params.model,
        steps=params.steps,
        width=params.width,
        height=params.height,
        n=params.n,
        nsfw=params.nsfw,
    )


def horde_prompt(prompt: str, negative_prompt: str) -> str:
    """The Horde's single prompt field: ``###`` separates the negative prompt."""
    return f"{prompt} ### {negative_prompt}" if negative_prompt else prompt


def styled_horde_prompt(params: ImagineParams) -> str:
    """The prompt field sent: the prompts, through the style's template when there is one."""
    joined = horde_prompt(params.prompt, params.negative_prompt)
    return image_style_prompt(params.style.prompt, joined) if params.style is not None else joined


def _request_for(params: ImagineParams) -> ImageGenerateAsyncRequest:
    # The style's params first (those the request takes), then everything resolved above on top.
    payload: dict[str, Any] = style_params(params.style, ImageGenerationInputPayload)
    payload |= {
        "n": params.n,
        "steps": params.steps,
        "width": params.width,
        "height": params.height,
        "sampler_name": params.sampler,
        "cfg_scale": params.cfg_scale,
        "karras": params.karras,
        "hires_fix": params.hires_fix,
        "tiling": params.tiling,
    }
    if params.seed is not None:
        payload["seed"] = params.seed
    post_processing = [
        KNOWN_POST_PROCESSORS(name.value) for name in (params.upscaler, params.facefixer) if name is not None
    ]
    if post_processing:
        payload["post_processing"] = post_processing
    if params.loras:
        payload["loras"] = [{"name": lora.name, "model": lora.strength} for lora in params.loras]
    if params.tis:
        # Injected into the prompt so naming a TI is enough, as in the Horde's own clients.
        payload["tis"] = [
            {"name": ti.name, "strength": ti.strength, "inject_ti": TI_INJECT.prompt} for ti in params.tis
        ]
    if params.denoising_strength is not None:
        payload["denoising_strength"] = params.denoising_strength
    if params.clip_skip is not None:
        payload["clip_skip"] = params.clip_skip
    if params.seed_variation is not None:
        payload["seed_variation"] = params.seed_variation
    body: dict[str, Any] = {
        "prompt": styled_horde_prompt(params),
        "params": payload,
        "models": [params.model],
        "nsfw": params.nsfw,
        "censor_nsfw": not params.nsfw,
    }
    if params.shared:
        body["shared"] = True
    return ImageGenerateAsyncRequest.model_validate(body)


# -- validation messages ---------------------------------------------------------------------------


class _FieldRules:
    """One line per field saying what is allowed, with this server's limits filled in."""

    def __init__(self, defaults: GenerationDefaults) -> None:
        side = math.isqrt(defaults.max_pixels) // SIDE_STEP * SIDE_STEP
        self._messages: dict[str, str] = {
            "prompt": f"The prompt must not be empty and may have at most {MAX_PROMPT_WORDS} words.",
            "models": "Choose a model (start typing to see the models workers serve).",
            "width": f"Width must be a multiple of {SIDE_STEP} between {MIN_SIDE} and {MAX_SIDE}.",
            "height": f"Height must be a multiple of {SIDE_STEP} between {MIN_SIDE} and {MAX_SIDE}.",
            "pixels": (
                f"Width × height may be at most {defaults.max_pixels:,} pixels here "
                f"(e.g. {side}×{side}); choose a smaller size or an aspect preset."
            ),
            "steps": f"Steps must be between 1 and {min(defaults.max_steps, MAX_STEPS)}.",
            "n": f"Count must be between 1 and {min(defaults.max_n, MAX_N)}.",
            "cfg_scale": f"CFG scale must be between 0 and {MAX_CFG_SCALE:g}, with at most 2 decimals.",
            "denoising_strength": f"Strength must be between {MIN_DENOISING} and 1.",
            "seed": f"The seed may have at most {MAX_SEED_LENGTH} characters.",
            "clip_skip": f"CLIP skip must be a whole number between 1 and {MAX_CLIP_SKIP}.",
            "seed_variation": f"Seed variation must be a whole number between 1 and {MAX_SEED_VARIATION}.",
            "sampler_name": f"Sampler must be one of {', '.join(KNOWN_IMAGE_SAMPLERS)}.",
            "post_processing": "Choose at most one upscaler and one face fixer.",
            "loras": (
                f"At most {MAX_LORAS} LoRAs, each with a strength between "
                f"{-MAX_NETWORK_STRENGTH:g} and {MAX_NETWORK_STRENGTH:g}."
            ),
            "tis": (
                f"At most {MAX_TIS} textual inversions, each with a strength between "
                f"{-MAX_NETWORK_STRENGTH:g} and {MAX_NETWORK_STRENGTH:g}."
            ),
            "source_image": "The source image can't be used.",
        }

    def message(self, field: str) -> str:
        return self._messages[field]

    def field_for(self, loc: Iterable[int | str]) -> str | None:
        for part in loc:
            if isinstance(part, str) and part in self._messages:
                return part
        return None


def describe_validation_error(exc: ValidationError, defaults: GenerationDefaults) -> str:
    """One line per field that failed, saying what is allowed; the input is never echoed."""
    return _join_lines(_validation_lines(exc, defaults).values())


def _validation_lines(exc: ValidationError, defaults: GenerationDefaults) -> dict[str, str]:
    rules = _FieldRules(defaults)
    lines: dict[str, str] = {}
    for error in exc.errors(include_input=False):
        field = rules.field_for(error["loc"])
        if field is not None:
            lines.setdefault(field, rules.message(field))
        else:
            where = ".".join(str(part) for part in error["loc"]) or "request"
            lines.setdefault(where, f"{where}: {error['msg'].removeprefix('Value error, ')}.")
    return lines


def _dimensions(options: ImagineOptions, defaults: GenerationDefaults) -> tuple[int, int]:
    if options.aspect is not None:
        if options.width is not None or options.height is not None:
            raise UserInputError("Choose either an aspect preset or a width and height, not both.")
        return aspect_dimensions(options.aspect, defaults.width * defaults.height, defaults.max_pixels)
    width = first_of(options.width, style_param(options.style, "width", int), defaults.width)
    height = first_of(options.height, style_param(options.style, "height", int), defaults.height)
    return width, height


def _parse_networks(
    problems: dict[str, str], field: str, text: str | None, *, what: str, limit: int
) -> tuple[NamedStrength, ...]:
    try:
        return parse_named_strengths(text, what=what, limit=limit)
    except UserInputError as exc:
        problems[field] = exc.user_message
        return ()


def _valid_side(value: int) -> bool:
    return MIN_SIDE <= value <= MAX_SIDE and value % SIDE_STEP == 0


def _join_lines(lines: Iterable[str]) -> str:
    return "\n".join(lines)
