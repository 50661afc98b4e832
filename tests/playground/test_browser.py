"""``horde-bot playground`` in a real headless Chromium, used as a person uses it.

Each test starts the command in its own process (as a user would) and drives its page with
Playwright. Against the built-in simulator, or against a simulator of the test's own (started
here, passed with ``--horde-url``) when the test needs a slow or inspectable AI Horde.
"""

from __future__ import annotations

import os
import re
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from playground_page import PlaygroundPage, browser_page, playground, start_playground, unavailable

from horde_simulator import Fault, Knobs, SimulatorConfig, SimulatorThread

ALICE_KEY = "sim-alice-key-00000001"
SCREENSHOT_ENV = "PLAYGROUND_SCREENSHOT_DIR"
RESULT_BUTTONS = ("Rerun", "Same seed", "Details", "Delete")
STATE_MARKS = ("⏳", "🎨", "✅", "🛑", "❌", "⚠")


def http_status(url: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture
def browser() -> Iterator[PlaygroundPage]:
    """A fresh headless Chromium's page (skipped without Chromium, unless required)."""
    with browser_page() as page:
        yield page


@pytest.fixture
def slow_horde() -> Iterator[SimulatorThread]:
    """A simulator with one worker taking 8 s per image: a 3-image job ends 24 s after it starts."""
    with SimulatorThread(SimulatorConfig(knobs=Knobs(speed=8.0, worker_threads=1))) as sim:
        yield sim


def status_line(text: str) -> str:
    """The line of a job's message that says its state: "⏳ Waiting for a worker", "🎨 Generating",
    "✅ Done — 1 image · 6.5 kudos", "🛑 Cancelled …"."""
    return next((line for line in text.splitlines() if line.startswith(STATE_MARKS)), "")


def test_the_command_prints_its_url_and_the_page_needs_its_token(browser: PlaygroundPage) -> None:
    with playground() as running:
        assert running.started_in_s < 10

        browser.page.goto(running.origin + "/")  # the address without its token
        browser.page.wait_for_timeout(1500)
        assert browser.messages.count() == 0
        assert "Welcome" not in browser.page.content()

        host = running.origin.removeprefix("http://")
        for path in ("/api/state", "/api/commands", "/playground/api/state"):
            assert http_status(running.origin + path, {}) == 401
            assert http_status(running.origin + path, {"X-Simcord-Capability": "guess"}) == 401
            assert http_status(running.origin + path, {"X-Simcord-Capability": running.token}) != 401
        for path in ("/", "/app.js", "/api/state"):
            headers = {"Host": "evil.example", "X-Simcord-Capability": running.token}
            assert http_status(running.origin + path, headers) == 403
        assert http_status(running.origin + "/", {"Host": host}) == 200


def test_imagine_as_a_person_does_it(browser: PlaygroundPage) -> None:
    with playground() as running:
        browser.open(running.url)

        job, job_id = browser.imagine("a lighthouse at dusk")
        states: list[str] = []

        def done() -> bool:
            line = status_line(browser.text(job_id))
            if line and (not states or states[-1] != line):
                states.append(line)
            return line.startswith("✅")

        browser.until(done, 30, "✅ Done")
        progress = [state for state in states if not state.startswith("✅")]
        assert len(set(progress)) >= 2, states
        assert browser.navigations == 1  # the page was never reloaded
        for message in (browser.messages.first, job):  # the welcome, posted at start, and the result
            posted = message.locator("time.message-time").get_attribute("datetime")
            age = datetime.now(UTC) - datetime.fromisoformat(str(posted))
            assert abs(age.total_seconds()) < 60  # the wall clock, not SimCord's
        assert browser.image_width(job) >= 256
        for label in RESULT_BUTTONS:
            assert job.get_by_role("button", name=label).count() == 1, label
        if os.environ.get(SCREENSHOT_ENV):  # the README's picture: the whole result, and the bar
            browser.page.set_viewport_size({"width": 1280, "height": 1180})
            browser.page.wait_for_timeout(500)
            browser.page.screenshot(path=str(Path(os.environ[SCREENSHOT_ENV]) / "playground.png"))

        before = browser.message_ids()
        job.get_by_role("button", name="Details").click()
        details = browser.new_message(before, "Only you can see this")
        details_id = str(details.get_attribute("data-message-id"))

        browser.view_as("Sam")
        assert details_id not in browser.message_ids()
        assert job_id in browser.message_ids()


def test_login_with_the_demo_key_then_me_shows_the_account(browser: PlaygroundPage) -> None:
    with playground() as running:
        browser.open(running.url)
        demo_key = browser.page.locator(".playground-key").inner_text()
        assert demo_key == ALICE_KEY

        browser.type_command("login", "Enter", "Enter")
        dialog = browser.page.get_by_role("dialog")
        dialog.locator("input").fill(demo_key)
        before = browser.message_ids()
        dialog.get_by_role("button", name="Submit").click()
        browser.new_message(before, "alice#1")

        before = browser.message_ids()
        browser.type_command("me", "Enter", "Enter")
        me = browser.new_message(before, "alice#1")
        assert "Kudos" in me.inner_text()


def test_the_bar_reacts_for_the_viewer_and_switches_channel(browser: PlaygroundPage) -> None:
    with playground("--speed", "0.5") as running:
        browser.open(running.url)
        job, job_id = browser.imagine("a fox to react to")
        browser.until(lambda: status_line(browser.text(job_id)).startswith("✅"), 30, "✅ Done")

        job.get_by_role("button", name="React with 🎲").click()  # no emoji picker: the bar's button
        rerun, _ = browser.until(
            lambda: next(
                (
                    (browser.message(other), other)
                    for other in browser.message_ids()
                    if other != job_id and "a fox to react to" in browser.text(other)
                ),
                None,
            ),
            15,
            "the 🎲 rerun",
        )
        assert job.locator(".reaction-chip").inner_text().startswith("🎲")  # toggled on the page

        browser.page.select_option(".playground-channel select", label="#after-dark (age-restricted)")
        browser.until(
            lambda: browser.page.locator("#channel-name").inner_text() == "after-dark", 15, "#after-dark"
        )
        assert "a fox to react to" not in browser.page.locator("#channel-message-list").inner_text()
        assert rerun is not None


def test_cancel_during_a_slow_job_keeps_the_finished_images(
    browser: PlaygroundPage, slow_horde: SimulatorThread
) -> None:
    with playground("--horde-url", slow_horde.base_url, "--apikey", ALICE_KEY) as running:
        browser.open(running.url)
        before = browser.message_ids()
        browser.type_command("imagine", "Tab", "three foxes")
        browser.add_option("count", "3")
        browser.page.keyboard.press("Enter")
        job = browser.new_message(before, "three foxes")
        job_id = str(job.get_attribute("data-message-id"))
        browser.until(lambda: "1 finished" in browser.text(job_id), 20, "the first image done")

        job.get_by_role("button", name="Cancel").click()

        line = browser.until(
            lambda: status_line(browser.text(job_id)).startswith("🛑") and status_line(browser.text(job_id)),
            15,
            "🛑 Cancelled",
        )
        # The bot polls as it would the real Horde (every few seconds): one or two images were
        # finished when the click came; the third was still to come.
        finished = re.search(r"(\d) of 3 images", line)
        assert finished is not None, line
        kept = int(finished.group(1))
        assert 1 <= kept < 3
        browser.until(lambda: job.locator("img").count() == kept, 10, "the finished images, kept")
        [request] = slow_horde.state.ledger().values()
        assert request.end == "cancelled"


def test_a_slow_horde_does_not_freeze_the_world(browser: PlaygroundPage, slow_horde: SimulatorThread) -> None:
    # Every status check of the generation takes 3 s to answer: longer than SimCord's settling.
    slow_horde.state.faults.script("generate_check", Fault.delay(3.0), times=1000)
    with playground("--horde-url", slow_horde.base_url, "--apikey", ALICE_KEY) as running:
        browser.open(running.url)
        _, job_id = browser.imagine("a slow lighthouse")
        browser.until(lambda: slow_horde.counters.calls("generate_check") >= 1, 10, "a slow check")

        # While the bot waits for the Horde, the world still answers at once.
        before = browser.message_ids()
        browser.type_command("help", "Enter", "Enter")
        browser.new_message(before, "/imagine", timeout_s=5)

        browser.until(lambda: status_line(browser.text(job_id)).startswith("✅"), 40, "✅ Done")
        assert "did not settle" not in running.output
        assert "Traceback" not in running.output
        statuses = browser.page.evaluate("window.simcordPreview.lastAction")
        assert statuses["settlement"] == "settled", statuses


def test_ctrl_c_exits_0_within_5_s_and_cancels_on_the_horde(
    browser: PlaygroundPage, slow_horde: SimulatorThread
) -> None:
    running = start_playground("--horde-url", slow_horde.base_url, "--apikey", ALICE_KEY)
    try:
        browser.open(running.url)
        _, job_id = browser.imagine("interrupted")
        browser.until(lambda: "1 processing" in browser.text(job_id), 15, "a job being processed")
    finally:
        code, took = running.stop(signal.SIGINT)

    assert code == 0
    assert took < 5
    assert "Traceback" not in running.output
    [request] = slow_horde.state.ledger().values()
    assert request.end == "cancelled"


REAL_HORDE_ENV = "REAL_HORDE_KEYS"


def real_horde() -> dict[str, str]:
    """``HORDE_URL`` and keys of the real AI Horde server (../shared/real-horde), from the
    ``keys.env`` file that ``REAL_HORDE_KEYS`` names."""
    path = os.environ.get(REAL_HORDE_ENV)
    if not path:
        unavailable(f"needs the real AI Horde server: set {REAL_HORDE_ENV} to its keys.env")
    values = {}
    for line in Path(str(path)).read_text(encoding="utf-8").splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        values[name.strip()] = value.strip().strip("'\"")
    return values


def test_imagine_against_the_real_ai_horde(browser: PlaygroundPage) -> None:
    real = real_horde()
    with playground("--horde-url", real["HORDE_URL"], "--apikey", real["ALICE_KEY"]) as running:
        assert "REAL kudos" in running.output
        browser.open(running.url)
        job, job_id = browser.imagine("a lighthouse on the real horde")

        browser.until(lambda: status_line(browser.text(job_id)).startswith("✅"), 120, "✅ Done")

        assert browser.image_width(job) > 0  # the fake worker's image is a small placeholder
        assert real["ALICE_KEY"] not in browser.page.content()
        assert real["ALICE_KEY"] not in running.output
