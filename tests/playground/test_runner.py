"""The playground in this process (bot/playground/runner.py): what it starts, says, and does for the bar."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import discord
import pytest

from bot.playground.runner import Playground, PlaygroundError, PlaygroundOptions, demo_key
from bot.playground.server import BadRequest
from horde_simulator import Knobs, Simulator, SimulatorConfig, run_simulator

ALICE_KEY = "sim-alice-key-00000001"


async def until(probe: Callable[[], bool], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {within_s} s")
        await asyncio.sleep(0.05)


@pytest.fixture
async def playground() -> AsyncIterator[tuple[Playground, list[str]]]:
    notes: list[str] = []
    async with Playground(PlaygroundOptions(speed=0.2), note=notes.append) as running:
        yield running, notes


@pytest.fixture
async def own_horde() -> AsyncIterator[Simulator]:
    async with run_simulator(SimulatorConfig(knobs=Knobs(speed=0.2))) as sim:
        yield sim


async def test_it_needs_no_token_and_says_its_key_is_thrown_away(
    playground: tuple[Playground, list[str]],
) -> None:
    running, notes = playground
    assert running.url.startswith("http://127.0.0.1:")
    assert running.bot is not None
    assert running.bot.settings.discord_token is None
    assert any("throw-away encryption key" in note for note in notes)
    state = running.state()
    assert [(channel["name"], channel["current"]) for channel in state["channels"]] == [
        ("general", True),
        ("after-dark", False),
    ]
    assert state["demoKey"] == demo_key() == ALICE_KEY
    assert running.world is not None
    [welcome] = running.world.general.history()
    assert ALICE_KEY in welcome.content


async def test_the_bar_reacts_and_opens_message_menus_as_the_viewer(
    playground: tuple[Playground, list[str]],
) -> None:
    running, _ = playground
    world = running.world
    assert world is not None
    async with running.lock:
        await world.you.slash(world.general, "imagine", prompt="a fox")
    result = world.general.last_message
    await until(lambda: world.general.last_message.content.startswith("✅"), 20, "finished result")

    async with running.lock:
        before = [m.id for m in world.general.history(viewer=world.you)]
        await running.message_action(world.you.id, result.id, "menu:Describe image")
        [caption] = [m for m in world.general.history(viewer=world.you) if m.id not in before]
        assert caption.content.startswith("**Caption**")
        with pytest.raises(BadRequest):
            await running.message_action(world.you.id, result.id, "menu:Delete everything")
        with pytest.raises(BadRequest):
            await running.message_action(world.you.id, 1, "react:❌")
        await running.message_action(world.you.id, result.id, "react:❌")  # the requester deletes it
    await until(lambda: result.id not in [m.id for m in world.general.history()], 10, "deleted result")


async def test_switching_channel_opens_the_other_one(playground: tuple[Playground, list[str]]) -> None:
    running, _ = playground
    world = running.world
    assert world is not None
    async with running.lock:
        await running.switch_channel(world.after_dark.id)
        with pytest.raises(BadRequest):
            await running.switch_channel(1)
    assert [channel["current"] for channel in running.state()["channels"]] == [False, True]
    bot_view = running.bot.get_channel(world.after_dark.id) if running.bot else None
    assert isinstance(bot_view, discord.TextChannel)
    assert bot_view.is_nsfw()


async def test_with_a_real_key_it_warns_and_keeps_the_key_out_of_logs_and_page(
    own_horde: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    notes: list[str] = []
    options = PlaygroundOptions(horde_url=own_horde.base_url, apikey=ALICE_KEY)
    async with Playground(options, note=notes.append) as running:
        state = running.state()
        world = running.world
        assert world is not None
        async with running.lock:
            await world.you.slash(world.general, "me")

        def account() -> str:
            last = world.general.history(viewer=world.you)[-1]
            return str([embed.to_dict() for embed in last.embeds])

        # The bot's wait on the Horde is external to SimCord: the answer comes after the action.
        await until(lambda: "alice#1" in account(), 10, "/me's answer")
        welcome = world.general.history()[0].content

    assert any("REAL kudos" in note for note in notes)
    assert any("logged in as alice#1" in note for note in notes)
    assert state["demoKey"] is None
    for text in (*notes, caplog.text, str(state), welcome):
        assert ALICE_KEY not in text


async def test_a_refused_key_stops_the_start_with_one_line(own_horde: Simulator) -> None:
    options = PlaygroundOptions(horde_url=own_horde.base_url, apikey="not-a-key-of-this-horde")
    with pytest.raises(PlaygroundError, match="refused the --apikey key"):
        async with Playground(options, note=lambda _: None):
            pass


async def test_a_bad_horde_url_stops_the_start_with_one_line() -> None:
    with pytest.raises(PlaygroundError, match="--horde-url"):
        async with Playground(PlaygroundOptions(horde_url="ftp://x"), note=lambda _: None):
            pass


async def test_a_config_file_brings_its_settings_and_database(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'mine.sqlite3'}"
    config = tmp_path / "config.toml"
    config.write_text(f"[database]\nurl = '{database}'\n[progress]\nedit_interval_s = 7.0\n", "utf-8")

    async with Playground(PlaygroundOptions(config=config), note=lambda _: None) as running:
        assert running.bot is not None
        settings = running.bot.settings

    assert settings.database.url == database
    assert settings.progress.edit_interval_s == 7.0
    assert settings.bot.shutdown_deadline_s <= 3.0
    assert (tmp_path / "mine.sqlite3").exists()
