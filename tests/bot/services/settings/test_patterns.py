"""Admin patterns run on RE2: the same texts as Python's ``re`` would find, in linear time."""

from __future__ import annotations

import re
import sys
import unicodedata

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from bot.services.settings.patterns import MAX_PATTERN_LENGTH, PatternError, compile_pattern, translate

ALPHABET = "aAbé1_ -кК\n.!"

atoms = st.sampled_from(
    [
        "a", "b", "é", "к", "1", "_", " ", "-", "!", ".", r"\w", r"\W", r"\d", r"\D", r"\s", r"\S",
        "[ab]", "[^a]", "[a-z]", r"[\w-]", "[é1]", r"[^\s]", r"\.",
    ]
)  # fmt: skip


def _grow(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    quantifier = st.sampled_from(["*", "+", "?", "{2}", "{0,3}", "{1,}", "*?"])
    return st.one_of(
        st.tuples(inner, inner).map("".join),
        st.tuples(inner, inner).map(lambda pair: f"(?:{pair[0]}|{pair[1]})"),
        st.tuples(inner, quantifier).map(lambda pair: f"({pair[0]}){pair[1]}"),
    )


python_patterns = st.recursive(atoms, _grow, max_leaves=8).flatmap(
    lambda body: st.sampled_from(
        [
            body,
            rf"\b{body}",
            rf"{body}\b",
            rf"\b{body}\b",
            rf"\B{body}",
            f"^{body}",
            f"{body}$",
            f"(?s){body}",
        ],
    )
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=python_patterns, texts=st.lists(st.text(ALPHABET, max_size=8), min_size=1, max_size=8))
@example(pattern=r"\bкот\b", texts=["мой кот!", "котик", "кот", "скот"])
@example(pattern=r"foo$", texts=["foo\n", "foo", "foo!", "foo\n\n"])
@example(pattern=r"(\bcat|dog)s?\b", texts=["cats", "dogs!", "concat", "dogsx"])
def test_a_translated_pattern_finds_what_python_finds(pattern: str, texts: list[str]) -> None:
    try:
        compiled = compile_pattern(pattern)
    except PatternError:
        assume(False)
        return
    python = re.compile(pattern, re.IGNORECASE)
    for text in texts:
        expected = python.search(text) is not None
        assert compiled.search(text) == expected, (pattern, compiled.translated, text)


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"(a)\1", "backreferences"),
        ("(?P<x>a)(?P=x)", "backreferences"),
        ("foo(?!bar)", "lookahead"),
        ("(?<=a)b", "lookbehind"),
        ("a*+b", "possessive"),
        ("(?>ab)c", "atomic"),
        ("a{1001}", "at most 1000"),
        ("(unclosed", "invalid regular expression"),
        ("a" * (MAX_PATTERN_LENGTH + 1), "1 to 200 characters"),
        ("x.\\b.y", "\\b and \\B only"),
        ("foo$bar", "$ only at the end"),
        (r"[\W\d]", "[^...]"),
    ],
)
def test_what_cannot_be_matched_safely_is_refused_saying_why(pattern: str, why: str) -> None:
    with pytest.raises(PatternError, match=re.escape(why)):
        compile_pattern(pattern)


def test_python_meanings_of_word_classes_hold_beyond_ascii() -> None:
    # RE2's own \b and \w are ASCII-only: "\bкот\b" would never match there.
    assert compile_pattern(r"\bкот\b").search("мой КОТ!")
    assert not compile_pattern(r"\bкот\b").search("котик")
    assert compile_pattern(r"^\w+$").search("ñandú")
    assert compile_pattern(r"\d").search("٣")
    assert compile_pattern(r"a\sb").search("a\u3000b")


def test_word_and_space_classes_match_pythons_on_every_character() -> None:
    word, space, digit = (compile_pattern(p) for p in (r"\w", r"\s", r"\d"))
    for code in range(sys.maxunicode + 1):
        if 0xD800 <= code <= 0xDFFF:
            continue
        char = chr(code)
        if unicodedata.category(char) == "Cn":
            continue  # unassigned in Python's Unicode version; RE2's tables may be newer
        assert word.search(char) == (char.isalnum() or char == "_"), hex(code)
        assert space.search(char) == char.isspace(), hex(code)
        assert digit.search(char) == char.isdecimal(), hex(code)


def test_a_translation_is_refused_rather_than_wrong_for_unknown_neighbours() -> None:
    with pytest.raises(PatternError):
        translate(r"(a|!)\b")
