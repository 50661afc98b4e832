"""Pages of a list."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.services.paging import paginate


def test_a_page_and_its_neighbours() -> None:
    page = paginate(list(range(25)), page=1, page_size=10)
    assert (list(page.items), page.page, page.pages, page.total) == (list(range(10, 20)), 1, 3, 25)
    assert (page.has_previous, page.has_next) == (True, True)


def test_an_empty_list_has_one_empty_page() -> None:
    page = paginate([], page=3, page_size=10)
    assert (page.items, page.page, page.pages, page.has_previous, page.has_next) == ((), 0, 1, False, False)


def test_a_page_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="page_size"):
        paginate([1], page=0, page_size=0)


@settings(max_examples=200, deadline=None)
@given(size=st.integers(0, 60), page_size=st.integers(1, 12), page=st.integers(-5, 20))
def test_every_item_is_on_exactly_one_page(size: int, page_size: int, page: int) -> None:
    items = list(range(size))
    pages = paginate(items, page=0, page_size=page_size).pages
    seen = [
        item for number in range(pages) for item in paginate(items, page=number, page_size=page_size).items
    ]
    assert seen == items
    clamped = paginate(items, page=page, page_size=page_size)
    assert 0 <= clamped.page < clamped.pages
    assert len(clamped.items) <= page_size
