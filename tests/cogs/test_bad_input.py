"""Bad input end to end on SimCord: broken, hostile and oversized attachments for /imagine (img2img),
/alchemy and the image context menus; hostile prompts; invalid API keys at /login.

Each case gets a short private answer saying what is allowed, nothing public stays behind, nothing
is started on the AI Horde and nothing is journalled. (Single-command cases already covered
elsewhere: a .txt file and a 4000² bomb for /imagine and /alchemy, mentions in an /imagine prompt,
a refused key at /login, in ``test_imagine_command.py``, ``test_alchemy.py``, ``test_accounts.py``.)
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import discord
import PIL.Image
import pytest
import simcord
from test_imagine_support import NO_MENTIONS_JSON, payload, response_of

from bot.services.alchemy.request import NO_IMAGE
from bot.services.image.source import SOURCE_IMAGE_MAX_BYTES
from cogs.accounts import APIKEY_INPUT_ID
from horde_simulator import Knobs, Simulator, SimulatorConfig

if TYPE_CHECKING:
    from conftest import Server

HORDE_SUBMITS = ("generate_async", "text_async", "interrogate_async")


@pytest.fixture
def horde_sim_config() -> SimulatorConfig:
    return SimulatorConfig(knobs=Knobs(speed=0.05, worker_threads=2))


# -- files ------------------------------------------------------------------------------------------


def _encoded(image_format: str) -> bytes:
    out = io.BytesIO()
    # Noise, so the compressed data is long enough to cut in the middle.
    PIL.Image.frombytes("RGB", (64, 64), bytes(range(256)) * 48).save(out, format=image_format)
    return out.getvalue()


def truncated_png() -> bytes:
    data = _encoded("PNG")
    return data[: len(data) // 2]


def truncated_jpeg() -> bytes:
    data = _encoded("JPEG")
    return data[: len(data) // 2]


def header_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A 100-byte PNG whose header claims ``width``×``height`` pixels (2.7 GB as RGB), crafted
    chunk by chunk so the test never allocates the image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def huge_file() -> bytes:
    """One byte over the limit; its size alone refuses it, before any download."""
    return b"\x89PNG\r\n\x1a\n" + bytes(SOURCE_IMAGE_MAX_BYTES + 1 - 8)


UNREADABLE = "can't be read as an image."
TOO_MANY_PIXELS = "is too large; source images may have at most 9,437,184 pixels (3072×3072)."
TOO_MANY_BYTES = "is 10.0 MB; source images may be at most 10.0 MB."
NOT_AN_IMAGE = "isn't an image. Attach a PNG, JPEG or WebP file."

FILES: dict[str, tuple[str, Callable[[], bytes], str]] = {
    "non-image": ("notes.txt", lambda: b"just some text, not an image", NOT_AN_IMAGE),
    "non-image named .png": ("fake.png", lambda: b"<html>not an image</html>", UNREADABLE),
    "truncated PNG": ("cut.png", truncated_png, UNREADABLE),
    "truncated JPEG": ("cut.jpg", truncated_jpeg, UNREADABLE),
    "30000x30000 bomb": ("bomb.png", header_bomb, TOO_MANY_PIXELS),
    "huge file": ("huge.png", huge_file, TOO_MANY_BYTES),
}


def test_the_bomb_is_small_and_claims_30000_squared_pixels() -> None:
    data = header_bomb()
    assert len(data) < 200
    PIL.Image.MAX_IMAGE_PIXELS, saved = None, PIL.Image.MAX_IMAGE_PIXELS
    try:
        with PIL.Image.open(io.BytesIO(data)) as image:
            assert image.size == (30_000, 30_000)
    finally:
        PIL.Image.MAX_IMAGE_PIXELS = saved


# -- what a refusal leaves behind ---------------------------------------------------------------


def answers(result: simcord.InteractionResult) -> list[simcord.ResponseMessage]:
    return [*([result.response] if result.response else []), *result.followups]


def bot_messages_seen_by(server: Server, member: simcord.MemberActor) -> list[discord.Message]:
    assert server.bot.user is not None
    return [m for m in server.channel.history(viewer=member) if m.author.id == server.bot.user.id]


async def assert_refused_privately(
    server: Server, horde_sim: Simulator, result: simcord.InteractionResult, expected: str
) -> None:
    shown = [answer for answer in answers(result) if answer.content]
    assert shown, "no answer at all"
    assert all(answer.ephemeral for answer in shown), [a.content for a in shown]
    assert any(expected in (answer.content or "") for answer in shown), [a.content for a in shown]
    assert all(len(answer.content or "") <= 300 for answer in shown)  # short
    assert bot_messages_seen_by(server, server.bob) == []  # nothing public stays behind
    assert [horde_sim.counters.calls(name) for name in HORDE_SUBMITS] == [0, 0, 0]
    assert await server.bot.storage.jobs.list_recent(server.alice.id, limit=5) == []


Entry = Callable[["Server", tuple[str, bytes]], Awaitable[simcord.InteractionResult]]


async def _imagine(server: Server, file: tuple[str, bytes]) -> simcord.InteractionResult:
    return await server.alice.slash(server.channel, "imagine", prompt="a fox", source_image=file)


async def _alchemy(server: Server, file: tuple[str, bytes]) -> simcord.InteractionResult:
    return await server.alice.slash(server.channel, "alchemy", image=file, operation="caption")


def _menu(name: str) -> Entry:
    async def use(server: Server, file: tuple[str, bytes]) -> simcord.InteractionResult:
        posted = await server.alice.send(server.channel, "look", attachments=[file])
        return await server.alice.context_menu(server.channel, name, posted)

    return use


ENTRIES: dict[str, Entry] = {
    "/imagine": _imagine,
    "/alchemy": _alchemy,
    "Describe image": _menu("Describe image"),
    "Upscale image": _menu("Upscale image"),
}


@pytest.mark.parametrize("entry", list(ENTRIES))
@pytest.mark.parametrize("case", list(FILES))
async def test_a_bad_attachment_is_refused_privately_and_starts_nothing(
    server: Server, horde_sim: Simulator, entry: str, case: str
) -> None:
    filename, make, expected = FILES[case]
    if entry in ("Describe image", "Upscale image") and expected == NOT_AN_IMAGE:
        expected = NO_IMAGE  # the menus look for an image among the message's files

    result = await ENTRIES[entry](server, (filename, make()))

    await assert_refused_privately(server, horde_sim, result, expected)
    if expected not in (NOT_AN_IMAGE, NO_IMAGE):
        assert filename in "".join(answer.content or "" for answer in answers(result))


async def test_a_huge_file_is_refused_by_its_size_without_downloading_it(
    server: Server, horde_sim: Simulator
) -> None:
    result = await server.alice.slash(
        server.channel, "alchemy", image=("huge.png", huge_file()), operation="caption"
    )

    await assert_refused_privately(server, horde_sim, result, TOO_MANY_BYTES)
    # Answered at once, from attachment.size: no defer, so no download and no public "thinking".
    assert result.ephemeral
    assert not result.deferred


# -- prompts --------------------------------------------------------------------------------------


def bot_payloads(server: Server) -> list[dict[str, Any]]:
    """Every message the bot posted or edited (through the channel or an interaction)."""
    return [
        payload(entry)
        for entry in server.env.http_requests
        if entry.method in ("POST", "PATCH")
        and ("/messages" in entry.path or entry.path.startswith("/webhooks/") or "/callback" in entry.path)
        and isinstance(entry.json, dict)
    ]


def message_payloads(server: Server) -> list[dict[str, Any]]:
    found = []
    for body in bot_payloads(server):
        data = body.get("data", body) if "type" in body and "data" in body else body
        if isinstance(data, dict) and ("content" in data or "embeds" in data):
            found.append(data)
    return found


HOSTILE = "@everyone @here {bob} <@&{role}> **bold** __under__ ||spoiler|| `code` # Heading [x](https://evil.example)"


@pytest.mark.parametrize("command", ["imagine", "write"])
async def test_a_hostile_prompt_pings_nobody_and_its_markdown_stays_inert(
    server: Server, command: str
) -> None:
    role = server.guild.create_role("Everyone-ish", permissions=discord.Permissions.none())
    prompt = HOSTILE.format(bob=server.bob.mention, role=role.id)

    result = await server.alice.slash(server.channel, command, prompt=prompt)

    message = response_of(result)
    assert not result.ephemeral
    sent = message_payloads(server)
    assert sent
    assert all(body.get("allowed_mentions") == NO_MENTIONS_JSON for body in sent), sent
    stored = server.env.backend.get_message(server.channel.id, message.id)
    assert (stored.ping_user_ids, stored.ping_role_ids) == ([], [])
    assert not message.message.mention_everyone
    # The headline in the content escapes the prompt's markdown.
    headlines = [body["content"] for body in sent if "bold" in (body.get("content") or "")]
    assert headlines
    assert all(r"\*\*bold\*\*" in text and r"\|\|spoiler\|\|" in text for text in headlines)


@pytest.mark.parametrize("command", ["imagine", "write"])
async def test_a_10000_character_prompt_never_reaches_the_bot(server: Server, command: str) -> None:
    with pytest.raises(simcord.OptionError):
        await server.alice.slash(server.channel, command, prompt="x" * 10_000)


async def test_a_prompt_longer_than_the_server_allows_is_refused_privately(
    server: Server, horde_sim: Simulator
) -> None:
    # Discord lets 6000 characters through; the server's max_prompt_length (2000 by default) doesn't.
    for command in ("imagine", "write"):
        result = await server.alice.slash(server.channel, command, prompt="x" * 6000)
        [answer] = answers(result)
        assert answer.ephemeral
        assert "at most 2,000 characters" in (answer.content or "")
    assert bot_messages_seen_by(server, server.bob) == []
    assert [horde_sim.counters.calls(name) for name in HORDE_SUBMITS] == [0, 0, 0]


@pytest.mark.parametrize(
    ("command", "expected"),
    [("imagine", "The prompt must not be empty"), ("write", "The prompt can't be empty.")],
)
@pytest.mark.parametrize("prompt", ["\u200b", "\u200b\u200c\u200d\u2060\ufeff", " \u200b "])
async def test_a_prompt_of_only_zero_width_characters_is_refused_privately(
    server: Server, horde_sim: Simulator, command: str, expected: str, prompt: str
) -> None:
    result = await server.alice.slash(server.channel, command, prompt=prompt)

    await assert_refused_privately(server, horde_sim, result, expected)


async def test_zero_width_characters_inside_a_prompt_are_kept(server: Server, horde_sim: Simulator) -> None:
    result = await server.alice.slash(server.channel, "imagine", prompt="a f\u200box 👩\u200d🚀")

    assert not result.ephemeral
    [job] = await server.bot.storage.jobs.list_recent(server.alice.id, limit=5)
    assert json.loads(job.request_json)["prompt"] == "a f\u200box 👩\u200d🚀"


# -- API keys at /login ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("sim-unknown-key-000001", "The AI Horde did not accept that API key"),
        ("0000000000", "That's the anonymous key"),
        ("key with spaces inside!", "doesn't look like an AI Horde API key"),
        ("x" * 64, "doesn't look like an AI Horde API key"),
        ("<@&123456789012345678>", "doesn't look like an AI Horde API key"),
    ],
)
async def test_an_invalid_key_at_login_is_refused_privately_and_not_stored(
    server: Server, horde_sim: Simulator, key: str, expected: str
) -> None:
    shown = await server.alice.slash(server.channel, "login")

    result = await server.alice.submit_modal(shown, {APIKEY_INPUT_ID: key})

    [answer] = answers(result)
    assert answer.ephemeral
    assert expected in (answer.content or "")
    assert key not in (answer.content or "")
    assert await server.bot.storage.users.get(server.alice.id) is None
    assert bot_messages_seen_by(server, server.bob) == []


@pytest.mark.parametrize("key", ["short", "x" * 200])
async def test_a_key_of_impossible_length_is_stopped_by_the_modal_itself(server: Server, key: str) -> None:
    shown = await server.alice.slash(server.channel, "login")

    with pytest.raises(simcord.SetupError):
        await server.alice.submit_modal(shown, {APIKEY_INPUT_ID: key})
    assert await server.bot.storage.users.get(server.alice.id) is None
