"""The error body of a failed AI Horde call, built from whatever the server (or a proxy) sent."""

from __future__ import annotations

import html
import json
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from bot.horde.apimodels.base import HordeResponse, enum_or_raw
from bot.horde.consts import RC

EXCERPT_MAX_CHARS = 200

_API_KEY_IN_TEXT = re.compile(r"(?i)(api[ _-]?key\W{0,3})[A-Za-z0-9_-]{6,}")
_DROPPED_HTML_BLOCKS = re.compile(r"(?is)<(script|style|head)\b.*?</\1\s*>")
_HTML_TAG = re.compile(r"(?s)<[^>]*>")
_WHITESPACE = re.compile(r"\s+")


class RequestErrorResponse(HordeResponse):
    """What a manual client returns instead of the success model when the Horde says no.

    ``rc`` is a :class:`RC` member when the code is known, the raw string when it is new, and
    ``RC.RC_MISSING`` when the body had none. ``errors`` holds the Horde's schema errors about
    the request, by field. ``unexpected_answer`` is set by the client when the Horde answered
    with a success status something it could not use: JSON that does not fit the expected
    model, or a body too large to read; ``message`` then says what (for logs, not for users).
    """

    message: str
    rc: Annotated[RC | str, BeforeValidator(enum_or_raw(RC))] = RC.RC_MISSING
    http_status: int = Field(ge=0)
    errors: dict[str, str] | None = None
    unexpected_answer: bool = False

    @property
    def is_rate_limited(self) -> bool:
        return self.http_status == 429

    @classmethod
    def from_http(cls, status: int, body: bytes | str, content_type: str | None) -> RequestErrorResponse:
        """Read any error body the Horde or a proxy in front of it may send. Never raises."""
        try:
            return cls._from_http(status, body, content_type)
        except Exception:  # a malformed body must still produce a usable error
            return cls(message=f"HTTP {status} from the Horde (unreadable body)", http_status=max(status, 0))

    @classmethod
    def _from_http(cls, status: int, body: bytes | str, content_type: str | None) -> RequestErrorResponse:
        text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
        status = max(status, 0)
        data = _parse_json_object(text)
        if data is None:
            return cls(message=_non_json_message(status, text, content_type), http_status=status)

        message = data.get("message")
        message = _redact(message.strip()) if isinstance(message, str) and message.strip() else ""
        rc = data.get("rc")
        errors = _schema_errors(data.get("errors"))
        if errors:
            failing = "; ".join(f"{name}: {_shorten(reason)}" for name, reason in errors.items())
            message = f"{message or 'Input payload validation failed'} ({failing})"
        elif not isinstance(rc, str) and status == 429:
            # The limiter's own 429 carries only the limit it applied, e.g. "10 per 1 minute".
            message = f"Rate limited by the Horde ({message})" if message else "Rate limited by the Horde"
        if not message:
            message = f"HTTP {status} from the Horde"
        return cls(
            message=message,
            rc=rc if isinstance(rc, str) and rc else RC.RC_MISSING,
            http_status=status,
            errors=errors,
        )


def _parse_json_object(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _schema_errors(raw: object) -> dict[str, str] | None:
    if not isinstance(raw, dict) or not raw:
        return None
    return {str(name): _redact(str(reason)) for name, reason in raw.items()}


def _non_json_message(status: int, text: str, content_type: str | None) -> str:
    excerpt = _excerpt(text, content_type)
    if not excerpt:
        return f"HTTP {status} from the Horde (empty body)"
    return f"HTTP {status} from the Horde (non-JSON body: {excerpt})"


def body_excerpt(text: str, content_type: str | None) -> str:
    """At most 200 characters of a body, as text: an HTML page loses its markup, a key is masked."""
    return _excerpt(text, content_type)


def _excerpt(text: str, content_type: str | None) -> str:
    if "html" in (content_type or "").lower() or text.lstrip().startswith("<"):
        text = _HTML_TAG.sub(" ", _DROPPED_HTML_BLOCKS.sub(" ", text))
        text = html.unescape(text)
    return _shorten(_redact(_WHITESPACE.sub(" ", text).strip()))


def _shorten(text: str) -> str:
    if len(text) > EXCERPT_MAX_CHARS:
        return text[: EXCERPT_MAX_CHARS - 1].rstrip() + "…"
    return text


def _redact(text: str) -> str:
    # The server echoes an unknown key back ("User with api_key '…' not found").
    return _API_KEY_IN_TEXT.sub(r"\1***", text)
