"""The settings registry: every declaration, how values are read and written back as text."""

from __future__ import annotations

import json
import re

import pytest

from bot.config import GenerationDefaults
from bot.services.settings.config import build_config
from bot.services.settings.registry import REGISTRY, SETTINGS, SettingValueError

GUILD = 111
DEFAULTS = GenerationDefaults()


@pytest.mark.parametrize(
    ("name", "typed", "shown"),
    [
        ("steps", " 20 ", "20"),
        ("size", "768 × 512", "768x512"),
        ("sampler", "k_dpmpp_2m", "k_dpmpp_2m"),
        ("cfg_scale", "7.456", "7.46"),
        ("negative_prompt", "none", "none"),
        ("max_pixels", "1,048,576", "1048576"),
        ("allowed_models", "b, a, a", "a, b"),
        ("blocked_words", "Foo, bar baz", "bar baz, foo"),
        ("blocked_patterns", "fo{1,3}", "fo{1,3}"),
        ("blocked_patterns", '["a+", "b,c"]', '["a+", "b,c"]'),
        (
            "allowed_channels",
            "<#222222222222222222> 333333333333333333",
            "<#222222222222222222>, <#333333333333333333>",
        ),
        ("allowed_commands", "all", "all"),
        ("allowed_commands", "none", "none"),
        ("nsfw_policy", "Off", "off"),
        ("allow_anonymous", "no", "off"),
        ("rerun_emoji", "♻️", "♻️"),
        ("rerun_emoji", "<:redo:123456789012345678>", "<:redo:123456789012345678>"),
        ("visibility", "private", "private"),
        ("log_channel", "<#222222222222222222>", "<#222222222222222222>"),
        ("log_channel", "none", "none"),
    ],
)
def test_values_are_parsed_to_a_canonical_text(name: str, typed: str, shown: str) -> None:
    setting = REGISTRY[name]
    assert setting.canonical(typed) == shown
    assert setting.canonical(shown) == shown  # what is stored reads back the same


@pytest.mark.parametrize(
    ("name", "typed", "allowed"),
    [
        ("steps", "0", "a whole number from 1 to this server's max_steps"),
        ("steps", "many", "a whole number from 1 to this server's max_steps"),
        ("size", "500x512", "multiple of 64"),
        ("size", "512", "multiple of 64"),
        ("sampler", "euler", "one of k_"),
        ("cfg_scale", "101", "a number from 0 to 100"),
        ("max_count", "21", "a whole number from 1 to 20"),
        ("max_prompt_length", "5", "a whole number from 16 to 6,000"),
        ("max_text_tokens", "4097", "a whole number from 16 to 4,096"),
        ("allowed_channels", "#general", "channel mentions or ids"),
        ("allowed_commands", "paint", "all, none, or some of: imagine"),
        ("nsfw_policy", "sometimes", "one of age_restricted_only, off"),
        ("allow_anonymous", "maybe", "on or off"),
        ("rerun_emoji", "R", "one emoji"),
        ("visibility", "secret", "one of public, private"),
        ("log_channel", "<#222222222222222222> <#333333333333333333>", "one channel"),
        ("daily_kudos_member", "-1", "from 0 to 10,000,000"),
    ],
)
def test_an_invalid_value_names_the_setting_and_what_is_allowed(name: str, typed: str, allowed: str) -> None:
    with pytest.raises(SettingValueError) as caught:
        REGISTRY[name].read(typed)
    assert caught.value.user_message.startswith(f"`{name}`")
    assert allowed in caught.value.user_message


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"(a)\1", "backreferences"),
        ("foo(?!bar)", "lookahead"),
        ("a" * 201, "1 to 200 characters"),
        ("(unclosed", "invalid regular expression"),
    ],
)
def test_patterns_that_cannot_be_matched_safely_are_refused_naming_them(pattern: str, why: str) -> None:
    with pytest.raises(SettingValueError, match=re.escape(why)) as caught:
        REGISTRY["blocked_patterns"].read(json.dumps(["fine", pattern]))
    assert f"“{pattern[:60]}”" in caught.value.user_message
    assert "without backreferences, lookaround" in caught.value.user_message  # what is allowed


@pytest.mark.parametrize("pattern", ["(a+)+$", r"(\w*x)*", "a.*b.*c", "(a|aa)*b", r"\bcat\b"])
def test_patterns_refused_for_their_shape_before_re2_are_accepted(pattern: str) -> None:
    assert REGISTRY["blocked_patterns"].read(pattern) == (pattern,)


def test_too_many_patterns_are_refused() -> None:
    with pytest.raises(SettingValueError, match="at most 25 patterns"):
        REGISTRY["blocked_patterns"].read(json.dumps([f"p{i}" for i in range(26)]))


def test_every_setting_has_a_group_a_description_and_a_valid_default() -> None:
    config = build_config(GUILD, DEFAULTS, {})
    for setting in SETTINGS:
        assert setting.description
        assert setting.allowed
        if not setting.secret:
            text = setting.format(config.values[setting.name])
            assert setting.canonical(text) == text
