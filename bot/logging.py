"""Logging for the bot process: one stderr handler on the root logger whose output never shows a secret.

The handler sits on the root logger, so records from ``discord``, ``aiohttp`` and our own loggers all
pass through :class:`RedactingFormatter`. It masks every value registered with
:meth:`SecretRedactor.register_secret` (the Discord token, the encryption keys, each Horde API key
the bot learns at runtime) and anything shaped like a Discord bot token, wherever it appears: in the
message, its arguments, an exception's text or a stack.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Final, TextIO

REDACTED: Final = "<redacted>"
# Shorter values are not secrets we hold (the anonymous key is "0000000000"), and masking them
# would mangle ordinary log text.
MIN_SECRET_LENGTH: Final = 8

# A bot token is "<base64 user id>.<base64 timestamp>.<hmac>".
DISCORD_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9_-]{23,28}\.[A-Za-z0-9_-]{6,7}\.[A-Za-z0-9_-]{27,}")

_FORMAT: Final = "%(asctime)s %(levelname)-8s %(name)s: %(message)s"


class SecretRedactor:
    """The set of secret values to mask, shared by the log formatter and whoever learns new secrets."""

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        for secret in secrets:
            self.register_secret(secret)

    def __repr__(self) -> str:
        return f"SecretRedactor({len(self._secrets)} secrets)"

    def register_secret(self, value: str) -> None:
        """Mask ``value`` from now on. Values shorter than ``MIN_SECRET_LENGTH`` are ignored."""
        value = value.strip()
        if len(value) < MIN_SECRET_LENGTH or value in self._secrets:
            return
        self._secrets.add(value)
        # Longest first, so a secret containing another one is masked whole.
        ordered = sorted(self._secrets, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(secret) for secret in ordered))

    def redact(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(REDACTED, text)
        return DISCORD_TOKEN_RE.sub(REDACTED, text)


class RedactingFormatter(logging.Formatter):
    """Formats as usual, then masks secrets in the whole output (message, exception and stack)."""

    def __init__(self, redactor: SecretRedactor, fmt: str = _FORMAT) -> None:
        super().__init__(fmt)
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor.redact(super().format(record))


def setup_logging(
    level: str | int = "INFO",
    *,
    redactor: SecretRedactor | None = None,
    stream: TextIO | None = None,
) -> SecretRedactor:
    """Install the redacting stderr handler on the root logger; calling it again replaces it.

    Returns the redactor in use, to register secrets learnt later.
    """
    redactor = redactor if redactor is not None else SecretRedactor()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(RedactingFormatter(redactor))
    handler.set_name(__name__)

    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == __name__:
            root.removeHandler(existing)
            existing.close()
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return redactor
