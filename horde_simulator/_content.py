"""What the simulated workers produce besides pictures: text and alchemy results."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from typing import Any

from PIL import Image

from horde_simulator import _images

_WORDS = (
    "the", "a", "quiet", "horde", "of", "workers", "painted", "under", "silver", "lanterns", "while",
    "kudos", "flowed", "like", "rivers", "through", "ancient", "servers", "and", "every", "prompt",
    "became", "story", "about", "distant", "stars", "gentle", "machines", "dreaming", "in", "colour",
    "with", "patient", "hands", "that", "never", "slept", "until", "dawn", "arrived", "softly",
)  # fmt: skip
R2_PLACEHOLDER = "R2"


def text_seed(prompt: str, seed: int) -> int:
    digest = hashlib.sha256(f"{seed}:{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def continue_text(prompt: str, seed: int, max_length: int, stop_sequences: Sequence[str] = ()) -> str:
    """A deterministic continuation of about ``max_length`` tokens (≈ 0.75 words each).

    Like a real backend, the text ends right after the first stop sequence it produces.
    """
    rng = random.Random(text_seed(prompt, seed))
    words = [rng.choice(_WORDS) for _ in range(max(1, (max_length * 3) // 4))]
    text = " " + " ".join(words) + "."
    cut = min((text.find(stop) + len(stop) for stop in stop_sequences if stop and stop in text), default=None)
    return text if cut is None else text[:cut]


def caption(image: Image.Image) -> str:
    colour, _ = _images.dominant_colour(image)
    return f"a {_shape(image)} {colour} image, {image.width}x{image.height} pixels"


def alchemy_result(form: str, image: Image.Image, post_processors: Sequence[str]) -> dict[str, Any]:
    """The result a worker submits for ``form``; post-processors say ``"R2"`` like real workers."""
    if form in post_processors:
        return {form: R2_PLACEHOLDER}
    colour, rgb = _images.dominant_colour(image)
    if form == "caption":
        return {"caption": caption(image)}
    if form == "nsfw":
        return {"nsfw": False}
    if form == "interrogation":
        return {
            "interrogation": {
                "tags": [
                    {"text": colour, "confidence": 0.9},
                    {"text": _shape(image), "confidence": 0.75},
                    {"text": "gradient", "confidence": 0.5},
                ],
                "sites": [],
                "artists": [],
                "flavors": [],
                "mediums": [{"text": "digital art", "confidence": 0.6}],
                "movements": [],
                "techniques": [],
            }
        }
    if form == "palette":
        return {"palette": _images.palette(image)}
    if form == "vectorize":
        return {"vectorize": [round(channel / 255, 4) for channel in rgb]}
    if form == "describe":
        return {"describe": f"A {_shape(image)} picture dominated by {colour} tones."}
    if form == "aesthetic":
        return {"aesthetic": round(5 + (sum(rgb) % 50) / 10, 2)}
    raise ValueError(f"unknown alchemy form {form!r}")


def upscale_factor(post_processor: str) -> int:
    """2 for the ×2 upscalers, 4 for the other upscalers, 1 for face fixers and the like."""
    if "x2" in post_processor or post_processor.startswith("2x"):
        return 2
    if "x4" in post_processor or post_processor.startswith("4x") or post_processor == "NMKD_Siax":
        return 4
    return 1


def _shape(image: Image.Image) -> str:
    if image.width == image.height:
        return "square"
    return "landscape" if image.width > image.height else "portrait"
