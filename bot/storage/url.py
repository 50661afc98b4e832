"""Parsing of ``[database] url``: one parser per scheme, so another backend only adds an entry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeAlias


class DatabaseURLError(ValueError):
    """The database URL is malformed or names an unsupported backend."""


@dataclass(frozen=True, slots=True)
class SQLiteURL:
    """``path`` is ``None`` for an in-memory database; a relative path is relative to the working dir."""

    path: Path | None

    @property
    def is_memory(self) -> bool:
        return self.path is None


DatabaseURL: TypeAlias = SQLiteURL

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


_PARSERS: Final[dict[str, Callable[[str], DatabaseURL]]] = {"sqlite": _parse_sqlite}


def parse_database_url(url: str) -> DatabaseURL:
    scheme, sep, rest = url.strip().partition("://")
    if not sep or not scheme:
        raise DatabaseURLError("must look like sqlite:///<file path> or sqlite://:memory:")
    parser = _PARSERS.get(scheme.lower())
    if parser is None:
        supported = ", ".join(f"{name}://" for name in sorted(_PARSERS))
        raise DatabaseURLError(f"unsupported database scheme {scheme!r} (supported: {supported})")
    return parser(rest)
