"""Parsing of ``[database] url``: one parser per scheme, so another backend only adds an entry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeAlias
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


class DatabaseURLError(ValueError):
    """The database URL is malformed or names an unsupported backend. Never quotes a password."""


@dataclass(frozen=True, slots=True)
class SQLiteURL:
    """``path`` is ``None`` for an in-memory database; a relative path is relative to the working dir."""

    path: Path | None

    @property
    def is_memory(self) -> bool:
        return self.path is None


@dataclass(frozen=True, slots=True, repr=False)
class PostgresURL:
    """A ``postgresql://user:password@host:port/database?setting=value`` URL, as asyncpg takes it.

    Query parameters that are not connection options (``sslmode``, ``host``, …) become server
    settings of every connection, e.g. ``?search_path=bot`` or ``?idle_in_transaction_session_timeout=60000``.
    The repr shows :attr:`redacted`, never the password.
    """

    dsn: str

    @property
    def redacted(self) -> str:
        parts = urlsplit(self.dsn)
        userinfo, at, hostinfo = parts.netloc.rpartition("@")
        netloc = parts.netloc
        if at and ":" in userinfo:
            netloc = f"{userinfo.partition(':')[0]}:***@{hostinfo}"
        query = parts.query
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(name == "password" for name, _ in pairs):
            query = urlencode([(name, "***" if name == "password" else value) for name, value in pairs])
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))

    def __repr__(self) -> str:
        return f"PostgresURL({self.redacted!r})"


DatabaseURL: TypeAlias = SQLiteURL | PostgresURL

_MEMORY: Final = ":memory:"


def _parse_sqlite(rest: str) -> SQLiteURL:
    # SQLAlchemy's convention: sqlite:///relative/file, sqlite:////absolute/file, sqlite://:memory:.
    if rest in (_MEMORY, f"/{_MEMORY}"):
        return SQLiteURL(path=None)
    if not rest.startswith("/"):
        raise DatabaseURLError("a SQLite URL must be sqlite:///<file path> or sqlite://:memory:")
    path = rest[1:]
    if not path or path.endswith("/"):
        raise DatabaseURLError("a SQLite URL must name a file, e.g. sqlite:///data/bot.sqlite3")
    if "?" in path or "#" in path:
        raise DatabaseURLError("query parameters and fragments are not supported in a SQLite URL")
    return SQLiteURL(path=Path(path))


def _parse_postgres(rest: str) -> PostgresURL:
    # Normalised to postgresql://, which asyncpg and libpq both accept; the messages quote nothing.
    dsn = f"postgresql://{rest}"
    parts = urlsplit(dsn)
    if parts.fragment or dsn.endswith("#"):
        raise DatabaseURLError("fragments are not supported in a PostgreSQL URL")
    if "/" in parts.path[1:]:
        raise DatabaseURLError("a PostgreSQL URL names one database: postgresql://user@host:5432/database")
    hostinfo = parts.netloc.rpartition("@")[2]
    if "," not in hostinfo:  # several hosts (host1:5432,host2:5432) are checked by the driver
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port is not None and not 1 <= port <= 65535:
            raise DatabaseURLError("the port of a PostgreSQL URL must be a number from 1 to 65535")
    try:
        parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise DatabaseURLError("a PostgreSQL URL's query must look like ?name=value&name=value") from None
    return PostgresURL(dsn)


_PARSERS: Final[dict[str, Callable[[str], DatabaseURL]]] = {
    "sqlite": _parse_sqlite,
    "postgresql": _parse_postgres,
    "postgres": _parse_postgres,
}


def parse_database_url(url: str) -> DatabaseURL:
    scheme, sep, rest = url.strip().partition("://")
    if not sep or not scheme:
        raise DatabaseURLError(
            "must look like sqlite:///<file path>, sqlite://:memory: or postgresql://user@host/database"
        )
    parser = _PARSERS.get(scheme.lower())
    if parser is None:
        supported = ", ".join(f"{name}://" for name in sorted(_PARSERS))
        raise DatabaseURLError(f"unsupported database scheme {scheme!r} (supported: {supported})")
    return parser(rest)
