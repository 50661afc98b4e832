"""Exceptions raised by the simple clients (manual clients return error responses instead)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.horde.apimodels.errors import RequestErrorResponse
    from bot.horde.consts import RC


class AIHordeError(Exception):
    """Base class of every error raised by the client layer."""


class AIHordeRequestError(AIHordeError):
    """The AI Horde (or the way to it) answered a request with an error."""

    def __init__(self, error_response: RequestErrorResponse, message: str | None = None) -> None:
        self.error_response = error_response
        self.message: str = message or error_response.message
        super().__init__(self.message)

    @property
    def rc(self) -> RC | str:
        return self.error_response.rc

    @property
    def http_status(self) -> int:
        return self.error_response.http_status

    @property
    def errors(self) -> dict[str, str] | None:
        return self.error_response.errors

    @property
    def unexpected_answer(self) -> bool:
        """The Horde answered, but not in a form this client can use (see
        :class:`~bot.horde.apimodels.errors.RequestErrorResponse`): nothing the caller sent was
        refused."""
        return self.error_response.unexpected_answer

    @property
    def is_transient(self) -> bool:
        """Whether asking again later may well succeed: the Horde failed (5xx), could not be
        reached (status 0: refused, reset, timed out), was rate-limiting (429), or the answer
        was not the Horde's own (a success status without its JSON: a proxy's page). Any other
        4xx is the Horde's considered answer (404: the request is gone; a rc: refused)."""
        status = self.http_status
        return status < 400 or status == 429 or status >= 500

    def __str__(self) -> str:
        status = f"HTTP {self.http_status}" if self.http_status else "no HTTP response"
        return f"{self.message} ({status}, rc={getattr(self.rc, 'value', self.rc)})"


class AIHordeImageDownloadError(AIHordeError):
    """A generated image could not be downloaded or decoded."""


class AIHordeRequestExpiredError(AIHordeRequestError):
    """The Horde no longer knows a request id (404): it expired, was never made, or was purged."""
