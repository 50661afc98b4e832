"""Numbers and lengths of time as embeds show them."""

from __future__ import annotations

import pytest

from bot.services.formatting import UNKNOWN, format_number, format_uptime, plain_line, plural


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, UNKNOWN), (-3, "0s"), (59.9, "59s"), (3_600, "1h 0m 0s"), (8_266_208, "95d 16h 10m 8s")],
)
def test_uptime(seconds: float | None, text: str) -> None:
    assert format_uptime(seconds) == text


def test_numbers_and_plurals() -> None:
    assert (format_number(None), format_number(1_078_488.4), format_number(0)) == (UNKNOWN, "1,078,488", "0")
    assert (plural(1, "worker"), plural(2_000, "worker"), plural(None, "team")) == (
        "1 worker",
        "2,000 workers",
        f"{UNKNOWN} teams",
    )


def test_someone_elses_text_shows_on_one_line_as_written() -> None:
    assert plain_line("  **bold**\n_name_  ", 100) == "\\*\\*bold\\*\\* \\_name\\_"
    assert plain_line("x" * 10, 5) == "xxxx…"
    assert plain_line(" \n ", 5) == ""
