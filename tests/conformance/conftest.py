"""Fixtures of the conformance suite (see horde_sides.py); every test here skips without a real Horde."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from horde_sides import KEYS_ENV, SKIP_REASON, Side, real_side, sim_side

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get(KEYS_ENV):
        return
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.skip(reason=SKIP_REASON))


@pytest.fixture
async def sides() -> AsyncIterator[tuple[Side, Side]]:
    """``(real, sim)``: the same users, no worker running until a test starts one; every request
    made is DELETEd and every worker stopped at the end."""
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession())
        real = await stack.enter_async_context(real_side(http))
        sim = await stack.enter_async_context(sim_side(http))
        yield real, sim
