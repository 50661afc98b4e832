"""Which model Zoom out and Pan (outpainting) run on: one the AI Horde's workers serve now
(``status/models``) that the image model reference marks ``inpainting: true``.

The bot does not download the reference: every model it marks so, and no other, is named
"… Inpainting" (``stable_diffusion.json`` of Haidra-Org/AI-Horde-image-model-reference, the
version ``../shared/real-horde`` serves; the simulator's ``_painting.REFERENCE_INPAINTING_MODELS``
copies it and a test holds this rule to it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from bot.errors import UserInputError
from bot.horde import ActiveModel

NO_INPAINTING_WORKER: Final = (
    "No worker on the AI Horde serves an inpainting model right now, and Zoom out and Pan need one. "
    "Please try again later."
)


def is_inpainting_model(name: str) -> bool:
    return name.lower().endswith("inpainting")


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
