"""Server admins' ``blocked_patterns``, matched in time linear in the text, whatever the pattern.

Python's ``re`` backtracks: an admin's ``(a|aa)*b`` froze the whole bot for seconds on a 30-character
prompt, and no check of the pattern's shape can rule every such case out. So patterns are matched by
RE2 (``google-re2``), whose automaton never backtracks. Admins still write Python's syntax, with
Python's meaning: :func:`translate` reads the pattern with Python's own parser and writes the same
language in RE2's syntax, spelling out what RE2 means differently (its ``\\w``, ``\\d``, ``\\s`` and
``\\b`` are ASCII-only, Python's are Unicode; ``$`` also matches before a final newline). What RE2
cannot do in linear time (backreferences, lookaround, possessive or atomic groups, a ``\\b`` whose
neighbours are not known to be letters or not) is refused with a message saying so.

Only *whether* a pattern occurs matters here, never where: that freedom lets a ``\\b`` at either end
of a pattern consume the neighbouring character instead of looking at it.
"""

from __future__ import annotations

import re
import re._constants as sre  # the parser's opcodes: the one exact reading of Python's syntax
import re._parser as sre_parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import re2

MAX_PATTERN_LENGTH: Final = 200
MAX_REPEAT_COUNT: Final = 1000
"""RE2's most for a counted repetition such as ``a{3,1000}``."""

_WORD: Final = r"\p{L}\p{N}_"
"""Python's Unicode ``\\w`` (``str.isalnum()`` or ``_``), as the inside of an RE2 class."""
_SPACE: Final = (
    r"\t-\r\x{1c}-\x{20}\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}"
)
"""Python's Unicode ``\\s`` (``str.isspace()``)."""
_ASCII_WORD: Final = "0-9A-Za-z_"
_ASCII_SPACE: Final = r"\t-\r "
_NOTHING: Final = r"[^\x{0}-\x{10ffff}]"
"""A class no character is in: a ``\\b`` that can never hold."""

Kind = Literal["word", "other"]


class PatternError(ValueError):
    """The pattern cannot be used; the text tells the admin why and what to write instead."""


NOT_SUPPORTED: Final = {
    sre.GROUPREF: "backreferences such as \\1",
    sre.GROUPREF_EXISTS: "conditional groups (?(1)…)",
    sre.ASSERT: "lookahead and lookbehind (?=…) (?<=…)",
    sre.ASSERT_NOT: "negative lookahead and lookbehind (?!…) (?<!…)",
    sre.POSSESSIVE_REPEAT: "possessive quantifiers such as a*+",
    sre.ATOMIC_GROUP: "atomic groups (?>…)",
}
ALLOWED: Final = (
    "Python regular expressions without backreferences, lookaround, possessive quantifiers or atomic "
    f"groups, with repetition counts up to {MAX_REPEAT_COUNT}, and \\b only at a pattern's ends or "
    "between a letter/digit and another character"
)


@dataclass(frozen=True, slots=True)
class BlockedPattern:
    """One admin pattern, compiled for RE2; always case-insensitive, like ``blocked_words``."""

    source: str
    translated: str = field(repr=False)
    _regexp: Any = field(repr=False, compare=False)

    def search(self, text: str) -> bool:
        """Whether the pattern occurs anywhere in ``text``; linear in ``len(text)``."""
        try:
            return self._regexp.search(text) is not None
        except UnicodeEncodeError:
            # RE2 reads UTF-8; a lone surrogate cannot be encoded, and matches nothing anyway.
            return self._regexp.search(text.encode("utf-8", "replace").decode("utf-8")) is not None


def compile_pattern(pattern: str) -> BlockedPattern:
    """Compile one admin pattern for RE2, or raise :class:`PatternError` saying what is allowed."""
    if not pattern or len(pattern) > MAX_PATTERN_LENGTH:
        raise PatternError(f"each pattern 1 to {MAX_PATTERN_LENGTH} characters")
    translated = translate(pattern)
    options = re2.Options()
    options.log_errors = False
    try:
        regexp = re2.compile(translated, options)
    except re2.error as exc:
        # The translation is valid RE2 syntax; what RE2 still refuses is size (its 8 MiB budget).
        raise PatternError(f"the pattern is too large once expanded ({_re2_reason(exc)})") from None
    return BlockedPattern(pattern, translated, regexp)


def translate(pattern: str) -> str:
    """``pattern`` (Python syntax, case-insensitive) as an RE2 pattern that matches the same texts."""
    try:
        parsed = sre_parse.parse(pattern, re.IGNORECASE)
    except re.error as exc:
        raise PatternError(f"invalid regular expression: {exc.msg}") from None
    except (RecursionError, OverflowError):
        raise PatternError("the pattern is too deeply nested") from None
    flags = parsed.state.flags
    return ("(?i)" if flags & re.IGNORECASE else "") + _Writer().sequence(
        list(parsed), flags, at_start=True, at_end=True
    )


def _re2_reason(exc: Exception) -> str:
    reason = exc.args[0] if exc.args else exc
    return reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)


def _is_word(char: int, flags: int) -> bool:
    if flags & re.ASCII:
        return char < 128 and (chr(char).isalnum() or char == ord("_"))
    return chr(char).isalnum() or char == ord("_")


def _char(code: int) -> str:
    return f"\\x{{{code:x}}}"


class _Writer:
    """Writes a parsed pattern out in RE2's syntax, one node at a time."""

    def sequence(self, items: Sequence[Any], flags: int, *, at_start: bool, at_end: bool) -> str:
        out = []
        for index, (op, arg) in enumerate(items):
            if op is sre.AT and arg in (sre.AT_BOUNDARY, sre.AT_NON_BOUNDARY):
                rest = items[index + 1 :]
                start = "start" if at_start else None
                before = _sequence_kind(items[:index], flags, "last") if index else start
                after = _sequence_kind(rest, flags, "first") if rest else "end" if at_end else None
                out.append(self._boundary(arg is sre.AT_BOUNDARY, before, after, flags))
            else:
                first, last = index == 0, index == len(items) - 1
                out.append(self.node(op, arg, flags, at_start=at_start and first, at_end=at_end and last))
        return "".join(out)

    def node(self, op: Any, arg: Any, flags: int, *, at_start: bool, at_end: bool) -> str:
        if op in NOT_SUPPORTED:
            raise PatternError(f"{NOT_SUPPORTED[op]} can't be matched safely")
        if op is sre.LITERAL:
            return _char(arg)
        if op is sre.NOT_LITERAL:
            return f"[^{_char(arg)}]"
        if op is sre.ANY:
            return r"(?s:.)" if flags & re.DOTALL else r"[^\n]"
        if op is sre.IN:
            return self._class(arg, flags)
        if op is sre.BRANCH:
            branches = (self.sequence(b, flags, at_start=at_start, at_end=at_end) for b in arg[1])
            return "(?:" + "|".join(branches) + ")"
        if op is sre.SUBPATTERN:
            _group, add, remove, body = arg
            inner = (flags | add) & ~remove
            case = "" if (inner ^ flags) & re.IGNORECASE == 0 else ("i" if inner & re.IGNORECASE else "-i")
            return f"(?{case}:" + self.sequence(body, inner, at_start=at_start, at_end=at_end) + ")"
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            # Greedy or lazy finds the same texts; only where the match ends would differ.
            low, high, body = arg
            return "(?:" + self.sequence(body, flags, at_start=False, at_end=False) + ")" + _count(low, high)
        if op is sre.AT:
            return self._anchor(arg, flags, at_end=at_end)
        raise PatternError("this pattern uses a construct that can't be matched safely")

    @staticmethod
    def _anchor(where: Any, flags: int, *, at_end: bool) -> str:
        multiline = bool(flags & re.MULTILINE)
        if where is sre.AT_BEGINNING:
            return "(?m:^)" if multiline else r"\A"
        if where is sre.AT_BEGINNING_STRING:
            return r"\A"
        if where is sre.AT_END_STRING:
            return r"\z"
        if multiline:
            return "(?m:$)"
        if not at_end:
            # Python's $ also matches before a final newline; RE2 can't look ahead, so only at the
            # end of the pattern may it take that newline.
            raise PatternError("$ only at the end of a pattern (or with (?m))")
        return r"\n?\z"

    @staticmethod
    def _boundary(boundary: bool, before: str | None, after: str | None, flags: int) -> str:
        if flags & re.ASCII:
            return r"\b" if boundary else r"\B"  # RE2's own are ASCII, like Python's with (?a)
        word = f"[{_WORD}]"
        other = f"[^{_WORD}]"
        if before in ("word", "other") and after in ("word", "other"):
            return "" if (before != after) == boundary else _NOTHING
        if before == "start" and after in ("word", "other"):
            # The character before the pattern must be of the other kind (or there is none).
            wanted_word = (after == "other") == boundary
            return word if wanted_word else rf"(?:\A|{other})"
        if after == "end" and before in ("word", "other"):
            wanted_word = (before == "other") == boundary
            return word if wanted_word else rf"(?:{other}|\z)"
        raise PatternError(
            "\\b and \\B only at an end of the pattern or between two things each surely a "
            "letter/digit/_ or surely not"
        )

    @staticmethod
    def _class(items: Sequence[Any], flags: int) -> str:
        negate = bool(items) and items[0][0] is sre.NEGATE
        parts: list[str] = []
        rest = items[1:] if negate else items
        for op, arg in rest:
            if op is sre.LITERAL:
                parts.append(_char(arg))
            elif op is sre.RANGE:
                parts.append(f"{_char(arg[0])}-{_char(arg[1])}")
            elif op is sre.CATEGORY:
                inside, negated = _category(arg, flags)
                if negated:
                    if len(rest) != 1:
                        raise PatternError("\\W, \\S or \\D with other items in [...]; write [^...] instead")
                    negate = not negate
                parts.append(inside)
            else:  # pragma: no cover - the parser puts nothing else in a class
                raise PatternError("unsupported character class")
        written = "[" + ("^" if negate else "") + "".join(parts) + "]"
        if all(op is sre.CATEGORY for op, _arg in rest):
            # Python never case-folds \w, \s or \d; RE2's (?i) would add U+0345 (it folds to ι) to \w.
            return f"(?-i:{written})"
        return written


def _category(category: Any, flags: int) -> tuple[str, bool]:
    """A category as the inside of an RE2 class, and whether it is the negation of that inside."""
    ascii_only = bool(flags & re.ASCII)
    word, space = (_ASCII_WORD, _ASCII_SPACE) if ascii_only else (_WORD, _SPACE)
    digit = "0-9" if ascii_only else r"\p{Nd}"
    table = {
        sre.CATEGORY_WORD: (word, False),
        sre.CATEGORY_NOT_WORD: (word, True),
        sre.CATEGORY_SPACE: (space, False),
        sre.CATEGORY_NOT_SPACE: (space, True),
        sre.CATEGORY_DIGIT: (digit, False),
        sre.CATEGORY_NOT_DIGIT: (digit, True),
    }
    return table[category]


def _count(low: int, high: int) -> str:
    if max(low, 0 if high == sre.MAXREPEAT else high) > MAX_REPEAT_COUNT:
        raise PatternError(f"repetition counts at most {MAX_REPEAT_COUNT}")
    if high == sre.MAXREPEAT:
        return {0: "*", 1: "+"}.get(low, f"{{{low},}}")
    if (low, high) == (0, 1):
        return "?"
    return f"{{{low}}}" if low == high else f"{{{low},{high}}}"


def _kind(item: tuple[Any, Any], flags: int, side: Literal["first", "last"]) -> Kind | None:
    """Whether ``item``'s first (or last) character is surely a word character, surely not, or ``None``."""
    op, arg = item
    if op is sre.LITERAL:
        return "word" if _is_word(arg, flags) else "other"
    if op is sre.IN:
        kinds = {_class_item_kind(each, flags) for each in arg}
        return kinds.pop() if len(kinds) == 1 else None
    if op is sre.SUBPATTERN:
        _group, add, remove, body = arg
        return _sequence_kind(body, (flags | add) & ~remove, side)
    if op is sre.BRANCH:
        kinds = {_sequence_kind(branch, flags, side) for branch in arg[1]}
        return kinds.pop() if len(kinds) == 1 else None
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT) and arg[0] >= 1:
        return _sequence_kind(arg[2], flags, side)
    return None


def _sequence_kind(items: Sequence[Any], flags: int, side: Literal["first", "last"]) -> Kind | None:
    """The kind of a sequence's first (last) character; optional items (``s?``) look past themselves."""
    kinds: set[Kind | None] = set()
    for op, arg in list(items) if side == "first" else list(items)[::-1]:
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT) and arg[0] == 0:
            kinds.add(_sequence_kind(arg[2], flags, side))
            continue
        kinds.add(_kind((op, arg), flags, side))
        return kinds.pop() if len(kinds) == 1 else None
    return None  # the whole sequence may be empty


def _class_item_kind(item: tuple[Any, Any], flags: int) -> Kind | None:
    op, arg = item
    if op is sre.LITERAL:
        return "word" if _is_word(arg, flags) else "other"
    if op is sre.RANGE:
        low, high = arg
        if high - low > 0x3000:
            return None
        words = {_is_word(code, flags) for code in range(low, high + 1)}
        return None if len(words) != 1 else ("word" if words.pop() else "other")
    if op is sre.CATEGORY:
        categories: dict[Any, Kind] = {
            sre.CATEGORY_WORD: "word",
            sre.CATEGORY_DIGIT: "word",
            sre.CATEGORY_NOT_WORD: "other",
            sre.CATEGORY_SPACE: "other",
        }
        return categories.get(arg)
    return None  # NEGATE: a negated class holds both kinds
