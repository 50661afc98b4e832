"""Migration ``split_max_text_length``: a server's stored ``max_text_length`` (prompt characters for
images, tokens for /write) becomes ``max_prompt_length`` and ``max_text_tokens`` with the same value,
so the server behaves as before and each setting now means one thing. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.config import GenerationDefaults
from bot.services.settings.config import build_config

if TYPE_CHECKING:
    from storage_fixtures import Backend

pytest_plugins = ("storage_fixtures",)

GUILD = 111
OTHER_GUILD = 222
ADMIN = 7


def _before_split(backend: Backend) -> int:
    names = [migration.name for migration in backend.migrations]
    return names.index("split_max_text_length")


async def test_a_stored_max_text_length_becomes_both_new_settings(persistent_backend: Backend) -> None:
    older = persistent_backend.migrations[: _before_split(persistent_backend)]
    async with persistent_backend.open(migrations=older) as storage:
        await storage.guild_settings.set(GUILD, "max_text_length", "100", ADMIN)
        await storage.guild_settings.set(GUILD, "steps", "20", ADMIN)
        await storage.guild_settings.set(OTHER_GUILD, "max_steps", "40", ADMIN)

    async with persistent_backend.open() as storage:
        migrated = await storage.guild_settings.get_all(GUILD)
        untouched = await storage.guild_settings.get_all(OTHER_GUILD)

    assert migrated == {"max_prompt_length": "100", "max_text_tokens": "100", "steps": "20"}
    assert untouched == {"max_steps": "40"}
    config = build_config(GUILD, GenerationDefaults(), migrated)
    assert (config.generation.max_prompt_length, config.generation.max_text_tokens) == (100, 100)
    assert config.overridden == {"max_prompt_length", "max_text_tokens", "steps"}


async def test_the_new_settings_are_independent_after_the_migration(persistent_backend: Backend) -> None:
    older = persistent_backend.migrations[: _before_split(persistent_backend)]
    async with persistent_backend.open(migrations=older) as storage:
        await storage.guild_settings.set(GUILD, "max_text_length", "300", ADMIN)

    async with persistent_backend.open() as storage:
        await storage.guild_settings.set(GUILD, "max_text_tokens", "64", ADMIN)
        stored = await storage.guild_settings.get_all(GUILD)

    assert stored == {"max_prompt_length": "300", "max_text_tokens": "64"}
