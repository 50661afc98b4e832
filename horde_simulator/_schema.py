"""Request-body validation with the messages flask-restx gets from jsonschema (Draft 4).

Only the keywords the Horde's input models use are supported.  Errors are keyed by the dotted
path of the offending value (``params.width``, ``forms.0.name``), like ``format_error``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Schema = Mapping[str, Any]

KNOWN_UPSCALERS: tuple[str, ...] = (
    "RealESRGAN_x4plus",
    "RealESRGAN_x2plus",
    "RealESRGAN_x4plus_anime_6B",
    "NMKD_Siax",
    "4x_AnimeSharp",
    "4xNomos8kSC",
    "4xLSDIRplus",
    "4xNomosWebPhoto_RealPLKSR",
    "4xNomos2_realplksr_dysample",
    "4xNomos2_hq_dat2",
    "2xModernSpanimationV1",
)
KNOWN_POST_PROCESSORS: tuple[str, ...] = (
    "GFPGAN",
    "RealESRGAN_x4plus",
    "RealESRGAN_x2plus",
    "RealESRGAN_x4plus_anime_6B",
    "NMKD_Siax",
    "4x_AnimeSharp",
    "CodeFormers",
    "strip_background",
    "4xNomos8kSC",
    "4xLSDIRplus",
    "4xNomosWebPhoto_RealPLKSR",
    "4xNomos2_realplksr_dysample",
    "4xNomos2_hq_dat2",
    "2xModernSpanimationV1",
    "GFPGANv1.3",
    "RestoreFormer",
)
ALCHEMY_FORMS: tuple[str, ...] = (
    "caption",
    "interrogation",
    "nsfw",
    "vectorize",
    "palette",
    "describe",
    "aesthetic",
    *KNOWN_POST_PROCESSORS,
)
SAMPLERS: tuple[str, ...] = (
    "lcm",
    "DDIM",
    "k_dpmpp_2s_a",
    "k_dpmpp_sde",
    "k_lms",
    "k_euler_a",
    "k_heun",
    "k_dpm_2_a",
    "k_dpm_2",
    "k_dpmpp_2m",
    "dpmsolver",
    "k_euler",
    "k_dpm_adaptive",
    "k_dpm_fast",
)
CONTROL_TYPES = ("canny", "hed", "depth", "normal", "openpose", "seg", "scribble", "fakescribbles", "hough")

_BOOL: Schema = {"type": "boolean"}
_STR: Schema = {"type": "string"}
_STR_LIST: Schema = {"type": "array", "items": {"type": "string"}}


def _num(low: float, high: float) -> Schema:
    return {"type": "number", "minimum": low, "maximum": high}


def _int(low: int, high: int) -> Schema:
    return {"type": "integer", "minimum": low, "maximum": high}


_SIZE: Schema = {"type": "integer", "minimum": 64, "maximum": 3072, "multipleOf": 64}
_EXTRA_SOURCE_IMAGES: Schema = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"image": {"type": "string", "minLength": 1}, "strength": {"type": "number"}},
    },
}

IMAGE_PARAMS: Schema = {
    "type": "object",
    "properties": {
        "sampler_name": {"type": "string", "enum": list(SAMPLERS)},
        "cfg_scale": _num(0, 100),
        "denoising_strength": _num(0.01, 1.0),
        "hires_fix_denoising_strength": _num(0.01, 1.0),
        "height": _SIZE,
        "width": _SIZE,
        "post_processing": {
            "type": "array",
            "uniqueItems": True,
            "items": {"type": "string", "enum": list(KNOWN_POST_PROCESSORS)},
        },
        "karras": _BOOL,
        "tiling": _BOOL,
        "hires_fix": _BOOL,
        "clip_skip": _int(1, 12),
        "facefixer_strength": _num(0, 1.0),
        "loras": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 255},
                    "model": _num(-5.0, 5.0),
                    "clip": _num(-5.0, 5.0),
                    "inject_trigger": {"type": "string", "minLength": 1, "maxLength": 30},
                    "is_version": _BOOL,
                },
            },
        },
        "tis": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 255},
                    "inject_ti": {"type": "string", "enum": ["prompt", "negprompt"]},
                    "strength": _num(-5.0, 5.0),
                },
            },
        },
        "special": {"type": "object"},
        "workflow": {"type": "string", "enum": ["qr_code"]},
        "transparent": _BOOL,
        "seed": _STR,
        "seed_variation": _int(1, 1000),
        "control_type": {"type": "string", "enum": list(CONTROL_TYPES)},
        "image_is_control": _BOOL,
        "return_control_map": _BOOL,
        "extra_texts": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "text": {"type": "string", "minLength": 1},
                    "reference": {"type": "string", "minLength": 3},
                },
            },
        },
        "steps": _int(1, 500),
        "n": _int(1, 20),
    },
}

IMAGE_REQUEST: Schema = {
    "type": "object",
    "required": ["prompt"],
    "properties": {
        "prompt": {"type": "string", "minLength": 1},
        "params": IMAGE_PARAMS,
        "nsfw": _BOOL,
        "trusted_workers": _BOOL,
        "validated_backends": _BOOL,
        "slow_workers": _BOOL,
        "extra_slow_workers": _BOOL,
        "censor_nsfw": _BOOL,
        "workers": _STR_LIST,
        "worker_blacklist": _BOOL,
        "models": _STR_LIST,
        "source_image": _STR,
        "source_processing": {"type": "string", "enum": ["img2img", "inpainting", "outpainting", "remix"]},
        "source_mask": _STR,
        "extra_source_images": _EXTRA_SOURCE_IMAGES,
        "r2": _BOOL,
        "shared": _BOOL,
        "replacement_filter": _BOOL,
        "dry_run": _BOOL,
        "proxied_account": _STR,
        "disable_batching": _BOOL,
        "allow_downgrade": _BOOL,
        "webhook": {"type": "string", "minLength": 10, "maxLength": 1024},
        "style": {"type": "string", "minLength": 3, "maxLength": 1024},
    },
}

TEXT_PARAMS: Schema = {
    "type": "object",
    "properties": {
        "frmtadsnsp": _BOOL,
        "frmtrmblln": _BOOL,
        "frmtrmspch": _BOOL,
        "frmttriminc": _BOOL,
        "rep_pen": _num(1, 3),
        "rep_pen_range": _int(0, 4096),
        "rep_pen_slope": _num(0, 10),
        "singleline": _BOOL,
        "temperature": _num(0, 5.0),
        "tfs": _num(0.0, 1.0),
        "top_a": _num(0.0, 1.0),
        "top_k": _int(0, 200),
        "top_p": _num(0.001, 1.0),
        "typical": _num(0.0, 1.0),
        "sampler_order": {"type": "array", "items": {"type": "integer"}},
        "use_default_badwordsids": _BOOL,
        "stop_sequence": _STR_LIST,
        "min_p": _num(0.0, 1.0),
        "smoothing_factor": _num(0.0, 10.0),
        "dynatemp_range": _num(0.0, 5.0),
        "dynatemp_exponent": _num(0.0, 5.0),
        "n": _int(1, 20),
        "max_context_length": _int(80, 1048576),
        "max_length": _int(16, 4096),
    },
}

TEXT_REQUEST: Schema = {
    "type": "object",
    "properties": {
        "prompt": _STR,
        "params": TEXT_PARAMS,
        "softprompt": {"type": "string", "minLength": 1},
        "trusted_workers": _BOOL,
        "validated_backends": _BOOL,
        "slow_workers": _BOOL,
        "workers": _STR_LIST,
        "worker_blacklist": _BOOL,
        "models": _STR_LIST,
        "dry_run": _BOOL,
        "proxied_account": _STR,
        "extra_source_images": _EXTRA_SOURCE_IMAGES,
        "disable_batching": _BOOL,
        "allow_downgrade": _BOOL,
        "webhook": _STR,
        "style": {"type": "string", "minLength": 3, "maxLength": 1024},
        "extra_slow_workers": _BOOL,
    },
}

INTERROGATE_REQUEST: Schema = {
    "type": "object",
    "properties": {
        "forms": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "enum": list(ALCHEMY_FORMS)},
                    "payload": {"type": "object"},
                },
            },
        },
        "source_image": _STR,
        "slow_workers": _BOOL,
        "webhook": {"type": "string", "minLength": 10, "maxLength": 1024},
    },
}


def validate(instance: Any, schema: Schema) -> dict[str, str]:
    """All errors of ``instance`` against ``schema``, as ``{dotted.path: message}``."""
    errors: dict[str, str] = {}
    _check(instance, schema, [], errors)
    return errors


_TYPE_CHECKS = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
}


def _check(value: Any, schema: Schema, path: list[str], errors: dict[str, str]) -> None:
    key = ".".join(path)
    expected = schema.get("type")
    if expected is not None and not _TYPE_CHECKS[expected](value):
        errors[key] = f"{value!r} is not of type {expected!r}"
    if "enum" in schema and value not in schema["enum"]:
        errors[key] = f"{value!r} is not one of {schema['enum']!r}"
    if isinstance(value, str):
        _check_string(value, schema, key, errors)
    if _TYPE_CHECKS["number"](value):
        _check_number(value, schema, key, errors)
    if isinstance(value, list):
        if schema.get("uniqueItems") and any(value.count(item) > 1 for item in value):
            errors[key] = f"{value!r} has non-unique elements"
        if "items" in schema:
            for index, item in enumerate(value):
                _check(item, schema["items"], [*path, str(index)], errors)
    if isinstance(value, dict):
        properties: Mapping[str, Schema] = schema.get("properties", {})
        for name, sub_schema in properties.items():
            if name in value:
                _check(value[name], sub_schema, [*path, name], errors)
        for name in schema.get("required", ()):
            if name not in value:
                errors[".".join([*path, name])] = f"{name!r} is a required property"


def _check_string(value: str, schema: Schema, key: str, errors: dict[str, str]) -> None:
    min_length, max_length = schema.get("minLength"), schema.get("maxLength")
    if min_length is not None and len(value) < min_length:
        errors[key] = f"{value!r} " + ("should be non-empty" if min_length == 1 else "is too short")
    if max_length is not None and len(value) > max_length:
        errors[key] = f"{value!r} " + ("is expected to be empty" if max_length == 0 else "is too long")


def _check_number(value: float, schema: Schema, key: str, errors: dict[str, str]) -> None:
    minimum, maximum, multiple = schema.get("minimum"), schema.get("maximum"), schema.get("multipleOf")
    if minimum is not None and value < minimum:
        errors[key] = f"{value!r} is less than the minimum of {minimum!r}"
    if maximum is not None and value > maximum:
        errors[key] = f"{value!r} is greater than the maximum of {maximum!r}"
    if multiple is not None and value % multiple:
        errors[key] = f"{value!r} is not a multiple of {multiple!r}"
