"""The constants against the server's own description of the API (swagger.json) and its captures."""

from __future__ import annotations

import dataclasses
import json
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest

from bot.horde import consts
from bot.horde.consts import (
    GENERATION_MAX_LIFE,
    KNOWN_ALCHEMY_TYPES,
    KNOWN_CONTROL_TYPES,
    KNOWN_FACEFIXERS,
    KNOWN_IMAGE_SAMPLERS,
    KNOWN_MISC_POST_PROCESSORS,
    KNOWN_POST_PROCESSORS,
    KNOWN_SOURCE_PROCESSING,
    KNOWN_UPSCALERS,
    KNOWN_WORKFLOWS,
    METADATA_TYPE,
    METADATA_VALUE,
    RC,
    TI_INJECT,
    WORKER_TYPE,
    RateLimit,
    WarningCode,
)

# Copied from ../shared (origin in tests/fixtures/README.md), so a plain clone runs these.
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "horde"
SWAGGER: dict[str, Any] = json.loads((FIXTURES / "swagger.json").read_text())
DEFINITIONS: dict[str, Any] = SWAGGER["definitions"]


def _properties(name: str) -> dict[str, Any]:
    """A definition's properties with its ``allOf`` parents merged in."""
    definition = DEFINITIONS[name]
    merged: dict[str, Any] = {}
    for part in definition.get("allOf", [definition]):
        if "$ref" in part:
            merged.update(_properties(part["$ref"].rsplit("/", 1)[1]))
        else:
            merged.update(part.get("properties", {}))
    return merged


def _values(enum_cls: type[StrEnum]) -> set[str]:
    return {member.value for member in enum_cls}


def test_samplers_are_the_servers() -> None:
    swagger = _properties("ModelGenerationInputStable")["sampler_name"]["enum"]
    assert _values(KNOWN_IMAGE_SAMPLERS) == set(swagger)
    assert len(KNOWN_IMAGE_SAMPLERS) == 14


def test_post_processors_are_the_servers_sixteen() -> None:
    swagger = _properties("ModelGenerationInputStable")["post_processing"]["items"]["enum"]
    assert _values(KNOWN_POST_PROCESSORS) == set(swagger)
    assert len(KNOWN_POST_PROCESSORS) == 16


def test_post_processor_families_partition_the_post_processors() -> None:
    families = [_values(KNOWN_UPSCALERS), _values(KNOWN_FACEFIXERS), _values(KNOWN_MISC_POST_PROCESSORS)]
    assert set().union(*families) == _values(KNOWN_POST_PROCESSORS)
    assert sum(len(family) for family in families) == len(KNOWN_POST_PROCESSORS)
    assert len(KNOWN_UPSCALERS) == 11  # the server's KNOWN_UPSCALERS


def test_alchemy_types_are_the_servers_form_names() -> None:
    swagger = _properties("ModelInterrogationFormStable")["name"]["enum"]
    assert _values(KNOWN_ALCHEMY_TYPES) == set(swagger)
    assert _values(KNOWN_POST_PROCESSORS) <= _values(KNOWN_ALCHEMY_TYPES)


def test_alchemy_types_reach_post_processors_by_sdk_names() -> None:
    assert KNOWN_ALCHEMY_TYPES.RealESRGAN_x2plus == "RealESRGAN_x2plus"
    assert KNOWN_ALCHEMY_TYPES.caption == "caption"
    assert KNOWN_ALCHEMY_TYPES("4x_AnimeSharp").name == "four_4x_AnimeSharp"
    assert KNOWN_ALCHEMY_TYPES["fourx_AnimeSharp"] is KNOWN_ALCHEMY_TYPES["four_4x_AnimeSharp"]
    assert KNOWN_ALCHEMY_TYPES("GFPGANv1.3") is KNOWN_ALCHEMY_TYPES.GFPGANv1_3


@pytest.mark.parametrize(
    ("enum_cls", "definition", "field"),
    [
        (KNOWN_CONTROL_TYPES, "ModelGenerationInputStable", "control_type"),
        (KNOWN_WORKFLOWS, "ModelGenerationInputStable", "workflow"),
        (KNOWN_SOURCE_PROCESSING, "GenerationInputStable", "source_processing"),
        (TI_INJECT, "ModelPayloadTextualInversionsStable", "inject_ti"),
        (METADATA_TYPE, "GenerationMetadataStable", "type"),
        (METADATA_VALUE, "GenerationMetadataStable", "value"),
        (WarningCode, "RequestSingleWarning", "code"),
        (WORKER_TYPE, "WorkerDetailsLite", "type"),
    ],
)
def test_enums_match_swagger(enum_cls: type[StrEnum], definition: str, field: str) -> None:
    assert _values(enum_cls) == set(_properties(definition)[field]["enum"])


def test_rc_covers_every_code_the_server_declares() -> None:
    declared = set(_properties("RequestError")["rc"]["enum"])
    assert declared <= _values(RC)


def test_rc_covers_every_code_in_the_captures() -> None:
    seen = set()
    for path in (FIXTURES / "real").glob("*.json"):
        body = json.loads(path.read_text())
        if isinstance(body, dict) and "rc" in body:
            seen.add(body["rc"])
    assert seen
    assert seen <= _values(RC)


def test_rc_names_are_their_values_and_missing_is_a_member() -> None:
    assert all(member.name == member.value for member in RC)
    assert RC("RC_MISSING") is RC.RC_MISSING


def test_str_of_a_member_is_its_wire_value() -> None:
    # Query strings and f-strings rely on this.
    assert str(KNOWN_UPSCALERS.four_4x_AnimeSharp) == "4x_AnimeSharp"
    assert f"{RC.TooManyPrompts}" == "TooManyPrompts"


def test_generation_max_life() -> None:
    assert GENERATION_MAX_LIFE == 1170


def test_client_agent_is_name_version_contact() -> None:
    name, version, contact = consts.DEFAULT_CLIENT_AGENT.split(":", 2)
    assert name
    assert version
    assert contact
    assert consts.CLIENT_AGENT_HEADER == "Client-Agent"


@pytest.mark.parametrize(
    ("limit", "calls", "period_s"),
    [
        (consts.CHECK_RATE_LIMIT_PER_ID, 10, 1.0),
        (consts.IMAGE_STATUS_RATE_LIMIT_PER_ID, 10, 60.0),
        (consts.TEXT_STATUS_RATE_LIMIT_PER_ID, 60, 60.0),
        (consts.ALCHEMY_STATUS_RATE_LIMIT_PER_ID, 10, 1.0),
        (consts.ASYNC_RATE_LIMIT_PER_KEY, 2, 1.0),
        (consts.ASYNC_RATE_LIMIT_PER_ANON_KEY, 60, 1.0),
        (consts.ASYNC_RATE_LIMIT_PER_IP, 2, 1.0),
        (consts.ASYNC_RATE_LIMIT_PER_IP_MINUTE, 90, 60.0),
        (consts.KUDOS_TRANSFER_RATE_LIMIT, 1, 1.0),
        (consts.KUDOS_TRANSFER_RATE_LIMIT_HOURLY, 90, 3600.0),
        (consts.USER_DETAILS_RATE_LIMIT_PER_ID, 60, 60.0),
        (consts.DEFAULT_RATE_LIMIT, 90, 60.0),
    ],
)
def test_rate_limits_are_the_servers(limit: RateLimit, calls: int, period_s: float) -> None:
    assert limit == RateLimit(calls, period_s)


def test_combined_rate_limits_hold_both_windows() -> None:
    assert set(consts.ASYNC_RATE_LIMITS_PER_IP) == {RateLimit(2, 1.0), RateLimit(90, 60.0)}
    assert set(consts.KUDOS_TRANSFER_RATE_LIMITS) == {RateLimit(1, 1.0), RateLimit(90, 3600.0)}
    assert "v2/status/heartbeat" in consts.RATE_LIMIT_EXEMPT_PATHS


def test_rate_limit_is_frozen_and_validated() -> None:
    limit = RateLimit(10, 60.0)
    assert limit.min_interval_s == 6.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        limit.calls = 11  # type: ignore[misc]
    with pytest.raises(ValueError, match="calls >= 1"):
        RateLimit(0, 1.0)
    with pytest.raises(ValueError, match="period_s > 0"):
        RateLimit(1, 0.0)
