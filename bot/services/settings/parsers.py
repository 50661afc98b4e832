"""How a setting's value is read from text and written back as text.

Every setting is stored as its canonical text (what ``/config show`` prints), so one parser reads
both what an admin typed and what was stored, and ``parse(format(value)) == value``. A parser raises
``ValueError``; its text, if any, is added to what the setting allows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Final, TypeVar

from bot.config import GenerationDefaults
from bot.generation_limits import MAX_SIDE, MIN_SIDE, SIDE_STEP
from bot.horde.consts import KNOWN_IMAGE_SAMPLERS
from bot.services.settings.patterns import BlockedPattern, PatternError, compile_pattern

T = TypeVar("T")
Word = TypeVar("Word", bound=str)

GENERATION_COMMANDS: Final = ("imagine", "write", "alchemy")
"""The commands that start generations, for ``allowed_commands``; later generation commands add theirs."""

MAX_LIST_ITEMS: Final = 100
MAX_WORD_LENGTH: Final = 100
MAX_PATTERNS: Final = 25
MAX_SHOWN_PATTERN: Final = 60
MAX_MODEL_NAME: Final = 100
MAX_NEGATIVE_PROMPT: Final = 1000

_NONE_WORDS: Final = frozenset({"", "none", "-", "all", "any"})
_TRUE: Final = frozenset({"on", "yes", "true", "1", "enabled", "enable"})
_FALSE: Final = frozenset({"off", "no", "false", "0", "disabled", "disable"})
_CHANNEL_REF: Final = re.compile(r"<#(\d{15,21})>|(\d{15,21})")
_CUSTOM_EMOJI: Final = re.compile(r"<a?:\w{2,32}:\d{15,21}>")


def int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text.replace("_", "").replace(",", ""))
        if not low <= value <= high:
            raise ValueError
        return value

    return parse


def float_range(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = round(float(text), 2)
        if not low <= value <= high:
            raise ValueError
        return value

    return parse


def count(low: int, high: int) -> str:
    """What an :func:`int_range` allows, as ``allowed`` text."""
    return f"a whole number from {low:,} to {high:,}"


def parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError


def format_bool(value: bool) -> str:
    return "on" if value else "off"


def format_number(value: float) -> str:
    return f"{value:g}"


def choice(choices: Sequence[Word]) -> Callable[[str], Word]:
    def parse(text: str) -> Word:
        lowered = text.lower().replace("-", "_").replace(" ", "_")
        for option in choices:
            if option == lowered:
                return option
        raise ValueError

    return parse


def optional_text(max_length: int) -> Callable[[str], str]:
    """Printable text of at most ``max_length`` characters; ``none`` is the empty text."""

    def parse(text: str) -> str:
        if text.lower() == "none":
            return ""
        if len(text) > max_length or not text.isprintable():
            raise ValueError
        return text

    return parse


def format_optional_text(value: str) -> str:
    return value or "none"


def model_name(text: str) -> str:
    if not text or len(text) > MAX_MODEL_NAME or not text.isprintable():
        raise ValueError
    return text


def sampler(text: str) -> str:
    try:
        return KNOWN_IMAGE_SAMPLERS(text).value
    except ValueError:
        raise ValueError from None


def size(text: str) -> tuple[int, int]:
    width_text, sep, height_text = text.lower().replace("×", "x").replace(" ", "").partition("x")
    if not sep:
        raise ValueError
    width, height = int(width_text), int(height_text)
    for side in (width, height):
        if not MIN_SIDE <= side <= MAX_SIDE or side % SIDE_STEP:
            raise ValueError
    return width, height


def format_size(value: tuple[int, int]) -> str:
    return f"{value[0]}x{value[1]}"


def items(text: str) -> list[str]:
    """A JSON list of strings, or comma-separated items; ``none`` is the empty list."""
    if text.lower() in _NONE_WORDS:
        return []
    if text.startswith("["):
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError:
            raise ValueError("not a valid JSON list") from None
        if not isinstance(loaded, list) or not all(isinstance(item, str) for item in loaded):
            raise ValueError("a JSON list must hold strings only")
        entries = [item.strip() for item in loaded]
    else:
        entries = [item.strip() for item in text.split(",")]
    entries = list(dict.fromkeys(item for item in entries if item))
    if len(entries) > MAX_LIST_ITEMS:
        raise ValueError(f"at most {MAX_LIST_ITEMS} entries")
    return entries


def string_set(item: Callable[[str], str]) -> Callable[[str], frozenset[str]]:
    def parse(text: str) -> frozenset[str]:
        return frozenset(item(entry) for entry in items(text))

    return parse


def format_string_set(value: frozenset[str]) -> str:
    if not value:
        return "none"
    joined = ", ".join(sorted(value))
    # Entries such as "a,b", "-" or "[x" would read back as something else: JSON keeps them whole.
    try:
        if frozenset(items(joined)) == value:
            return joined
    except ValueError:
        pass
    return json.dumps(sorted(value), ensure_ascii=False)


def _word(text: str) -> str:
    if len(text) > MAX_WORD_LENGTH or not text.isprintable():
        raise ValueError(f"each word or phrase at most {MAX_WORD_LENGTH} characters")
    return text.lower()


def words(text: str) -> tuple[str, ...]:
    return tuple(sorted(string_set(_word)(text)))


def format_words(value: tuple[str, ...]) -> str:
    return format_string_set(frozenset(value))


def _pattern_entries(text: str) -> list[str]:
    # A single pattern may contain commas ({1,3}); several need the JSON list form.
    if text.lower() in _NONE_WORDS:
        return []
    entries = items(text) if text.startswith("[") else [text]
    if len(entries) > MAX_PATTERNS:
        raise ValueError(f"at most {MAX_PATTERNS} patterns")
    return entries


def _compile(entry: str) -> BlockedPattern:
    try:
        return compile_pattern(entry)
    except PatternError as exc:
        raise PatternError(f"“{entry[:MAX_SHOWN_PATTERN]}”: {exc}") from None


def patterns(text: str) -> tuple[str, ...]:
    entries = _pattern_entries(text)
    for entry in entries:
        _compile(entry)
    return tuple(entries)


def stored_patterns(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Stored patterns that still compile, and why each other one is no longer applied.

    Patterns saved before they ran on RE2 may use what RE2 cannot do: the others keep working.
    """
    kept: list[str] = []
    refused: list[str] = []
    for entry in _pattern_entries(text):
        try:
            _compile(entry)
        except PatternError as exc:
            refused.append(str(exc))
        else:
            kept.append(entry)
    return tuple(kept), tuple(refused)


def format_patterns(value: tuple[str, ...]) -> str:
    if not value:
        return "none"
    if len(value) == 1 and not value[0].startswith("["):
        return value[0]
    return json.dumps(list(value), ensure_ascii=False)


def channel_ids(text: str) -> frozenset[int]:
    if text.lower() in _NONE_WORDS:
        return frozenset()
    ids: set[int] = set()
    for entry in text.replace(",", " ").split():
        match = _CHANNEL_REF.fullmatch(entry)
        if match is None:
            raise ValueError
        ids.add(int(match.group(1) or match.group(2)))
    if len(ids) > MAX_LIST_ITEMS:
        raise ValueError(f"at most {MAX_LIST_ITEMS} channels")
    return frozenset(ids)


def format_channel_ids(value: frozenset[int]) -> str:
    return ", ".join(f"<#{channel}>" for channel in sorted(value)) or "none"


def optional_channel(text: str) -> int | None:
    ids = channel_ids(text)
    if len(ids) > 1:
        raise ValueError("only one channel")
    return next(iter(ids), None)


def format_optional_channel(value: int | None) -> str:
    return "none" if value is None else f"<#{value}>"


def emoji(text: str) -> str:
    if _CUSTOM_EMOJI.fullmatch(text):
        return text
    if not 1 <= len(text) <= 8 or any(char.isascii() for char in text) or not text.isprintable():
        raise ValueError
    return text


def commands(text: str) -> frozenset[str] | None:
    if text.lower() in ("all", "any"):
        return None
    return string_set(choice(GENERATION_COMMANDS))(text)


def format_commands(value: frozenset[str] | None) -> str:
    return "all" if value is None else format_string_set(value)


def identity(value: str) -> str:
    return value


def const(value: T) -> Callable[[GenerationDefaults], T]:
    """A default that does not depend on ``config.toml``."""
    return lambda _defaults: value
