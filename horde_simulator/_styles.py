"""The simulator's styles (``GET v2/styles/...`` and ``style`` in a request)."""

from __future__ import annotations

from collections.abc import Callable

from horde_simulator._records import SimStyle


def make_styles(new_id: Callable[[], str], started: float) -> list[SimStyle]:
    """The styles every simulator starts with: two image styles and a text style."""
    return [
        SimStyle(
            new_id(),
            "image",
            "sim-photoreal",
            "Photorealistic pictures, sharp focus.",
            "{p}, photorealistic, sharp focus{np}",
            {"steps": 25, "cfg_scale": 6.0, "sampler_name": "k_dpmpp_2m", "karras": True},
            ["stable_diffusion"],
            ["photorealistic"],
            "alice#1",
            started,
            use_count=12,
            examples=[],
        ),
        SimStyle(
            new_id(),
            "image",
            "sim-sketch",
            "Pencil sketches on paper.",
            "pencil sketch of {p}{np}",
            {"steps": 20, "width": 768, "height": 512, "sampler_name": "k_euler_a"},
            ["Deliberate"],
            ["sketch", "monochrome"],
            "bob#2",
            started + 1,
            use_count=3,
            examples=[],
        ),
        SimStyle(
            new_id(),
            "text",
            "sim-storyteller",
            "Short bedtime stories.",
            "Tell a short story about {p}",
            {"max_length": 120, "temperature": 0.8},
            ["koboldcpp/SimLlama-8B"],
            ["story"],
            "alice#1",
            started,
            use_count=5,
        ),
    ]
