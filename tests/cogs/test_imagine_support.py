"""Shared fixtures and helpers of the /imagine SimCord tests (this module holds no tests).

Import what a test module needs: ``from test_imagine_support import ...``; imported fixtures apply
to the importing module.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import discord
import PIL.Image
import pytest
import simcord

from bot.config import Settings
from bot.storage import JobRecord

if TYPE_CHECKING:
    from conftest import Server

EDIT_INTERVAL_S = 0.01
BAR_WIDTH = 10
NO_MENTIONS_JSON = {"parse": []}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The conftest settings with a tiny edit interval, so every progress change is shown."""
    # model_copy does not validate: ProgressSettings allows no interval under 1 s.
    progress = settings.progress.model_copy(
        update={"edit_interval_s": EDIT_INTERVAL_S, "bar_width": BAR_WIDTH}
    )
    return settings.model_copy(update={"progress": progress})


async def until(predicate: Callable[[], bool], *, within_s: float = 3.0) -> None:
    """Wait (in real time) for something outside the bot, e.g. the simulator, to happen."""
    deadline = time.perf_counter() + within_s
    while not predicate():
        if time.perf_counter() > deadline:
            raise AssertionError("timed out waiting for the simulator")
        await asyncio.sleep(0.01)


def message_edits(server: Server, message_id: int) -> list[Any]:
    """Every PATCH of the message, through the channel or the interaction webhook, in order."""
    return [
        entry
        for entry in server.env.http_requests
        if entry.method == "PATCH"
        and (entry.path.endswith(f"/messages/{message_id}") or entry.path.endswith("/messages/@original"))
    ]


def payload(entry: Any) -> dict[str, Any]:
    """The JSON body of a recorded request (``payload_json`` of a multipart upload)."""
    body = entry.json
    if isinstance(body, dict) and "payload_json" in body and isinstance(body["payload_json"], dict):
        return body["payload_json"]
    assert isinstance(body, dict)
    return body


def response_of(result: simcord.InteractionResult) -> simcord.ResponseMessage:
    assert result.response is not None
    return result.response


def custom_ids(message: simcord.ResponseMessage | discord.Message) -> list[str]:
    components = message.components
    ids: list[str] = []
    for row in components:
        children = row.get("components", []) if isinstance(row, dict) else row.to_dict().get("components", [])
        ids += [child["custom_id"] for child in children if "custom_id" in child]
    return ids


async def journal_of(server: Server, user: simcord.MemberActor) -> list[JobRecord]:
    """The member's jobs, newest first."""
    return await server.bot.storage.jobs.list_recent(user.id, limit=50)


async def only_job(server: Server, user: simcord.MemberActor) -> JobRecord:
    [job] = await journal_of(server, user)
    return job


def phone_photo(width: int, height: int) -> bytes:
    """A JPEG stored ``width``×``height`` with EXIF orientation 6 (shown turned 90° clockwise,
    so ``height``×``width`` upright), as a phone held upright saves it. Its stored left half is
    red, its right half blue: upright, red is on top."""
    image = PIL.Image.new("RGB", (width, height), "blue")
    image.paste("red", (0, 0, width // 2, height))
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    return out.getvalue()
