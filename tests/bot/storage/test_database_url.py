from __future__ import annotations

from pathlib import Path

import pytest

from bot.storage import DatabaseURLError, SQLiteURL, parse_database_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///data/bot.sqlite3", SQLiteURL(Path("data/bot.sqlite3"))),
        ("sqlite:////var/lib/bot/bot.sqlite3", SQLiteURL(Path("/var/lib/bot/bot.sqlite3"))),
        ("SQLite:///bot.db", SQLiteURL(Path("bot.db"))),
        ("sqlite://:memory:", SQLiteURL(None)),
        ("sqlite:///:memory:", SQLiteURL(None)),
    ],
)
def test_accepted_urls(url: str, expected: SQLiteURL) -> None:
    assert parse_database_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "postgresql://bot:hunter2@db/bot",
            "unsupported database scheme 'postgresql' (supported: sqlite://)",
        ),
        ("mysql://db/bot", "unsupported database scheme 'mysql'"),
        ("data/bot.sqlite3", "must look like sqlite:///<file path>"),
        ("sqlite://host/bot.db", "must be sqlite:///<file path> or sqlite://:memory:"),
        ("sqlite:///", "must name a file"),
        ("sqlite:///data/", "must name a file"),
        ("sqlite:///bot.db?mode=ro", "query parameters"),
    ],
)
def test_rejected_urls(url: str, message: str) -> None:
    with pytest.raises(DatabaseURLError) as info:
        parse_database_url(url)
    assert message in str(info.value)
    assert "hunter2" not in str(info.value)


def test_memory_flag() -> None:
    assert SQLiteURL(None).is_memory
    assert not SQLiteURL(Path("x")).is_memory
