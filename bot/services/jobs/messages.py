"""The user-facing texts of the jobs engine, and the one place that turns a Horde error into one."""

from __future__ import annotations

from typing import Final

from bot.horde import RC, AIHordeRequestError, AIHordeRequestExpiredError
from bot.services.formatting import format_duration
from bot.services.jobs.models import CancelReason

LOGIN_HINT: Final = "Log in with /login to use your own AI Horde account and kudos"

FAULTED: Final = "The Horde could not finish this request (workers faulted)."
EXPIRED: Final = (
    "This request expired on the AI Horde before it finished "
    "(the Horde forgets a request after about 20 minutes)."
)
NOTHING_RETURNED: Final = "The AI Horde ended this request without returning any image."
UNREADABLE: Final = (
    "The AI Horde sent an answer the bot could not read (not the Horde's own). "
    "Please try again in a few minutes."
)
UNEXPECTED_ANSWER: Final = (
    "The AI Horde answered something the bot did not expect, so this could not be followed. "
    "Please try again in a few minutes."
)
ALL_LOST: Final = (
    "The AI Horde finished this, but none of its results could be downloaded. Please run it again."
)
UNEXPECTED: Final = "Something went wrong in the bot while running this generation."
RESTARTED_BEFORE_ACCEPTED: Final = (
    "The bot restarted before the AI Horde had accepted this request, so it could not be "
    "followed. Please run it again."
)
RESULT_EXPIRED: Final = (
    "The bot could not show these images before the AI Horde stopped keeping them "
    "(it keeps results about 20 minutes). Please run it again."
)
CANNOT_RESUME: Final = (
    "The bot restarted and can't pick this kind of generation up again. Please run it again."
)

CANCELLED: Final[dict[CancelReason, str]] = {
    CancelReason.USER: "Cancelled.",
    CancelReason.SHUTDOWN: "Cancelled because the bot was shut down. Please run it again.",
    CancelReason.MESSAGE_GONE: "Cancelled because its message was deleted.",
    CancelReason.NO_WORKER: (
        "No worker on the AI Horde can run this request (none serves this model with these settings "
        "right now), so it was cancelled before it started. Try another model or smaller settings."
    ),
}


def timed_out(timeout_s: float) -> str:
    return (
        f"The AI Horde did not finish this within {format_duration(timeout_s)}, so it was cancelled; "
        "what was ready is shown."
    )


def lost_images(count: int) -> str:
    return f"{count} image{'s' if count != 1 else ''} could not be downloaded from the AI Horde."


def fewer_images(got: int, expected: int) -> str:
    return f"The AI Horde returned {got} of {expected} images."


def describe_horde_error(error: AIHordeRequestError, *, anonymous: bool = False) -> str:
    """A text the user can act on for any error the Horde (or the way to it) answered with.

    ``anonymous`` says whether the request used the shared anonymous key, which changes the advice.
    """
    if isinstance(error, AIHordeRequestExpiredError):
        return EXPIRED
    rc, status = error.rc, error.http_status
    if rc == RC.KudosUpfront:
        advice = (
            f"{LOGIN_HINT}, or ask for fewer steps, a smaller size or fewer images."
            if anonymous
            else "Ask for fewer steps, a smaller size or fewer images, or earn kudos first."
        )
        return f"This request costs kudos upfront, which this account doesn't have: {error.message} {advice}"
    if rc == RC.TooManyPrompts:
        return (
            "Too many generations are queued on the AI Horde for this account right now. "
            "Wait for your other jobs to finish, then try again."
        )
    if rc == RC.MaintenanceMode:
        return "The AI Horde is in maintenance mode and isn't taking new requests. Please try again later."
    if rc == RC.InvalidAPIKey:
        return "The AI Horde did not accept your API key. Use /login again with your current key."
    if rc in (RC.AnonForbidden, RC.StylesAnonForbidden, RC.BetaAnonForbidden):
        return f"The AI Horde doesn't allow this anonymously. {LOGIN_HINT}."
    if error.unexpected_answer:
        # The Horde's answer did not fit the client's model: nothing the member chose was refused.
        return UNEXPECTED_ANSWER
    if error.errors:
        fields = "; ".join(f"{name}: {reason}" for name, reason in error.errors.items())
        return f"The AI Horde rejected these settings: {fields}"
    if status == 0:
        return "The AI Horde can't be reached right now. Please try again in a few minutes."
    if status == 429:
        return "The AI Horde is rate-limiting the bot right now. Please try again in a minute."
    if status >= 500:
        return f"The AI Horde had a problem (HTTP {status}). Please try again in a few minutes."
    if status < 400:
        # A success status without the Horde's JSON: a proxy's page, nothing the user can act on.
        return UNREADABLE
    return f"The AI Horde refused this request: {error.message}"
