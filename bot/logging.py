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


_KEY_CHARS: Final = re.compile(r"[A-Za-z0-9_-]+")
"""What AI Horde keys (22 such characters, or a UUID) and most generated secrets are made of."""


class SecretRedactor:
    """The set of secret values to mask, shared by the log formatter and whoever learns new secrets.

    Every member's key is registered at their login, so this scales with members: such key-shaped
    secrets go into a set, and :meth:`redact` looks up the runs of key characters of a line in it,
    in time linear in the line whatever the number of keys; registering one is O(1). Secrets of
    another shape (the bot token, the encryption keys: a handful) are masked by one regex.
    """

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        self._shaped: set[str] = set()
        self._lengths: tuple[int, ...] = ()  # the shaped secrets' distinct lengths, longest first
        self._runs: re.Pattern[str] | None = None  # runs of key characters as long as the shortest
        self._others: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        for secret in secrets:
            self.register_secret(secret)

    def __repr__(self) -> str:
        return f"SecretRedactor({len(self._shaped) + len(self._others)} secrets)"

    def register_secret(self, value: str) -> None:
        """Mask ``value`` from now on. Values shorter than ``MIN_SECRET_LENGTH`` are ignored."""
        value = value.strip()
        if len(value) < MIN_SECRET_LENGTH or value in self._shaped or value in self._others:
            return
        if _KEY_CHARS.fullmatch(value):
            self._shaped.add(value)
            if len(value) not in self._lengths:  # a new length: rare (keys come in two shapes)
                self._lengths = tuple(sorted({*self._lengths, len(value)}, reverse=True))
                self._runs = re.compile(rf"[A-Za-z0-9_-]{{{self._lengths[-1]},}}")
            return
        self._others.add(value)
        # Longest first, so a secret containing another one is masked whole.
        ordered = sorted(self._others, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(secret) for secret in ordered))

    def redact(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(REDACTED, text)
        text = DISCORD_TOKEN_RE.sub(REDACTED, text)
        if self._runs is not None:
            text = self._runs.sub(self._mask_run, text)
        return text

    def _mask_run(self, match: re.Match[str]) -> str:
        run = match.group()
        if run in self._shaped:
            return REDACTED
        # A key glued to other key characters ("apikeyXXXX", a URL-encoded "%3DXXXX"): look at each
        # window of each secret length; a run is at most a line, the lengths are few.
        pieces: list[str] = []
        start = index = 0
        while index < len(run):
            for length in self._lengths:
                if index + length <= len(run) and run[index : index + length] in self._shaped:
                    pieces += (run[start:index], REDACTED)
                    index = start = index + length
                    break
            else:
                index += 1
        pieces.append(run[start:])
        return "".join(pieces)


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
