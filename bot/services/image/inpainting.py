"""Which model Zoom out and Pan (outpainting) run on: one the AI Horde's workers serve now
(``status/models``) that the image model reference marks ``inpainting: true``.

The reference's inpainting models are listed here (``stable_diffusion.json`` of
Haidra-Org/AI-Horde-image-model-reference, the version the server in ``../shared/real-horde``
loads); a model it adds later is still found by its name, as the reference names every one of
them "… Inpainting".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from bot.errors import UserInputError
from bot.horde import ActiveModel

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
NO_INPAINTING_WORKER: Final = (
    "No worker on the AI Horde serves an inpainting model right now, and Zoom out and Pan need one. "
    "Please try again later."
)


def is_inpainting_model(name: str) -> bool:
    return name in REFERENCE_INPAINTING_MODELS or name.lower().endswith("inpainting")


def pick_inpainting_model(models: Sequence[ActiveModel], like: str) -> str:
    """The inpainting model of ``like``'s family when a worker serves it ("Deliberate" →
    "Deliberate Inpainting"), else the one most workers serve; :class:`UserInputError` saying
    so plainly when none is served."""
    served = [
        model
        for model in models
        if is_inpainting_model(model.name) and (model.count or 0) > 0 and model.type_ in (None, "image")
    ]
    if not served:
        raise UserInputError(NO_INPAINTING_WORKER, detail="no inpainting model served")
    family = like.lower().removesuffix(" inpainting")
    for model in served:
        if model.name.lower().removesuffix(" inpainting") == family:
            return model.name
    return max(served, key=lambda model: (model.count or 0, model.name)).name
