"""One encrypted column of the SQL schema (a member's key, a server's sponsor key): read and
rewritten whole by key rotation, each token bound to its row."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from bot.crypto import BindingKind, binding, is_encrypted_token
from bot.storage.base import RowKey

if TYPE_CHECKING:
    from bot.storage.sql import Database


class SQLEncryptedColumn:
    """One column of KeyRing tokens, addressed by the table's key column; each row's token is bound
    to ``binding(owner, key)``."""

    def __init__(
        self, db: Database[Any], table: str, column: str, key_column: str, owner: BindingKind
    ) -> None:
        self._db = db
        self._owner: Final = owner
        self._select = f"SELECT {key_column} AS key, {column} AS token FROM {table}"
        self._update = f"UPDATE {table} SET {column} = $1 WHERE {key_column} = $2"
        self._update_if = f"{self._update} AND {column} = $3"
        self.name: Final = f"{table}.{column}"

    def bound_to(self, row: RowKey) -> str:
        return binding(self._owner, row)

    async def read_tokens(self) -> dict[RowKey, str]:
        return {row["key"]: row["token"] for row in await self._db.fetch(self._select)}

    async def write_tokens(
        self, tokens: Mapping[RowKey, str], *, expected: Mapping[RowKey, str] | None = None
    ) -> int:
        for token in tokens.values():
            if not is_encrypted_token(token):
                raise ValueError(f"{self.name}: refusing to store a value that is not a KeyRing token")
        written = 0
        async with self._db.transaction():
            for key, token in tokens.items():
                if expected is None:
                    written += await self._db.execute(self._update, (token, key))
                else:
                    written += await self._db.execute(self._update_if, (token, key, expected[key]))
        return written
