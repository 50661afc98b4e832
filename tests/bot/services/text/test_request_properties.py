"""Property tests of /write's options → Horde text request mapping (``bot.services.text``).

For any values /write's options allow (``cogs/write.py``), ``build_text_request`` either returns a
request whose wire body meets the Horde's text contract (``/work/shared/horde-api.md`` §1.5,
re-stated here) and this server's ``max_prompt_length`` / ``max_text_tokens``, or raises a
:class:`UserInputError` saying what is allowed; a continuation of an accepted request is valid too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.config import GenerationDefaults
from bot.errors import UserInputError
from bot.generation_limits import MAX_PROMPT_CHARS, MAX_TEXT_TOKENS, MIN_TEXT_TOKENS
from bot.horde import TextGenerateAsyncRequest
from bot.services.text.request import (
    HORDE_DEFAULT_LENGTH,
    MAX_CONTEXT,
    MAX_REP_PEN,
    MAX_TEMPERATURE,
    MIN_CONTEXT,
    MIN_REP_PEN,
    MIN_TOP_P,
    TextOptions,
    TextResult,
    build_text_request,
    continuation,
)

T = TypeVar("T")
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None)
GENEROUS = GenerationDefaults(max_prompt_length=6000, max_text_tokens=4096)
STRICT = GenerationDefaults(max_prompt_length=100, max_text_tokens=32)
ALLOWED_WORDING = re.compile(r"must|may|at most|can't|allowed|should", re.IGNORECASE)

_prompts = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=300),
    st.text(alphabet=" \u200b\u200d\ufeff\n", min_size=1, max_size=10),
    st.integers(1, MAX_PROMPT_CHARS).map(lambda size: "x" * size),
)
_stops = st.one_of(
    st.none(),
    st.text(min_size=1, max_size=2000),
    st.lists(st.text(alphabet="abc\\n ", min_size=1, max_size=40), min_size=1, max_size=200).map(
        lambda items: "|".join(items)[:2000]
    ),
)


@st.composite
def text_options(draw: st.DrawFn) -> TextOptions:
    optional: Any = lambda strategy: draw(st.one_of(st.none(), strategy))  # noqa: E731
    return TextOptions(
        prompt=draw(_prompts),
        model=optional(st.text(min_size=1, max_size=100)),
        max_length=optional(st.integers(MIN_TEXT_TOKENS, MAX_TEXT_TOKENS)),
        max_context_length=optional(st.integers(MIN_CONTEXT, MAX_CONTEXT)),
        temperature=optional(st.floats(0.0, MAX_TEMPERATURE)),
        top_p=optional(st.floats(MIN_TOP_P, 1.0)),
        repetition_penalty=optional(st.floats(MIN_REP_PEN, MAX_REP_PEN)),
        stop_sequences=draw(_stops),
    )


def attempt(build: Callable[[], T]) -> T | UserInputError:
    """What ``build`` returns, or the :class:`UserInputError` it raised; any other error propagates."""
    try:
        return build()
    except UserInputError as error:
        return error


def assert_meets_the_text_contract(request: TextGenerateAsyncRequest, defaults: GenerationDefaults) -> None:
    body = request.to_wire().json
    assert isinstance(body, dict)
    assert isinstance(body["prompt"], str)
    params = body.get("params", {})
    max_length = params.get("max_length", HORDE_DEFAULT_LENGTH)
    assert 16 <= max_length <= min(4096, defaults.max_text_tokens)
    context = params.get("max_context_length", 2048)
    assert 80 <= context <= 1_048_576
    assert max_length <= context  # TokenOverflow otherwise
    assert 0 <= params.get("temperature", 0) <= 5
    assert 0.001 <= params.get("top_p", 1) <= 1
    assert 1 <= params.get("rep_pen", 1) <= 3
    stops = params.get("stop_sequence", [])
    assert len(stops) <= 128
    assert sum(map(len, stops)) <= 2000
    assert all(isinstance(value, (int, str, list)) or math.isfinite(value) for value in params.values())
    assert TextGenerateAsyncRequest.model_validate(body).to_wire().json == body


@PROPERTY_SETTINGS
@given(options=text_options(), defaults=st.sampled_from([GENEROUS, STRICT]))
def test_any_options_give_a_valid_request_or_say_what_is_allowed(
    options: TextOptions, defaults: GenerationDefaults
) -> None:
    built = attempt(lambda: build_text_request(options, defaults))
    if isinstance(built, UserInputError):
        message = built.user_message
        assert message.strip()
        assert len(message) < 2500
        assert ALLOWED_WORDING.search(message), message
        return
    assert_meets_the_text_contract(built.request, defaults)
    assert len(options.prompt) <= defaults.max_prompt_length
    assert built.request.prompt == options.prompt


@PROPERTY_SETTINGS
@given(options=text_options(), written=st.text(max_size=4000))
def test_a_continuation_of_an_accepted_request_is_valid_whatever_was_written(
    options: TextOptions, written: str
) -> None:
    built = attempt(lambda: build_text_request(options, GENEROUS))
    if isinstance(built, UserInputError):
        return
    previous = TextResult(text=written, model=None, worker_name=None, censored=False)
    continued = continuation(built.params, previous, "f" * 32)
    assert_meets_the_text_contract(continued.request, GENEROUS)
    assert continued.request.prompt == options.prompt + written


def test_without_max_length_the_horde_default_is_capped_by_the_server() -> None:
    capped = build_text_request(TextOptions(prompt="Hi"), STRICT)
    assert capped.request.to_wire().json == {"prompt": "Hi", "params": {"max_length": 32}}
    assert capped.params.max_length == 32
    # At or above the Horde's default of 80 tokens, leaving it out stays out of the request.
    assert build_text_request(TextOptions(prompt="Hi"), GENEROUS).request.to_wire().json == {"prompt": "Hi"}


@pytest.mark.parametrize("prompt", ["\u200b", " \u200d\ufeff ", "\n"])
def test_a_prompt_of_only_blanks_or_zero_width_characters_is_refused(prompt: str) -> None:
    with pytest.raises(UserInputError) as refused:
        build_text_request(TextOptions(prompt=prompt), GENEROUS)
    assert refused.value.user_message == "The prompt can't be empty."
