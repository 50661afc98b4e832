"""The server's error shapes (horde-api.md §2) and their exact messages."""

from __future__ import annotations

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
    return HordeError(
        404,
        f"User with api_key '{api_key}' not found. You have requested this URI [/api/v2/find_user] but did "
        "you mean /api/v2/find_user or /api/v2/users or /api/v2/users/<string:user_id> ?",
        "UserNotFound",
    )


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
