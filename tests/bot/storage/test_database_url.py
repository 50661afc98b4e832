from __future__ import annotations

from pathlib import Path

import pytest

from bot.storage import (
    DatabaseURLError,
    PostgresStorage,
    PostgresURL,
    SQLiteStorage,
    SQLiteURL,
    open_storage,
    parse_database_url,
)

PASSWORD = "hunter2"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///data/bot.sqlite3", SQLiteURL(Path("data/bot.sqlite3"))),
        ("sqlite:////var/lib/bot/bot.sqlite3", SQLiteURL(Path("/var/lib/bot/bot.sqlite3"))),
        ("SQLite:///bot.db", SQLiteURL(Path("bot.db"))),
        ("sqlite://:memory:", SQLiteURL(None)),
        ("sqlite:///:memory:", SQLiteURL(None)),
        ("postgresql://bot:hunter2@db:5432/bot", PostgresURL("postgresql://bot:hunter2@db:5432/bot")),
        ("postgres://bot@db/bot", PostgresURL("postgresql://bot@db/bot")),
        ("PostgreSQL://db", PostgresURL("postgresql://db")),
        (
            " postgresql://bot@/bot?host=/run/postgresql ",
            PostgresURL("postgresql://bot@/bot?host=/run/postgresql"),
        ),
        ("postgresql://bot@h1:5432,h2:5433/bot", PostgresURL("postgresql://bot@h1:5432,h2:5433/bot")),
        (
            "postgresql://bot@db/bot?sslmode=require&search_path=horde",
            PostgresURL("postgresql://bot@db/bot?sslmode=require&search_path=horde"),
        ),
    ],
)
def test_accepted_urls(url: str, expected: SQLiteURL | PostgresURL) -> None:
    assert parse_database_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://bot:hunter2@db/bot", "unsupported database scheme 'mysql'"),
        ("mysql://db/bot", "(supported: postgres://, postgresql://, sqlite://)"),
        ("data/bot.sqlite3", "must look like sqlite:///<file path>"),
        ("bot:hunter2@db/bot", "or postgresql://user@host/database"),
        ("sqlite://host/bot.db", "must be sqlite:///<file path> or sqlite://:memory:"),
        ("sqlite:///", "must name a file"),
        ("sqlite:///data/", "must name a file"),
        ("sqlite:///bot.db?mode=ro", "query parameters"),
        ("postgresql://bot:hunter2@db:port/bot", "port of a PostgreSQL URL must be a number"),
        ("postgresql://bot:hunter2@db:0/bot", "port of a PostgreSQL URL must be a number"),
        ("postgresql://bot:hunter2@db:70000/bot", "port of a PostgreSQL URL must be a number"),
        ("postgresql://bot:hunter2@db/bot/extra", "names one database"),
        ("postgresql://bot:hunter2@db/bot#hunter2", "fragments are not supported"),
        ("postgresql://bot:hunter2@db/bot?hunter2", "query must look like ?name=value"),
    ],
)
def test_rejected_urls(url: str, message: str) -> None:
    with pytest.raises(DatabaseURLError) as info:
        parse_database_url(url)
    assert message in str(info.value)
    assert PASSWORD not in str(info.value)


def test_memory_flag() -> None:
    assert SQLiteURL(None).is_memory
    assert not SQLiteURL(Path("x")).is_memory


@pytest.mark.parametrize(
    ("dsn", "redacted"),
    [
        ("postgresql://bot:hunter2@db:5432/bot", "postgresql://bot:***@db:5432/bot"),
        ("postgresql://bot:hun%40ter2@db/bot", "postgresql://bot:***@db/bot"),
        (
            "postgresql://bot@db/bot?password=hunter2&sslmode=require",
            "postgresql://bot@db/bot?password=%2A%2A%2A&sslmode=require",
        ),
        ("postgresql://bot@db/bot?sslmode=require", "postgresql://bot@db/bot?sslmode=require"),
    ],
)
def test_postgres_urls_show_no_password(dsn: str, redacted: str) -> None:
    location = PostgresURL(dsn)
    assert location.redacted == redacted
    storage = PostgresStorage(location)
    for shown in (repr(location), str(location), repr(storage), str(storage)):
        assert "hunter2" not in shown
        assert "hun%40ter2" not in shown
    assert redacted in repr(storage)


async def test_open_storage_chooses_the_backend_from_the_url(tmp_path: Path) -> None:
    path = tmp_path / "x" / "bot.sqlite3"
    async with open_storage(f"sqlite:///{path}") as storage:
        assert isinstance(storage, SQLiteStorage)
        assert storage.location.path == path
    assert path.exists()
    async with open_storage("sqlite://:memory:") as storage:
        assert isinstance(storage, SQLiteStorage)
        assert storage.location.is_memory
    storage = open_storage("postgres://bot:hunter2@127.0.0.1/bot")  # not connected: no server needed
    assert isinstance(storage, PostgresStorage)
    assert storage.location == PostgresURL("postgresql://bot:hunter2@127.0.0.1/bot")
    with pytest.raises(DatabaseURLError, match="unsupported database scheme 'mysql'"):
        open_storage("mysql://user:pw@localhost/bot")
