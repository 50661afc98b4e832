"""Pages of a list, for the commands that page through what the Horde returns."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: tuple[T, ...]
    page: int
    """Zero-based, clamped to the pages there are."""
    pages: int
    """At least 1: an empty list has one empty page."""
    total: int

    @property
    def has_previous(self) -> bool:
        return self.page > 0

    @property
    def has_next(self) -> bool:
        return self.page + 1 < self.pages


def paginate(items: Sequence[T], *, page: int, page_size: int) -> Page[T]:
    """Page ``page`` of ``items``; a page out of range is the nearest one there is."""
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    pages = max(1, math.ceil(len(items) / page_size))
    page = min(max(0, page), pages - 1)
    start = page * page_size
    return Page(items=tuple(items[start : start + page_size]), page=page, pages=pages, total=len(items))
