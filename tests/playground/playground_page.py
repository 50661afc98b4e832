"""Helpers for the browser tests: ``horde-bot playground`` in a real process, Chromium driving its page.

The browser is the system's Chromium (Debian's ``chromium``), started by Playwright with
``executable_path``: nothing is downloaded. Without one the browser tests are skipped, unless
``PLAYGROUND_BROWSER_TESTS=required`` (CI, ``.ci/playground.sh``) makes that a failure.

(Context managers rather than fixtures: a ``conftest.py`` here would shadow tests/conftest.py
for every ``from conftest import ...`` collected after it.)
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

ROOT = Path(__file__).resolve().parents[2]
REQUIRED_ENV = "PLAYGROUND_BROWSER_TESTS"
CHROMIUM_ENV = "PLAYGROUND_CHROMIUM"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-headless-shell", "/usr/lib/chromium/chromium")
# What works on a container without a GPU or sandbox privileges, with nothing reaching the network.
LAUNCH_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
URL_RE = re.compile(r"http://127\.0\.0\.1:\d+/#[A-Za-z0-9_-]+")
T = TypeVar("T")


def unavailable(reason: str) -> None:
    """Skip, or fail where the browser tests are required."""
    if os.environ.get(REQUIRED_ENV) == "required":
        pytest.fail(f"{reason} ({REQUIRED_ENV}=required)", pytrace=False)
    pytest.skip(reason)


def find_chromium() -> str | None:
    explicit = os.environ.get(CHROMIUM_ENV)
    candidates = (explicit,) if explicit else CHROMIUM_CANDIDATES
    found = [path for path in candidates if os.access(path, os.X_OK)]
    return found[0] if found else None if explicit else shutil.which("chromium")


@dataclass
class RunningPlayground:
    """``horde-bot playground`` in its own process; ``stdout``/``stderr`` are collected as it runs."""

    process: subprocess.Popen[str]
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    url: str = ""
    started_in_s: float = 0.0

    @property
    def origin(self) -> str:
        return self.url.partition("/#")[0]

    @property
    def token(self) -> str:
        return self.url.partition("/#")[2]

    @property
    def output(self) -> str:
        return "".join(self.stdout) + "".join(self.stderr)

    def stop(self, sig: signal.Signals = signal.SIGINT, timeout: float = 15.0) -> tuple[int, float]:
        """Send ``sig``; return the exit status and how long the process took to exit."""
        started = time.monotonic()
        self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        return code, time.monotonic() - started


def _collect(stream: Iterator[str], into: list[str], seen: Callable[[str], None]) -> None:
    for line in stream:
        into.append(line)
        seen(line)


def start_playground(*args: str, timeout: float = 10.0) -> RunningPlayground:
    """Start ``python -m bot playground ARGS`` and wait (up to ``timeout``) for the URL it prints."""
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "playground", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    running = RunningPlayground(process)
    printed = threading.Event()

    def on_stdout(line: str) -> None:
        match = URL_RE.search(line)
        if match and not running.url:
            running.url = match.group(0)
            running.started_in_s = time.monotonic() - started
            printed.set()

    assert process.stdout is not None
    assert process.stderr is not None
    for stream, lines, seen in (
        (process.stdout, running.stdout, on_stdout),
        (process.stderr, running.stderr, lambda _: None),
    ):
        threading.Thread(target=_collect, args=(stream, lines, seen), daemon=True).start()
    if not printed.wait(timeout):
        process.kill()
        process.wait()
        pytest.fail(f"no URL within {timeout} s; output:\n{running.output}", pytrace=False)
    return running


@contextmanager
def playground(*args: str) -> Iterator[RunningPlayground]:
    """The playground running while the block runs; stopped after it, having logged no traceback."""
    running = start_playground(*args)
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.stop()
    assert "Traceback" not in running.output, running.output


class PlaygroundPage:
    """The playground's page, used as a person uses it: the composer, buttons, the viewer picker."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.navigations = 0
        page.on("framenavigated", self._navigated)

    def _navigated(self, frame: object) -> None:
        if frame is self.page.main_frame:
            self.navigations += 1

    def open(self, url: str) -> None:
        self.page.goto(url)
        self.composer.wait_for()
        self.messages.first.wait_for()  # the welcome message: the page has its first snapshot

    @property
    def composer(self) -> Locator:
        return self.page.locator("#channel-composer-input")

    @property
    def messages(self) -> Locator:
        return self.page.locator("#channel-message-list [data-message-id]")

    def message(self, message_id: str) -> Locator:
        return self.page.locator(f'#channel-message-list [data-message-id="{message_id}"]')

    def message_ids(self) -> list[str]:
        return [
            str(item) for item in self.messages.evaluate_all("items => items.map(i => i.dataset.messageId)")
        ]

    def type_command(self, command: str, *then: str) -> None:
        """Type ``/command``, then each of ``then``: text, or a key like "Tab" or "Enter"."""
        self.composer.click()
        self.page.keyboard.type(f"/{command}", delay=20)
        for step in then:
            if step in {"Tab", "Enter", "Escape"}:
                self.page.wait_for_timeout(200)  # the command list follows the typing
                self.page.keyboard.press(step)
            else:
                self.page.keyboard.type(step, delay=10)

    def add_option(self, name: str, value: str) -> None:
        """While composing a command: open its options (the command's chip), pick ``name``, type."""
        self.page.locator(".command-chip").click()
        self.page.get_by_role("option", name=name, exact=False).first.click()
        self.page.keyboard.type(value, delay=10)

    def imagine(self, prompt: str) -> tuple[Locator, str]:
        """``/imagine`` typed as a person does (the command, Tab, the prompt, Enter); its message
        and that message's id."""
        before = self.message_ids()
        self.type_command("imagine", "Tab", prompt, "Enter")
        job = self.new_message(before, prompt)
        return job, str(job.get_attribute("data-message-id"))

    def image_width(self, message: Locator) -> int:
        """The natural width of the first image in ``message``, once it has loaded."""
        script = "img => img.complete && img.naturalWidth"
        return int(self.until(lambda: message.locator("img").first.evaluate(script), 10.0, "an image"))

    def new_message(self, before: list[str], contains: str, timeout_s: float = 10.0) -> Locator:
        """The first message not in ``before`` whose text contains ``contains``."""

        def found() -> Locator | None:
            for message_id in self.message_ids():
                if message_id not in before and contains in self.text(message_id):
                    return self.message(message_id)
            return None

        return self.until(found, timeout_s, f"a new message with {contains!r}")

    def text(self, message_id: str) -> str:
        try:
            return self.message(message_id).inner_text(timeout=1000)
        except Exception:  # re-rendered meanwhile: read it again next time
            return ""

    def view_as(self, name: str) -> None:
        """Pick ``name`` in "Viewing as" and wait for the page to show what they see."""
        [viewer_id] = self.page.select_option("#viewer-picker", label=name)
        self.until(
            lambda: self.page.evaluate(
                "id => String(window.simcordPreview.viewerId) === id && window.simcordPreview.ready",
                viewer_id,
            ),
            10.0,
            f"the page showing what {name} sees",
        )

    def until(self, probe: Callable[[], T | None], timeout_s: float, what: str) -> T:
        deadline = time.monotonic() + timeout_s
        while True:
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
            self.page.wait_for_timeout(100)


@contextmanager
def browser_page() -> Iterator[PlaygroundPage]:
    """A page of a fresh headless Chromium, with its own profile."""
    chromium = find_chromium()
    if chromium is None:
        unavailable("no Chromium found (apt-get install -y chromium)")
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
