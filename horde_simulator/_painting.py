"""``source_processing`` as the real server handles it (AI-Horde 5.1.5, ``apis/v2/stable.py`` and
``classes/stable/worker.py``): img2img, inpainting and outpainting.

- Refused at submit: ControlNet with inpainting (``ControlNetInpaintingMismatch``), and an
  inpainting request whose source image has neither a ``source_mask`` nor an alpha channel
  (``InpaintingMissingMask``, 400, from ``activate_waiting_prompt``). Outpainting without either is
  accepted, as on the server.
- Served only by a worker that can paint: one whose models include an inpainting model of the
  image model reference (``has_inpainting_models``). Otherwise the request is accepted with the
  ``NoAvailableWorker`` warning and stays ``is_possible: false``, as the server's
  ``wp_has_valid_workers`` runs ``can_generate`` ("models"). A worker serving only inpainting
  models takes nothing else (``has_only_inpainting_models``).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from typing import Any, Final

import PIL.Image

from horde_simulator import _errors as err

PAINTING: Final = frozenset({"inpainting", "outpainting"})
REFERENCE_INPAINTING_MODELS: Final = frozenset(
    {
        "A-Zovya RPG Inpainting",
        "Anything Diffusion Inpainting",
        "Deliberate Inpainting",
        "DreamShaper Inpainting",
        "Epic Diffusion Inpainting",
        "iCoMix Inpainting",
        "Realistic Vision Inpainting",
        "stable_diffusion_inpainting",
    }
)
"""The models ``stable_diffusion.json`` (the server's model reference) marks ``inpainting: true``."""


def processing_of(body: Mapping[str, Any]) -> str:
    """The request's ``source_processing`` (the server's default: img2img)."""
    return str(body.get("source_processing") or "img2img")


def check_submit(body: Mapping[str, Any], params: Mapping[str, Any]) -> None:
    """``validate``'s check, in its place among the others."""
    if "control_type" in params and processing_of(body) == "inpainting":
        raise err.bad_request(
            "ControlNet cannot be used with inpainting at this time", "ControlNetInpaintingMismatch"
        )


def check_activation(body: Mapping[str, Any], source: bytes | None) -> None:
    """``activate_waiting_prompt``: inpainting needs a mask or an alpha channel."""
    if processing_of(body) != "inpainting" or source is None or body.get("source_mask"):
        return
    with PIL.Image.open(io.BytesIO(source)) as image:
        bands = len(image.getbands())
    if bands != 4:
        raise err.image_validation_failed(
            "Inpainting requests must either include a mask, or an alpha channel.", "InpaintingMissingMask"
        )


def worker_can_take(processing: str, served: Iterable[str]) -> bool:
    """Whether workers serving ``served`` may pick up a request with ``processing``."""
    models = set(served)
    paints = bool(models & REFERENCE_INPAINTING_MODELS)
    if processing in PAINTING:
        return paints
    return not models or not models <= REFERENCE_INPAINTING_MODELS
