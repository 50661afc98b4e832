"""Property tests of the server settings (``bot.services.settings``).

Any text an admin may type for any setting either parses to a value whose canonical text reads back
as the same value, through storage and ``/config show`` (and a fresh service, as after a restart),
or is refused with a :class:`SettingValueError` naming the setting and what is allowed, with nothing
stored and nothing audited. A sequence of changes, some refused, never leaves a contradiction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bot.config import GenerationDefaults
from bot.crypto import KeyRing, generate_key_value
from bot.horde import AIHordeAPIAsyncSimpleClient
from bot.services.settings.config import consistency_problems
from bot.services.settings.registry import REGISTRY, SETTINGS, SettingValueError
from bot.services.settings.service import GuildSettingsService
from bot.storage import SQLiteStorage, SQLiteURL

GUILD = 111
ADMIN = 7
DEFAULTS = GenerationDefaults()
PLAIN = [setting.name for setting in SETTINGS if not setting.secret]

# Texts shaped like each kind of value, near and past the bounds, plus anything at all.
_numbers = st.one_of(
    st.integers(-10, 10_000_001).map(str),
    st.integers(0, 600).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["1_000", "1,048,576", "0x10", "", " ", "١٢", "7.456", "1e3"]),
)
_sizes = st.tuples(
    st.integers(0, 4000), st.integers(0, 4000), st.sampled_from(["x", "×", " x ", "X", "*"])
).map(lambda parts: f"{parts[0]}{parts[2]}{parts[1]}")
_words = st.sampled_from(
    [
        "on",
        "OFF",
        "yes",
        "none",
        "all",
        "-",
        "public",
        "private",
        "age-restricted only",
        "off",
        "imagine, write",
    ]
)
_channels = st.lists(st.integers(10**14, 10**22), max_size=4).map(
    lambda ids: " ".join(f"<#{i}>" if i % 2 else str(i) for i in ids)
)
_lists = st.one_of(
    st.lists(st.text(min_size=0, max_size=30), max_size=8).map(", ".join),
    st.lists(st.text(max_size=10), max_size=30).map(lambda items: str(items).replace("'", '"')),
    st.sampled_from(['["a+", "b,c"]', "(a+)+", "a.*b.*c", "fo{1,3}", "[", "\\1", '["x"', "[1, 2]"]),
)
_anything = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=120)
TEXTS = st.one_of(
    _numbers,
    _sizes,
    _words,
    _channels,
    _lists,
    _anything,
    st.sampled_from(["🔁", "♻️", "⭐", "a", "<:x:123456789012345678>"]),
)
CHANGES = st.lists(st.tuples(st.sampled_from(PLAIN), TEXTS), min_size=1, max_size=8)


def _attempt(parse: Callable[[], Any]) -> Any:
    try:
        return parse()
    except SettingValueError as error:
        return error


@settings(max_examples=400, deadline=None)
@given(name=st.sampled_from(PLAIN), text=TEXTS)
def test_any_text_parses_to_a_value_that_reads_back_or_names_what_is_allowed(name: str, text: str) -> None:
    setting = REGISTRY[name]
    value = _attempt(lambda: setting.read(text))
    if isinstance(value, SettingValueError):
        event("refused")
        assert value.user_message.startswith(f"`{name}`")
        assert setting.allowed in value.user_message
        return
    event("parsed")
    shown = setting.format(value)
    assert setting.read(shown) == value
    assert setting.format(setting.read(shown)) == shown


def _service(storage: SQLiteStorage) -> GuildSettingsService:
    # The Horde client is only used for sponsor keys, which these tests leave alone.
    return GuildSettingsService(
        storage,
        DEFAULTS,
        keyring=KeyRing.from_env_value(generate_key_value()),
        horde=AIHordeAPIAsyncSimpleClient(),
    )


async def _snapshot(storage: SQLiteStorage) -> tuple[dict[str, Any], int]:
    return await storage.guild_settings.get_all(GUILD), len(await storage.guild_settings.audit(GUILD, 10_000))


def test_changes_are_stored_and_shown_whole_or_refused_leaving_nothing(tmp_path: Path) -> None:
    with asyncio.Runner() as runner:
        storage = SQLiteStorage(SQLiteURL(tmp_path / "bot.sqlite3"))
        runner.run(storage.connect())
        try:
            run_changes(runner, storage)
        finally:
            runner.run(storage.close())


def run_changes(runner: asyncio.Runner, storage: SQLiteStorage) -> None:
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(changes=CHANGES)
    def apply(changes: list[tuple[str, str]]) -> None:
        runner.run(_apply(storage, changes))

    apply()


async def _apply(storage: SQLiteStorage, changes: list[tuple[str, str]]) -> None:
    service = _service(storage)
    for name, text in changes:
        before = await _snapshot(storage)
        try:
            change = await service.set(GUILD, name, text, ADMIN)
        except SettingValueError as error:
            refusal = error.user_message
        else:
            refusal = None
        if refusal is not None:
            event("a change refused")
            assert refusal.startswith(f"`{name}`")
            assert await _snapshot(storage) == before  # nothing stored, nothing audited
            continue
        event("a change stored")
        value = REGISTRY[name].read(text)
        assert change.new == REGISTRY[name].format(value)
        config = await service.get(GUILD)
        assert config.values[name] == value
        [shown] = [row for row in service.show(config) if row.name == name]
        assert shown.value == change.new
        assert not consistency_problems(config.values)
    # What was stored reads back the same in a fresh service (a restart), nothing ignored.
    fresh = await _service(storage).get(GUILD)
    assert dict(fresh.values) == dict((await service.get(GUILD)).values)
    assert fresh.overridden == frozenset(await storage.guild_settings.get_all(GUILD))
