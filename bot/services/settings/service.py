"""The server settings service: reads a server's configuration (cached) and writes its settings
(validated, audited, all-or-nothing).

Values stored under an older ``config.toml`` that no longer fit are ignored with a warning rather
than breaking the server (:func:`~bot.services.settings.config.build_config`). Per-channel overrides
are stored under ``<name>#<channel id>``. The sponsor key is kept apart (``sponsor.py``).
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from bot.config import GenerationDefaults
from bot.crypto import KeyRing
from bot.horde import AIHordeAPIAsyncSimpleClient
from bot.services.keys import KeyService, ResolvedKey, SecretRegistry
from bot.services.settings.config import GuildConfig, build_config, consistency_problems
from bot.services.settings.patterns import ALLOWED
from bot.services.settings.registry import (
    REGISTRY,
    SETTINGS,
    Setting,
    SettingGroup,
    SettingValueError,
    get_setting,
    storage_key,
)
from bot.services.settings.sponsor import SponsorKeys, describe
from bot.storage import GuildSettingAuditRecord, Storage


@dataclass(frozen=True, slots=True)
class SettingChange:
    """What ``set`` or ``reset`` did: ``old`` and ``new`` as ``/config show`` prints them."""

    name: str
    channel_id: int | None
    old: str
    new: str
    changed: bool


@dataclass(frozen=True, slots=True)
class ShownSetting:
    name: str
    group: SettingGroup
    value: str
    overridden: bool
    description: str


NOT_PER_CHANNEL_MESSAGE: Final = (
    "`{name}` is a server-wide setting; it can't be set per channel. Per channel: {names}."
)


class GuildSettingsService:
    """Reads and writes server settings. Reads are cached per guild, for at most ``cache_ttl_s``.

    Several bot processes may share the database. This service's own writes invalidate at once;
    other processes' writes arrive through ``storage.watch_guild_settings`` where the backend
    pushes them (PostgreSQL), and the time limit bounds how stale a guild may be otherwise (SQLite
    shared by processes, or the push connection down). ``cache_ttl_s = 0`` disables the cache.
    """

    DEFAULT_CACHE_TTL_S: Final = 30.0
    DEFAULT_CACHE_SIZE: Final = 10_000
    """Servers kept at once; past it the least recently read is dropped (read again when needed)."""

    def __init__(
        self,
        storage: Storage,
        defaults: GenerationDefaults,
        *,
        keyring: KeyRing,
        horde: AIHordeAPIAsyncSimpleClient,
        redactor: SecretRegistry | None = None,
        cache_ttl_s: float = DEFAULT_CACHE_TTL_S,
        cache_size: int = DEFAULT_CACHE_SIZE,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if cache_ttl_s < 0:
            raise ValueError("cache_ttl_s must not be negative")
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        self._storage = storage
        self._defaults = defaults
        self._sponsor = SponsorKeys(storage, KeyService(keyring, horde, redactor=redactor))
        self._cache_ttl_s = cache_ttl_s
        # Looked up at each call, not bound at import, so a patched clock (SimCord's virtual one) applies.
        self._clock = clock or (lambda: time.monotonic())
        # guild → (config, when it was read), least recently read first; at most cache_size.
        self._cache: OrderedDict[int, tuple[GuildConfig, float]] = OrderedDict()
        self._cache_size = cache_size
        # Bumped on every invalidation (per guild, and for all at once), so a read that started
        # before a write does not cache what it read. Only guilds being read have an entry.
        self._versions: dict[int, int] = {}
        self._readers: Counter[int] = Counter()
        self._generation = 0
        self._dm_config = build_config(None, defaults, {})
        self._unwatch = storage.watch_guild_settings(self._changed_in_storage)

    def __repr__(self) -> str:
        return f"GuildSettingsService({self._storage!r}, cached={len(self._cache)})"

    async def get(self, guild_id: int | None) -> GuildConfig:
        """The configuration in ``guild_id`` (``None``, a DM: the ``config.toml`` defaults)."""
        if guild_id is None:
            return self._dm_config
        cached = self._cache.get(guild_id)
        if cached is not None:
            config, read_at = cached
            if self._clock() - read_at < self._cache_ttl_s:
                self._cache.move_to_end(guild_id)
                return config
            del self._cache[guild_id]
        version = (self._generation, self._versions.get(guild_id, 0))
        read_at = self._clock()
        self._readers[guild_id] += 1
        try:
            config = await self._load(guild_id)
        finally:
            unchanged = (self._generation, self._versions.get(guild_id, 0)) == version
            self._readers[guild_id] -= 1
            if not self._readers[guild_id]:
                del self._readers[guild_id]
                self._versions.pop(guild_id, None)
        if self._cache_ttl_s > 0 and unchanged:
            self._cache[guild_id] = (config, read_at)
            self._cache.move_to_end(guild_id)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return config

    def invalidate(self, guild_id: int) -> None:
        if guild_id in self._readers:
            self._versions[guild_id] = self._versions.get(guild_id, 0) + 1
        self._cache.pop(guild_id, None)

    def invalidate_all(self) -> None:
        self._generation += 1
        self._cache.clear()

    def close(self) -> None:
        """Stop watching the storage for other processes' changes."""
        self._unwatch()

    def _changed_in_storage(self, guild_id: int | None) -> None:
        if guild_id is None:
            self.invalidate_all()
        else:
            self.invalidate(guild_id)

    async def _load(self, guild_id: int) -> GuildConfig:
        stored = await self._storage.guild_settings.get_all(guild_id)
        sponsor_username = await self._sponsor.username(guild_id)
        return build_config(guild_id, self._defaults, stored, sponsor_username=sponsor_username)

    def show(self, config: GuildConfig) -> list[ShownSetting]:
        """Every setting with its current value as text, in registry (group) order."""
        shown = []
        for setting in SETTINGS:
            value = self._value_text(config, setting, None)
            shown.append(
                ShownSetting(
                    setting.name, setting.group, value, setting.name in config.overridden, setting.description
                )
            )
        if config.refused_patterns:
            shown.append(
                ShownSetting(
                    "blocked_patterns not applied",
                    SettingGroup.filters,
                    "; ".join(config.refused_patterns),
                    True,
                    "Stored patterns the bot can no longer match safely: set blocked_patterns again "
                    f"without them. Allowed: {ALLOWED}.",
                )
            )
        for channel_id, overrides in sorted(config.channel_overrides.items()):
            for name, value in overrides.items():
                setting = REGISTRY[name]
                shown.append(
                    ShownSetting(
                        f"{name} in <#{channel_id}>",
                        setting.group,
                        setting.format(value),
                        True,
                        setting.description,
                    )
                )
        return shown

    async def set(
        self, guild_id: int, name: str, text: str, actor_id: int, *, channel_id: int | None = None
    ) -> SettingChange:
        """Validate ``text`` for setting ``name`` against the others and store it with its audit row.

        Raises :class:`SettingValueError` naming what is allowed; then nothing was stored.
        """
        setting = self._writable(name, channel_id)
        if setting.secret:
            old_username, username = await self._sponsor.set(guild_id, text, actor_id)
            self.invalidate(guild_id)
            return SettingChange(setting.name, None, describe(old_username), describe(username), True)
        value = setting.read(text)
        config = await self.get(guild_id)
        if channel_id is None:
            _refuse_contradiction(config, setting, value, f"`{setting.name}`")
        new = setting.format(value)
        key = storage_key(setting.name, channel_id)
        changed = await self._storage.guild_settings.set(guild_id, key, new, actor_id)
        return self._changed(guild_id, config, setting, channel_id, new, changed)

    async def reset(
        self, guild_id: int, name: str, actor_id: int, *, channel_id: int | None = None
    ) -> SettingChange:
        """Back to the ``config.toml`` default (or, for a channel, to the server's value)."""
        setting = self._writable(name, channel_id)
        config = await self.get(guild_id)
        if setting.secret:
            changed = await self._sponsor.delete(guild_id, actor_id)
            return self._changed(guild_id, config, setting, None, describe(None), changed)
        if channel_id is None:
            fallback = setting.default(self._defaults)
            _refuse_contradiction(config, setting, fallback, f"`{setting.name}` can't be reset")
        else:
            fallback = config.values[setting.name]
        key = storage_key(setting.name, channel_id)
        changed = await self._storage.guild_settings.reset(guild_id, key, actor_id)
        return self._changed(guild_id, config, setting, channel_id, setting.format(fallback), changed)

    async def audit(self, guild_id: int, limit: int = 20) -> list[GuildSettingAuditRecord]:
        return await self._storage.guild_settings.audit(guild_id, limit)

    async def sponsor_key(self, guild_id: int | None) -> ResolvedKey | None:
        """The server's sponsor key, decrypted for one request, or ``None``."""
        return await self._sponsor.resolve(guild_id)

    def _writable(self, name: str, channel_id: int | None) -> Setting[Any]:
        setting = get_setting(name)
        if channel_id is not None and not setting.per_channel:
            names = ", ".join(s.name for s in SETTINGS if s.per_channel)
            raise SettingValueError(NOT_PER_CHANNEL_MESSAGE.format(name=setting.name, names=names))
        return setting

    def _changed(
        self,
        guild_id: int,
        config: GuildConfig,
        setting: Setting[Any],
        channel_id: int | None,
        new: str,
        changed: bool,
    ) -> SettingChange:
        """What a stored change did, against ``config`` read before it; the cache forgets the server."""
        self.invalidate(guild_id)
        old = self._value_text(config, setting, channel_id)
        return SettingChange(setting.name, channel_id, old, new, changed)

    @staticmethod
    def _value_text(config: GuildConfig, setting: Setting[Any], channel_id: int | None) -> str:
        if setting.secret:
            return describe(config.sponsor_username)
        return setting.format(config.in_channel(setting, channel_id))


def _refuse_contradiction(config: GuildConfig, setting: Setting[Any], value: Any, refusal: str) -> None:
    """Raise :class:`SettingValueError` (``refusal``, then why) if ``value`` contradicts another setting."""
    problems = consistency_problems({**config.values, setting.name: value})
    if setting.name in problems:
        raise SettingValueError(f"{refusal}: {problems[setting.name]}.")
