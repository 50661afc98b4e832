"""GuildConfig: the config.toml defaults with a server's stored overrides applied."""

from __future__ import annotations

import json

import pytest

from bot.config import GenerationDefaults
from bot.services.settings.config import build_config
from bot.services.settings.service import GuildSettingsService

GUILD = 111
CHANNEL = 222_222_222_222_222_222
DEFAULTS = GenerationDefaults()


def test_stored_patterns_that_re2_cannot_match_are_dropped_and_shown(
    service: GuildSettingsService, caplog: pytest.LogCaptureFixture
) -> None:
    # Saved before patterns ran on RE2: the lookbehind is dropped, the other pattern still blocks.
    stored = json.dumps(["sp[a4]m", "(?<=x)ray"])
    config = build_config(GUILD, DEFAULTS, {"blocked_patterns": stored})
    assert config.blocked_patterns == ("sp[a4]m",)
    assert config.blocked_term_in("SPAM") == "a blocked pattern"
    assert config.blocked_term_in("xray") is None
    [shown] = [entry for entry in service.show(config) if entry.name == "blocked_patterns not applied"]
    assert shown.value.startswith("“(?<=x)ray”: lookahead and lookbehind")
    assert "no longer applied" in caplog.text


def test_a_safe_pattern_matches_case_insensitively() -> None:
    config = build_config(GUILD, DEFAULTS, {"blocked_patterns": r"b[a4]d\s+word"})
    assert config.blocked_term_in("a BAD   Word here") == "a blocked pattern"


def test_the_config_starts_from_the_config_toml_defaults() -> None:
    base = GenerationDefaults(model="Deliberate", steps=20, max_steps=40, allow_anonymous=False)
    config = build_config(GUILD, base, {})
    assert config.generation == base
    assert (config.values["model"], config.values["max_steps"], config.allow_anonymous) == (
        "Deliberate",
        40,
        False,
    )
    assert config.overridden == frozenset()


def test_overrides_apply_and_the_generation_defaults_follow() -> None:
    config = build_config(
        GUILD, DEFAULTS, {"steps": "12", "size": "768x512", "max_count": "2", "negative_prompt": "blurry"}
    )
    assert (config.generation.steps, config.generation.width, config.generation.height) == (12, 768, 512)
    assert (config.generation.max_n, config.generation.n) == (2, 1)
    assert config.negative_prompt_for("ugly") == "blurry, ugly"
    assert config.negative_prompt_for(None) == "blurry"
    assert config.overridden == {"steps", "size", "max_count", "negative_prompt"}


def test_stored_values_that_no_longer_fit_are_ignored(caplog: pytest.LogCaptureFixture) -> None:
    # Stored under an older config.toml, or by hand: unknown, malformed, or now inconsistent.
    base = GenerationDefaults(steps=30, max_steps=50)
    config = build_config(
        GUILD, base, {"max_steps": "20", "steps": "many", "nope": "1", f"max_steps#{CHANNEL}": "3"}
    )
    assert config.generation.max_steps == 50  # 20 would be below the default steps (30)
    assert config.generation.steps == 30
    assert config.overridden == frozenset()
    assert "ignoring the stored setting 'nope'" in caplog.text


def test_blocked_words_match_whole_words_case_insensitively() -> None:
    config = build_config(
        GUILD, DEFAULTS, {"blocked_words": "gore, bad word", "blocked_patterns": "sp[a@]m+"}
    )
    assert config.blocked_term_in("Some GORE here") == "“gore”"
    assert config.blocked_term_in("gorex gorey and gorgeous") is None
    assert config.blocked_term_in("a Bad Word!") == "“bad word”"
    assert config.blocked_term_in("SP@MMM") == "a blocked pattern"
    assert config.blocked_term_in("a fox") is None


def test_per_channel_overrides_win_in_their_channel_only() -> None:
    config = build_config(
        GUILD,
        DEFAULTS,
        {f"nsfw_policy#{CHANNEL}": "off", f"allowed_commands#{CHANNEL}": "none", "visibility": "private"},
    )
    assert config.nsfw_allowed(CHANNEL, age_restricted=True) is False
    assert config.nsfw_allowed(CHANNEL + 1, age_restricted=True) is True
    assert config.nsfw_allowed(CHANNEL + 1, age_restricted=False) is False
    assert config.commands_in(CHANNEL) == frozenset()
    assert config.commands_in(CHANNEL + 1) is None
    assert config.visibility_in(CHANNEL) == "private"
