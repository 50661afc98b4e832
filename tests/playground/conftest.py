"""Fixtures of the browser tests: a headless Chromium page (see playground_page.py)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import pytest
from playground_page import LAUNCH_ARGS, PlaygroundPage, find_chromium, unavailable


@pytest.fixture
def chromium() -> str:
    path = find_chromium()
    if path is None:
        unavailable("no Chromium found (apt-get install -y chromium)")
    assert path is not None
    return path


@pytest.fixture
def browser_page(chromium: str) -> Iterator[PlaygroundPage]:
    """A page of a fresh headless Chromium, with its own profile."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright is not installed (pip install -e '.[test]')")
    with tempfile.TemporaryDirectory(prefix="playground-chromium-") as profile, sync_playwright() as driver:
        context = driver.chromium.launch_persistent_context(
            profile,
            executable_path=chromium,
            args=list(LAUNCH_ARGS),
            headless=True,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield PlaygroundPage(context.pages[0] if context.pages else context.new_page())
        finally:
            context.close()
