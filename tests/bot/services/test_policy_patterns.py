"""An admin's blocked pattern never stalls the event loop, whatever the pattern and the prompt.

Python's ``re`` took 2.4-2.8 s for a 26-34 character prompt on ``(a|aa)*b`` and minutes at 40; the
patterns now run on RE2. The bound below is generous (a loaded 2-core machine): what it catches is a
stall of seconds, not a slow run.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.config import GenerationDefaults
from bot.crypto import KeyRing
from bot.generation_limits import MAX_PROMPT_CHARS
from bot.horde import AIHordeAPIAsyncSimpleClient
from bot.services.accounts import AccountService
from bot.services.policy import GenerationContext, Policy, PolicyError
from bot.services.settings.config import build_config
from bot.services.settings.patterns import PatternError, compile_pattern
from bot.services.settings.service import GuildSettingsService
from bot.storage import SQLiteStorage, SQLiteURL

GUILD = 100
ADMIN = 1
MAX_STALL_S = 0.5
ISSUE_PATTERNS = (r"(a|aa)*b", r"(a|a)*b", r"(a?){26}a{26}")


async def longest_stall(work: Callable[[], Awaitable[object]], tick_s: float = 0.005) -> float:
    """Runs ``work`` while a ticker measures the longest time the loop did not get back to it."""
    loop = asyncio.get_running_loop()
    longest = 0.0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal longest
        while not done.is_set():
            started = loop.time()
            await asyncio.sleep(tick_s)
            longest = max(longest, loop.time() - started - tick_s)

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(tick_s * 2)  # the ticker is waiting before the work starts
    try:
        await work()
    finally:
        done.set()
        await ticking
    return longest


@pytest.fixture
async def guarded(keyring: KeyRing) -> AsyncIterator[tuple[Policy, GuildSettingsService]]:
    """A policy and its settings service on an in-memory journal; nothing here reaches the Horde."""
    horde = AIHordeAPIAsyncSimpleClient()
    async with SQLiteStorage(SQLiteURL(None)) as storage:
        defaults = GenerationDefaults(max_prompt_length=MAX_PROMPT_CHARS)
        settings_service = GuildSettingsService(storage, defaults, keyring=keyring, horde=horde)
        yield Policy(settings_service, AccountService(storage, keyring, horde), storage), settings_service


def contexts(text: str) -> list[GenerationContext]:
    """The prompt, the negative prompt and a Continue text (which may grow past the prompt limit)."""
    base = GenerationContext(
        origin="command", command="imagine", user_id=10, guild_id=GUILD, channel_id=200,
        age_restricted=False, prompt="x", model=None, steps=30, width=512, height=512,
    )  # fmt: skip
    return [
        replace(base, prompt=text[: MAX_PROMPT_CHARS // 2]),
        replace(base, negative_prompt=text[: MAX_PROMPT_CHARS // 2]),
        replace(base, kind="text", command="write", prompt=text),
    ]


@pytest.mark.parametrize("length", [26, 34, MAX_PROMPT_CHARS, 4 * MAX_PROMPT_CHARS])
async def test_the_issues_patterns_do_not_stall_the_loop(
    guarded: tuple[Policy, GuildSettingsService], length: int
) -> None:
    policy, settings_service = guarded
    await settings_service.set(GUILD, "blocked_patterns", json.dumps(list(ISSUE_PATTERNS)), ADMIN)
    text = "a" * (length - 1) + "!"  # no "b" and one "a" short: every way of matching is tried

    refusals: list[str] = []

    async def check_all() -> None:
        for context in contexts(text):
            try:
                await policy.check_generation(context)
            except PolicyError as refused:
                refusals.append(refused.user_message)

    assert await longest_stall(check_all) < MAX_STALL_S
    # (a?){26}a{26} matches any run of 26 or more a's: those are refused, and quickly.
    assert all("a blocked pattern" in message for message in refusals)


units = st.sampled_from(["a", "aa", "a?", "a*", "a+", ".", r"\w", "[a-c]", "a|aa", r"\s?"])
adversarial = st.recursive(
    units,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["*", "+", "{2,}", "{12}", "?"])).map(lambda p: f"({p[0]}){p[1]}"),
        st.tuples(inner, inner).map(lambda p: f"(?:{p[0]}|{p[1]})"),
        st.tuples(inner, inner).map("".join),
    ),
    max_leaves=6,
).map(lambda body: f"{body}(b|$)")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=adversarial, filler=st.sampled_from(["a", "ab", "a ", "aaa!"]))
def test_generated_adversarial_patterns_never_stall_the_loop(pattern: str, filler: str) -> None:
    try:
        compile_pattern(pattern)
    except PatternError:
        return  # refused with a reason: it never runs
    config = build_config(GUILD, GenerationDefaults(), {"blocked_patterns": json.dumps([pattern] * 25)})
    text = (filler * MAX_PROMPT_CHARS)[: MAX_PROMPT_CHARS - 1] + "!"

    async def check() -> None:
        for each in (text, text * 4):
            config.blocked_term_in(each)

    assert asyncio.run(longest_stall(check)) < MAX_STALL_S
