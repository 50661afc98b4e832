from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.storage.sql import SQLStorage

if TYPE_CHECKING:
    from storage_fixtures import Backend

pytest_plugins = ("storage_fixtures",)

GUILD = 111
OTHER_GUILD = 222
ADMIN = 5
OTHER_ADMIN = 6

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)


async def test_empty_guild_has_no_overrides(storage: SQLStorage[Any]) -> None:
    record = await storage.guild_settings.get(GUILD)
    assert record.values == {}
    assert record.updated_at is None
    assert await storage.guild_settings.get_all(GUILD) == {}
    assert await storage.guild_settings.audit(GUILD) == []


async def test_set_and_reset_write_audit_rows(storage: SQLStorage[Any], clock: Any) -> None:
    settings_repo = storage.guild_settings
    assert await settings_repo.set(GUILD, "steps", 30, actor_id=ADMIN) is True
    first_change = clock.now
    assert await settings_repo.set(GUILD, "steps", 40, actor_id=OTHER_ADMIN) is True
    assert await settings_repo.get_all(GUILD) == {"steps": 40}
    record = await settings_repo.get(GUILD)
    assert record.updated_at == clock.now

    assert await settings_repo.reset(GUILD, "steps", actor_id=ADMIN) is True
    assert await settings_repo.get_all(GUILD) == {}

    audit = await settings_repo.audit(GUILD)
    assert [(a.key, a.old_value_json, a.new_value_json, a.actor_id) for a in audit] == [
        ("steps", "40", None, ADMIN),
        ("steps", "30", "40", OTHER_ADMIN),
        ("steps", None, "30", ADMIN),
    ]
    assert audit[-1].at == first_change
    assert audit[0].id > audit[1].id > audit[2].id


async def test_no_op_changes_are_not_audited(storage: SQLStorage[Any]) -> None:
    await storage.guild_settings.set(GUILD, "model", "a", actor_id=ADMIN)
    assert await storage.guild_settings.set(GUILD, "model", "a", actor_id=ADMIN) is False
    assert await storage.guild_settings.reset(GUILD, "never-set", actor_id=ADMIN) is False
    assert len(await storage.guild_settings.audit(GUILD)) == 1


async def test_guilds_are_isolated_and_audit_is_limited(storage: SQLStorage[Any]) -> None:
    for steps in range(5):
        await storage.guild_settings.set(GUILD, "steps", steps, actor_id=ADMIN)
    await storage.guild_settings.set(OTHER_GUILD, "steps", 99, actor_id=ADMIN)
    assert await storage.guild_settings.get_all(GUILD) == {"steps": 4}
    assert await storage.guild_settings.get_all(OTHER_GUILD) == {"steps": 99}
    latest = await storage.guild_settings.audit(GUILD, limit=2)
    assert [a.new_value_json for a in latest] == ["4", "3"]
    assert {a.guild_id for a in await storage.guild_settings.audit(GUILD)} == {GUILD}


async def test_set_many_changes_and_audits_only_what_differs(storage: SQLStorage[Any]) -> None:
    await storage.guild_settings.set(GUILD, "steps", 30, actor_id=ADMIN)
    changed = await storage.guild_settings.set_many(
        GUILD, {"steps": 30, "width": 768, "nsfw": False}, actor_id=OTHER_ADMIN
    )
    assert sorted(changed) == ["nsfw", "width"]
    assert await storage.guild_settings.get_all(GUILD) == {"steps": 30, "width": 768, "nsfw": False}
    assert {a.key for a in await storage.guild_settings.audit(GUILD) if a.actor_id == OTHER_ADMIN} == {
        "width",
        "nsfw",
    }


async def test_set_many_is_atomic_when_a_write_fails(
    storage: SQLStorage[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    await storage.guild_settings.set(GUILD, "steps", 30, actor_id=ADMIN)
    original_write = storage.guild_settings._write

    async def failing_write(guild_id: int, key: str, value_json: str | None, actor_id: int) -> bool:
        if key == "width":
            raise RuntimeError("disk full")
        return await original_write(guild_id, key, value_json, actor_id)

    monkeypatch.setattr(storage.guild_settings, "_write", failing_write)
    with pytest.raises(RuntimeError, match="disk full"):
        await storage.guild_settings.set_many(GUILD, {"steps": 50, "width": 768}, actor_id=ADMIN)
    monkeypatch.undo()
    assert await storage.guild_settings.get_all(GUILD) == {"steps": 30}
    assert len(await storage.guild_settings.audit(GUILD)) == 1


async def test_set_many_validates_every_value_before_writing(storage: SQLStorage[Any]) -> None:
    with pytest.raises(ValueError, match="'bad': the value is not JSON-serialisable"):
        await storage.guild_settings.set_many(GUILD, {"good": 1, "bad": object()}, actor_id=ADMIN)
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        await storage.guild_settings.set(GUILD, "nan", float("nan"), actor_id=ADMIN)
    with pytest.raises(ValueError, match="non-empty name"):
        await storage.guild_settings.set(GUILD, " ", 1, actor_id=ADMIN)
    assert await storage.guild_settings.get_all(GUILD) == {}


async def test_an_outer_transaction_rolls_back_settings_and_audit(storage: SQLStorage[Any]) -> None:
    async def failing_transaction() -> None:
        async with storage.transaction():
            await storage.guild_settings.set_many(GUILD, {"a": 1, "b": 2}, actor_id=ADMIN)
            assert await storage.guild_settings.get_all(GUILD) == {"a": 1, "b": 2}
            raise RuntimeError

    with pytest.raises(RuntimeError):
        await failing_transaction()
    assert await storage.guild_settings.get_all(GUILD) == {}
    assert await storage.guild_settings.audit(GUILD) == []


@pytest.fixture
def guild_ids() -> Iterator[int]:
    return itertools.count(1000)


# The database outlives the examples: each example writes to a guild of its own.
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.dictionaries(
        st.text(min_size=1, max_size=20).filter(lambda key: bool(key.strip()) and key.isprintable()),
        json_values,
        max_size=5,
    )
)
def test_json_values_round_trip(backend: Backend, guild_ids: Iterator[int], values: dict[str, Any]) -> None:
    guild_id = next(guild_ids)

    async def scenario() -> dict[str, Any]:
        async with backend.open() as storage:
            await storage.guild_settings.set_many(guild_id, values, actor_id=ADMIN)
            return await storage.guild_settings.get_all(guild_id)

    assert json.dumps(asyncio.run(scenario()), sort_keys=True) == json.dumps(values, sort_keys=True)


@pytest.mark.parametrize("name", ["a\x00b", "tab\there", "line\nbreak", "nbsp\u00a0"])
async def test_setting_names_must_be_printable(storage: SQLStorage[Any], name: str) -> None:
    with pytest.raises(ValueError, match="must be printable"):
        await storage.guild_settings.set(GUILD, name, 1, actor_id=ADMIN)
    with pytest.raises(ValueError, match="must be printable"):
        await storage.guild_settings.reset(GUILD, name, actor_id=ADMIN)
    assert await storage.guild_settings.set(GUILD, "model#123 (ünïcode ok)", 1, actor_id=ADMIN) is True
