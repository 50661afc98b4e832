"""/write's options → request, continuation, result parsing and rendering; the dry-run estimate."""

from __future__ import annotations

import json

import pytest

from bot.config import GenerationDefaults
from bot.errors import UserInputError
from bot.horde import AIHordeAPIAsyncClientSession, AIHordeAPIAsyncSimpleClient
from bot.services.estimates import estimate_text_cost
from bot.services.jobs import JobOutcome
from bot.services.text.render import EMBED_TEXT_CHARS, render_text_result
from bot.services.text.request import (
    TextOptions,
    TextParams,
    TextResult,
    build_text_request,
    continuation,
    parse_stop_sequences,
    text_result,
)
from bot.storage import JobState
from horde_simulator import Simulator

DEFAULTS = GenerationDefaults()
JOB_ID = "a" * 32


def test_only_the_options_given_are_sent() -> None:
    text = build_text_request(
        TextOptions(prompt="Hi", model="m", top_p=0.9, repetition_penalty=1.1), DEFAULTS
    )
    assert text.request.to_wire().json == {
        "prompt": "Hi",
        "models": ["m"],
        "params": {"top_p": 0.9, "rep_pen": 1.1},
    }
    assert text.params.model == "m"


def test_stop_sequences_split_on_bars_with_escaped_newlines() -> None:
    assert parse_stop_sequences("END | \\n\\n |END| ") == ("END", "\n\n")
    assert parse_stop_sequences(None) == ()


def test_the_server_limit_and_the_horde_rules_are_clear_errors() -> None:
    with pytest.raises(UserInputError) as too_long:
        build_text_request(TextOptions(prompt="Hi", max_length=600), DEFAULTS)
    assert "at most 512" in too_long.value.user_message
    with pytest.raises(UserInputError) as overflow:
        build_text_request(TextOptions(prompt="Hi", max_length=400, max_context_length=100), DEFAULTS)
    assert "must not exceed max_context_length" in overflow.value.user_message


def test_a_continuation_extends_the_prompt_and_keeps_the_settings() -> None:
    first = build_text_request(TextOptions(prompt="Once", max_length=40, stop_sequences="END"), DEFAULTS)
    result = TextResult(text=" upon a time", model=None, worker_name=None, censored=False)
    more = continuation(first.params, result, JOB_ID)
    assert more.request.to_wire().json == {
        "prompt": "Once upon a time",
        "params": {"max_length": 40, "stop_sequence": ["END"]},
    }
    assert more.params.continued_from == JOB_ID


def test_the_result_is_read_from_the_journal() -> None:
    journal = json.dumps({"texts": [{"text": "hello", "model": "m", "worker_name": "w", "censored": True}]})
    assert text_result(journal) == TextResult(text="hello", model="m", worker_name="w", censored=True)
    assert text_result(None) is None
    assert text_result(json.dumps({"texts": []})) is None


def outcome(state: JobState = JobState.DONE) -> JobOutcome:
    return JobOutcome(state=state, images=(), kudos=3.0, workers=(), error=None)


def test_a_short_text_goes_in_the_embed_a_long_one_in_a_file() -> None:
    params = TextParams(prompt="Hi")
    short = render_text_result(params, outcome(), TextResult("x" * 10, None, None, False), anonymous=False)
    assert short.embed is not None
    assert short.embed.description == "x" * 10
    assert short.attachment is None
    long_text = "y" * (EMBED_TEXT_CHARS + 1)
    long = render_text_result(params, outcome(), TextResult(long_text, None, None, False), anonymous=False)
    assert long.attachment == long_text.encode()


def test_a_continuation_shows_the_whole_text() -> None:
    params = TextParams(prompt="Once upon", continued_from=JOB_ID)
    shown = render_text_result(params, outcome(), TextResult(" a time", None, None, False), anonymous=False)
    assert shown.embed is not None
    assert shown.embed.description == "Once upon a time"


async def test_the_estimate_is_a_dry_run(horde_sim: Simulator) -> None:
    text = build_text_request(TextOptions(prompt="Hi", max_length=64), DEFAULTS)
    async with AIHordeAPIAsyncClientSession(base_url=horde_sim.base_url) as session:
        kudos = await estimate_text_cost(AIHordeAPIAsyncSimpleClient(session), text.request)
    assert kudos > 0
    assert horde_sim.state.requests == {}
