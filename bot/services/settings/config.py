"""A server's configuration: the ``config.toml`` defaults with the server's stored overrides applied.

:class:`GuildConfig` subclasses the declarations (:class:`~bot.services.settings.registry.ServerSettings`),
so every setting is a typed attribute; :func:`build_config` fills it from what is stored.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import Field, PrivateAttr

from bot.config import GenerationDefaults
from bot.errors import BotError
from bot.services.settings.parsers import stored_patterns
from bot.services.settings.patterns import BlockedPattern, compile_pattern
from bot.services.settings.registry import (
    CHANNEL_SEPARATOR,
    REGISTRY,
    SETTINGS,
    SPONSOR_KEY,
    ServerSettings,
    Setting,
    Visibility,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


class GuildConfig(ServerSettings):
    """A server's settings, each a typed attribute (``config.cooldown_seconds``), and what goes with them.

    ``generation`` carries the /imagine defaults and limits in the shape the request builder takes.
    """

    guild_id: int | None
    generation: GenerationDefaults
    sponsor_username: str | None = None
    overridden: frozenset[str] = frozenset()
    """The names set for this server (channel overrides as ``name#channel``)."""
    channel_overrides: Mapping[int, Mapping[str, Any]] = Field(default_factory=dict, repr=False)
    refused_patterns: tuple[str, ...] = ()
    """Stored patterns no longer applied, each with why (see :func:`parsers.stored_patterns`)."""
    _compiled_patterns: tuple[BlockedPattern, ...] = PrivateAttr(default=())

    def model_post_init(self, context: Any, /) -> None:
        self._compiled_patterns = tuple(compile_pattern(pattern) for pattern in self.blocked_patterns)

    @property
    def has_sponsor_key(self) -> bool:
        return self.sponsor_username is not None

    def in_channel(self, setting: Setting[T], channel_id: int | None) -> T:
        """A per-channel setting's value in ``channel_id``: its override, else the server's value."""
        if channel_id is not None:
            overrides = self.channel_overrides.get(channel_id, {})
            if setting.name in overrides:
                return setting.value_in(overrides)
        return setting.value_in(self.values)

    def nsfw_allowed(self, channel_id: int | None, *, age_restricted: bool) -> bool:
        """NSFW only in age-restricted channels, and never where the policy is off."""
        return (
            age_restricted and self.in_channel(GuildConfig.nsfw_policy, channel_id) == "age_restricted_only"
        )

    def commands_in(self, channel_id: int | None) -> frozenset[str] | None:
        """The generation commands allowed in ``channel_id``; ``None`` means all."""
        return self.in_channel(GuildConfig.allowed_commands, channel_id)

    def visibility_in(self, channel_id: int | None) -> Visibility:
        return self.in_channel(GuildConfig.visibility, channel_id)

    def negative_prompt_for(self, typed: str | None) -> str | None:
        """The server's negative-prompt prefix in front of what the member typed."""
        parts = [part.strip() for part in (self.generation.negative_prompt, typed or "") if part.strip()]
        return ", ".join(parts) or None

    def blocked_term_in(self, text: str) -> str | None:
        """The first blocked word or pattern found in ``text`` (the word, or "a blocked pattern")."""
        for word in self.blocked_words:
            if re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, re.IGNORECASE):
                return f"“{word}”"
        for pattern in self._compiled_patterns:
            if pattern.search(text):  # RE2: linear in the text, whatever the admin wrote
                return "a blocked pattern"
        return None


def _generation(base: GenerationDefaults, values: Mapping[str, Any]) -> GenerationDefaults:
    # A setting named like a GenerationDefaults field reaches the request builders by that name.
    width, height = values["size"]
    named = {name: values[name] for name in GenerationDefaults.model_fields if name in values}
    return GenerationDefaults.model_validate(
        {
            **named,
            "max_n": values["max_count"],
            "width": width,
            "height": height,
            "n": min(base.n, values["max_count"]),
        }
    )


def consistency_problems(values: Mapping[str, Any]) -> dict[str, str]:
    """Cross-setting rules, keyed by the settings involved, so a message names what to change."""
    problems: dict[str, str] = {}
    if values["steps"] > values["max_steps"]:
        problems["steps"] = problems["max_steps"] = (
            f"the default steps ({values['steps']}) must not exceed max_steps ({values['max_steps']})"
        )
    width, height = values["size"]
    if width * height > values["max_pixels"]:
        problems["size"] = problems["max_pixels"] = (
            f"the default size ({width}x{height} = {width * height:,} pixels) must not exceed "
            f"max_pixels ({values['max_pixels']:,})"
        )
    model = values["model"]
    if model in values["blocked_models"] or (
        values["allowed_models"] and model not in values["allowed_models"]
    ):
        problems["model"] = problems["allowed_models"] = problems["blocked_models"] = (
            f"the default model ({model}) must be allowed and not blocked"
        )
    return problems


def build_config(
    guild_id: int | None,
    base: GenerationDefaults,
    stored: Mapping[str, Any],
    *,
    sponsor_username: str | None = None,
) -> GuildConfig:
    """The configuration from the ``config.toml`` defaults and the stored overrides.

    A stored value that no longer parses or fits (``config.toml`` changed since) is skipped.
    """
    values: dict[str, Any] = {setting.name: setting.default(base) for setting in SETTINGS}
    overridden: set[str] = set()
    channel_overrides: dict[int, dict[str, Any]] = {}
    refused_patterns: tuple[str, ...] = ()
    for key, raw in sorted(stored.items()):
        name, _, channel_text = key.partition(CHANNEL_SEPARATOR)
        setting = REGISTRY.get(name)
        if (
            setting is None
            or setting.secret
            or not isinstance(raw, str)
            or (channel_text and not setting.per_channel)
        ):
            log.warning("Guild %s: ignoring the stored setting %r", guild_id, key)
            continue
        try:
            if setting is GuildConfig.blocked_patterns and not channel_text:
                value, refused_patterns = stored_patterns(raw.strip())
                for why in refused_patterns:
                    log.warning("Guild %s: a stored blocked pattern is no longer applied: %s", guild_id, why)
            else:
                value = setting.read(raw)
            if channel_text:
                channel_overrides.setdefault(int(channel_text), {})[name] = value
            else:
                values[name] = value
        except (BotError, ValueError) as exc:
            log.warning("Guild %s: ignoring the stored setting %r: %s", guild_id, key, exc)
            continue
        overridden.add(key)
    # The defaults are consistent (config.toml is validated), so dropping the overrides involved
    # in a contradiction always ends in a consistent configuration.
    while conflicting := set(consistency_problems(values)) & overridden:
        for name in sorted(conflicting):
            log.warning(
                "Guild %s: ignoring the stored setting %r: it contradicts another one", guild_id, name
            )
            values[name] = REGISTRY[name].default(base)
        overridden -= conflicting
    values[SPONSOR_KEY] = ""
    if sponsor_username is not None:
        overridden.add(SPONSOR_KEY)
    return GuildConfig(
        guild_id=guild_id,
        generation=_generation(base, values),
        values=values,
        sponsor_username=sponsor_username,
        overridden=frozenset(overridden),
        channel_overrides=channel_overrides,
        refused_patterns=refused_patterns,
    )
