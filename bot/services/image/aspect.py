"""Aspect presets (/imagine's ``aspect``, a member's default size): a ratio at about the server's
pixel budget, in multiples of 64 within the Horde's bounds."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Final

from bot.generation_limits import MAX_SIDE, MIN_SIDE, SIDE_STEP


class AspectPreset(StrEnum):
    square = "square"
    portrait = "portrait"
    landscape = "landscape"
    wide = "wide"
    tall = "tall"

    @property
    def ratio(self) -> tuple[int, int]:
        return _ASPECT_RATIOS[self]

    @property
    def label(self) -> str:
        width, height = self.ratio
        return f"{self.value} {width}:{height}"


_ASPECT_RATIOS: Final[Mapping[AspectPreset, tuple[int, int]]] = {
    AspectPreset.square: (1, 1),
    AspectPreset.portrait: (2, 3),
    AspectPreset.landscape: (3, 2),
    AspectPreset.wide: (16, 9),
    AspectPreset.tall: (9, 16),
}


def aspect_dimensions(preset: AspectPreset, pixel_budget: int, max_pixels: int) -> tuple[int, int]:
    """Width and height with ``preset``'s ratio and about ``pixel_budget`` pixels, multiples of 64.

    Never above ``max_pixels``: when rounding to the nearest multiple overshoots, both sides round down.
    """
    ratio_w, ratio_h = preset.ratio
    exact_width = math.sqrt(min(pixel_budget, max_pixels) * ratio_w / ratio_h)
    exact_height = exact_width * ratio_h / ratio_w
    width, height = _snap(exact_width, round), _snap(exact_height, round)
    if width * height > max_pixels:
        width, height = _snap(exact_width, math.floor), _snap(exact_height, math.floor)
    return width, height


def _snap(value: float, rounding: Callable[[float], int]) -> int:
    return min(MAX_SIDE, max(MIN_SIDE, rounding(value / SIDE_STEP) * SIDE_STEP))
