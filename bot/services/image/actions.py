"""The actions on one image of a result: Vary (img2img on it) and Zoom out / Pan (outpainting).

Both start from a journalled /imagine (its request and parameters) and one of its images, and make
a new /imagine request: the same prompt and settings, a new seed, that image as the source.

- **Vary** sends the image resized to the job's size with ``source_processing: img2img`` and a
  denoising strength: :data:`VARY_STRONG` (0.7, the V buttons of a result and "Vary (Strong)") or
  :data:`VARY_SUBTLE` (0.35, "Vary (Subtle)" on an upscaled image's own reply).
- **Zoom out** (1.5×, 2×) puts the image in the middle of a larger canvas; **Pan** extends the
  canvas by half on one side. The canvas is kept within the server's ``max_pixels`` and the
  Horde's sides (multiples of 64, :mod:`bot.generation_limits`): when it would be larger, canvas
  and image shrink together, so the image keeps its share of the canvas. It is sent with
  ``source_processing: outpainting``, the image as RGBA (the new area transparent) and the same
  area as ``source_mask`` (white: paint here, black: keep), which is what the Horde's workers read
  (the mask, else the alpha channel), on an inpainting model
  (:func:`bot.services.image.inpainting.pick_inpainting_model`), at denoising strength 1.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import PIL.Image

from bot.errors import UserInputError
from bot.generation_limits import MAX_SIDE, MIN_SIDE, SIDE_STEP
from bot.horde import ImageGenerateAsyncRequest
from bot.services.image.request import ImagineParams, ImagineRequest
from bot.services.image.rerun import rerun_request

VARY_STRONG: Final = 0.7
VARY_SUBTLE: Final = 0.35
OUTPAINT_DENOISING: Final = 1.0
PAN_FACTOR: Final = 1.5
WEBP_QUALITY: Final = 95
_DROPPED_FOR_A_SOURCE: Final = ("control_type", "image_is_control", "return_control_map", "hires_fix")
"""Parameters of the original request that don't apply to a new one made from its image."""


class Move(StrEnum):
    """How the canvas grows around the image."""

    zoom_1_5 = "zoom 1.5"
    zoom_2 = "zoom 2"
    left = "left"
    right = "right"
    up = "up"
    down = "down"

    @property
    def factors(self) -> tuple[float, float]:
        """How much wider and taller the canvas is than the image."""
        return _FACTORS[self]

    @property
    def label(self) -> str:
        return _LABELS[self]


_FACTORS: Final = {
    Move.zoom_1_5: (1.5, 1.5),
    Move.zoom_2: (2.0, 2.0),
    Move.left: (PAN_FACTOR, 1.0),
    Move.right: (PAN_FACTOR, 1.0),
    Move.up: (1.0, PAN_FACTOR),
    Move.down: (1.0, PAN_FACTOR),
}
_LABELS: Final = {
    Move.zoom_1_5: "Zoom out 1.5×",
    Move.zoom_2: "Zoom out 2×",
    Move.left: "Pan ⬅️",
    Move.right: "Pan ➡️",
    Move.up: "Pan ⬆️",
    Move.down: "Pan ⬇️",
}


@dataclass(frozen=True, slots=True)
class Layout:
    """Where the image goes on the canvas: the canvas size and the image's box on it."""

    canvas: tuple[int, int]
    box: tuple[int, int, int, int]
    """left, top, right, bottom."""


def outpaint_layout(width: int, height: int, move: Move, *, max_pixels: int) -> Layout:
    """The canvas for ``move`` from an image of ``width``×``height``: sides multiples of 64 within
    the Horde's bounds and ``max_pixels``, the image scaled to keep its share of it."""
    factor_x, factor_y = move.factors
    wanted_w, wanted_h = width * factor_x, height * factor_y
    scale = min(1.0, math.sqrt(max_pixels / (wanted_w * wanted_h)), MAX_SIDE / wanted_w, MAX_SIDE / wanted_h)
    canvas_w, canvas_h = _side(wanted_w * scale), _side(wanted_h * scale)
    image_w, image_h = round(canvas_w / factor_x), round(canvas_h / factor_y)
    left = {Move.left: canvas_w - image_w, Move.right: 0}.get(move, (canvas_w - image_w) // 2)
    top = {Move.up: canvas_h - image_h, Move.down: 0}.get(move, (canvas_h - image_h) // 2)
    return Layout((canvas_w, canvas_h), (left, top, left + image_w, top + image_h))


def _side(value: float) -> int:
    return min(MAX_SIDE, max(MIN_SIDE, math.floor(value / SIDE_STEP) * SIDE_STEP))


@dataclass(frozen=True, slots=True)
class Outpaint:
    """The source image and mask of an outpainting request, base64 webp."""

    image: str
    mask: str
    width: int
    height: int

    def __repr__(self) -> str:  # megabytes of base64
        return f"Outpaint({self.width}×{self.height})"


def outpaint_sources(data: bytes, layout: Layout) -> Outpaint:
    """The image on its canvas (RGBA, the new area transparent) and the mask (white where the
    Horde paints). Blocking: run it in a thread. ``data`` is an image the bot posted itself."""
    left, top, right, bottom = layout.box
    with PIL.Image.open(io.BytesIO(data)) as opened:
        image = opened.convert("RGB").resize((right - left, bottom - top), PIL.Image.Resampling.LANCZOS)
    canvas = PIL.Image.new("RGBA", layout.canvas, (0, 0, 0, 0))
    canvas.paste(image, (left, top))
    mask = PIL.Image.new("L", layout.canvas, 255)
    mask.paste(0, layout.box)
    return Outpaint(_webp(canvas), _webp(mask), *layout.canvas)


def resized_source(data: bytes, width: int, height: int) -> str:
    """The image at the job's size, as base64 webp (Vary). Blocking: run it in a thread."""
    with PIL.Image.open(io.BytesIO(data)) as opened:
        image = opened.convert("RGB")
        if image.size != (width, height):
            image = image.resize((width, height), PIL.Image.Resampling.LANCZOS)
    return _webp(image)


def _webp(image: PIL.Image.Image) -> str:
    out = io.BytesIO()
    image.save(out, format="WEBP", quality=WEBP_QUALITY, lossless=image.mode == "L")
    return base64.b64encode(out.getvalue()).decode("ascii")


def _from_source(
    request_json: str, params_json: str, *, allow_nsfw: bool
) -> tuple[dict[str, Any], ImagineParams]:
    """The journalled request as a body to start from: a new seed, without the source it may have
    had and the parameters that don't apply to one."""
    rerun = rerun_request(request_json, params_json, seed=None, allow_nsfw=allow_nsfw)
    body = rerun.request.model_dump(exclude_unset=True, mode="json")
    for name in ("source_image", "source_mask", "source_processing", "extra_source_images"):
        body.pop(name, None)
    params = body.get("params") or {}
    for name in _DROPPED_FOR_A_SOURCE:
        params.pop(name, None)
    body["params"] = params
    return body, rerun.params


def vary_request(
    request_json: str, params_json: str, *, number: int, source: str, strength: float, allow_nsfw: bool
) -> ImagineRequest:
    """A new set from image ``number`` (1-based): img2img on ``source`` (base64 webp at the job's
    size) with the job's prompt and settings and ``strength``."""
    body, params = _from_source(request_json, params_json, allow_nsfw=allow_nsfw)
    body["params"]["denoising_strength"] = strength
    body.update(source_image=source, source_processing="img2img")
    params = params.model_copy(
        update={
            "source_image": f"image #{number} (Vary {'Strong' if strength >= VARY_STRONG else 'Subtle'})",
            "source_processing": "img2img",
            "denoising_strength": strength,
            "hires_fix": False,
        }
    )
    return ImagineRequest(request=_validated(body), params=params)


def outpaint_request(
    request_json: str,
    params_json: str,
    *,
    number: int,
    move: Move,
    sources: Outpaint,
    model: str,
    allow_nsfw: bool,
) -> ImagineRequest:
    """A new set from image ``number`` on a larger canvas: outpainting on ``model``."""
    body, params = _from_source(request_json, params_json, allow_nsfw=allow_nsfw)
    body["params"].update(width=sources.width, height=sources.height, denoising_strength=OUTPAINT_DENOISING)
    body.update(
        models=[model],
        source_image=sources.image,
        source_mask=sources.mask,
        source_processing="outpainting",
    )
    params = params.model_copy(
        update={
            "model": model,
            "width": sources.width,
            "height": sources.height,
            "source_image": f"image #{number} ({move.label})",
            "source_processing": "outpainting",
            "denoising_strength": OUTPAINT_DENOISING,
            "hires_fix": False,
        }
    )
    return ImagineRequest(request=_validated(body), params=params)


def _validated(body: dict[str, Any]) -> ImageGenerateAsyncRequest:
    try:
        return ImageGenerateAsyncRequest.model_validate(body)
    except ValueError:
        raise UserInputError(
            "This image can't be used for a new generation.", detail="invalid image action request"
        ) from None
