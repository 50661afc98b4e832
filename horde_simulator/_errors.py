"""The server's error shapes (horde-api.md §2) and their exact messages."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

SCHEMA_MESSAGE = "Input payload validation failed"
INVALID_API_KEY_MESSAGE = (
    "No user matching sent API Key. Have you remembered to register at https://stablehorde.net/register ?"
)
HORDE_TITLE = "AI Horde"


class HordeError(Exception):
    """``{"message", "rc"}`` with an HTTP status (``handle_bad_requests``)."""

    def __init__(self, status: int, message: str, rc: str) -> None:
        super().__init__(f"{status} {rc}: {message}")
        self.status = status
        self.message = message
        self.rc = rc

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "rc": self.rc}


class SchemaError(Exception):
    """flask-restx / reqparse validation: 400 ``{"errors": {field: reason}, "message"}``, no rc."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        super().__init__(f"schema errors: {sorted(errors)}")
        self.errors = dict(errors)

    def body(self) -> dict[str, Any]:
        return {"errors": self.errors, "message": SCHEMA_MESSAGE}


def bad_request(message: str, rc: str = "BadRequest") -> HordeError:
    return HordeError(400, message, rc)


def forbidden(message: str, rc: str = "Forbidden") -> HordeError:
    return HordeError(403, message, rc)


def invalid_api_key() -> HordeError:
    return HordeError(401, INVALID_API_KEY_MESSAGE, "InvalidAPIKey")


# Flask-RESTX's ERROR_404_HELP: a 404 message ends with the server's routes closest to the path
# asked for (difflib, as flask_restx.Api._help_on_404 does), when any are close enough. These are
# the API's routes in AI-Horde 5.1.5 (its swagger.json), under /api.
_API_PATHS = (
    "/v2/collection_by_name/{collection_name}", "/v2/collections", "/v2/collections/{collection_id}",
    "/v2/documents/privacy", "/v2/documents/sponsors", "/v2/documents/terms", "/v2/filters",
    "/v2/filters/regex", "/v2/filters/{filter_id}", "/v2/find_user", "/v2/generate/async",
    "/v2/generate/check/{id}", "/v2/generate/pop", "/v2/generate/rate/{id}", "/v2/generate/status/{id}",
    "/v2/generate/submit", "/v2/generate/text/async", "/v2/generate/text/pop",
    "/v2/generate/text/status/{id}", "/v2/generate/text/submit", "/v2/interrogate/async",
    "/v2/interrogate/pop", "/v2/interrogate/status/{id}", "/v2/interrogate/submit", "/v2/kudos/award",
    "/v2/kudos/transfer", "/v2/operations/block_worker_ipaddr/{worker_id}", "/v2/operations/ipaddr",
    "/v2/operations/ipaddr/{ipaddr}", "/v2/sharedkeys", "/v2/sharedkeys/{sharedkey_id}",
    "/v2/stats/img/models", "/v2/stats/img/totals", "/v2/stats/text/models", "/v2/stats/text/totals",
    "/v2/status/heartbeat", "/v2/status/models", "/v2/status/models/{model_name}", "/v2/status/modes",
    "/v2/status/news", "/v2/status/performance", "/v2/styles/image", "/v2/styles/image/{style_id}",
    "/v2/styles/image/{style_id}/example", "/v2/styles/image/{style_id}/example/{example_id}",
    "/v2/styles/image_by_name/{style_name}", "/v2/styles/text", "/v2/styles/text/{style_id}",
    "/v2/styles/text_by_name/{style_name}", "/v2/teams", "/v2/teams/{team_id}", "/v2/users",
    "/v2/users/{user_id}", "/v2/workers", "/v2/workers/messages", "/v2/workers/messages/{message_id}",
    "/v2/workers/name/{worker_name}", "/v2/workers/{worker_id}",
)  # fmt: skip
# Keyed as Flask-RESTX keys them: everything from the first "<" to the last ">" removed (so a
# route with two parameters shadows the one-parameter route it extends: the later one wins).
_ROUTES = {re.sub(r"\{.*\}", "", path): re.sub(r"\{(\w+)\}", r"<string:\1>", path) for path in _API_PATHS}
USER_ID_HINT = "Please use only the numerical part of the userID. E.g. the '1' in 'db0#1'"


def with_route_hint(message: str, path: str) -> str:
    """``message`` as the server words a 404 on ``path``."""
    matches = difflib.get_close_matches(path, ["/api" + route for route in _ROUTES])
    if not matches:
        return message
    closest = " or ".join("/api" + _ROUTES[match.removeprefix("/api")] for match in matches)
    return f"{message.rstrip('.')}. You have requested this URI [{path}] but did you mean {closest} ?"


def request_not_found(request_type: str, request_id: str) -> HordeError:
    return HordeError(404, f"{request_type} with ID '{request_id}' not found.", "RequestNotFound")


def thing_not_found(thing_type: str, thing_id: str) -> HordeError:
    """``ThingNotFound``: the rc is built from the capitalised type, as the server does."""
    kind = thing_type.capitalize()
    return HordeError(404, f"{kind} with ID '{thing_id}' not found.", f"{kind}NotFound")


def worker_not_found(worker_id: str) -> HordeError:
    return HordeError(404, f"Worker with ID '{worker_id}' not found.", "WorkerNotFound")


def user_not_found(user_id: str, lookup_type: str = "ID") -> HordeError:
    return HordeError(404, f"User with {lookup_type} '{user_id}' not found.", "UserNotFound")


def unknown_api_key(api_key: str) -> HordeError:
    """``find_user`` with a key nobody has. The real server echoes the key in the message,
    so the simulator does too: clients must not log this message unredacted."""
    return user_not_found(api_key, "api_key")


def maintenance_mode() -> HordeError:
    return bad_request(
        f"{HORDE_TITLE} has entered maintenance mode. Please try again later.", "MaintenanceMode"
    )


def too_many_prompts(count: int, concurrency: int) -> HordeError:
    return HordeError(
        429,
        f"Parallel requests ({count}) exceeded user limit ({concurrency}). "
        "Please try again later or request to increase your concurrency.",
        "TooManyPrompts",
    )


def missing_prompt() -> HordeError:
    return bad_request("You cannot specify an empty prompt.", "MissingPrompt")


def image_validation_failed(detail: str | None = None, rc: str = "ImageValidationFailed") -> HordeError:
    detail = detail or (
        "Please ensure the source image payload is either a URL containing an image "
        "or a valid base64 encoded image."
    )
    return bad_request(f"Image validation failed. {detail}", rc)


def kudos_upfront(message: str) -> HordeError:
    return forbidden(message, "KudosUpfront")


def missing_parameter(name: str, help_text: str | None, location: str) -> SchemaError:
    """What reqparse says when a required argument is absent."""
    error = f"Missing required parameter in {location}"
    return SchemaError({name: f"{help_text} {error}" if help_text else error})


NOT_FOUND_PAGE = (
    "<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n"
    "<p>The requested URL was not found on the server. If you entered the URL manually please check "
    "your spelling and try again.</p>\n"
)
NOT_FOUND_BODY = {
    "message": "The requested URL was not found on the server. "
    "If you entered the URL manually please check your spelling and try again."
}
METHOD_NOT_ALLOWED_BODY = {"message": "The method is not allowed for the requested URL."}
BAD_JSON_BODY = {
    "message": "Failed to decode JSON object: the browser (or proxy) sent a request that this server "
    "could not understand."
}
INTERNAL_ERROR_BODY = {"message": "Internal Server Error"}
