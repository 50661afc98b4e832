"""A member's /settings document (migration ``member_settings``): stored as written, one per member,
replaced on save and gone after delete. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from bot.storage.sql import SQLStorage

pytest_plugins = ("storage_fixtures",)


async def test_a_member_without_settings_has_none(storage: SQLStorage[Any]) -> None:
    assert await storage.member_settings.get(7) is None
    assert await storage.member_settings.delete(7) is False


async def test_settings_are_stored_as_written_and_replaced_on_save(storage: SQLStorage[Any]) -> None:
    await storage.member_settings.set(7, '{"steps": 30}')
    assert await storage.member_settings.get(7) == '{"steps": 30}'

    await storage.member_settings.set(7, '{"n": 2}')
    assert await storage.member_settings.get(7) == '{"n": 2}'


async def test_settings_are_per_member_and_deleting_forgets_them(storage: SQLStorage[Any]) -> None:
    await storage.member_settings.set(7, '{"steps": 30}')
    await storage.member_settings.set(8, '{"steps": 40}')

    assert await storage.member_settings.delete(7) is True

    assert await storage.member_settings.get(7) is None
    assert await storage.member_settings.get(8) == '{"steps": 40}'
