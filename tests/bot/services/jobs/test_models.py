"""The jobs engine's values and texts, without a Horde: progress, delivered images, error texts."""

from __future__ import annotations

import io
from typing import Any

import PIL.Image
import pytest

from bot.horde import (
    RC,
    AIHordeRequestError,
    AIHordeRequestExpiredError,
    ImageGenerateCheckResponse,
    RequestErrorResponse,
)
from bot.services.formatting import format_duration
from bot.services.jobs import DeliveredImage, JobProgress, describe_horde_error, messages

JOB_ID = "a" * 32


def check(**overrides: Any) -> ImageGenerateCheckResponse:
    fields: dict[str, Any] = {
        "finished": 0,
        "processing": 0,
        "restarted": 0,
        "waiting": 2,
        "done": False,
        "faulted": False,
        "wait_time": 30,
        "queue_position": 4,
        "kudos": 0.0,
        "is_possible": True,
    }
    return ImageGenerateCheckResponse.model_validate(fields | overrides)


def progress(elapsed_s: float = 1.0, **overrides: Any) -> JobProgress:
    return JobProgress.from_response(JOB_ID, check(**overrides), n=2, elapsed_s=elapsed_s)


# -- JobProgress ---------------------------------------------------------------------------------


def test_progress_copies_the_check() -> None:
    shown = progress(elapsed_s=3.5, restarted=1, kudos=12.5, is_possible=False)

    assert shown.job_id == JOB_ID
    assert (shown.queue_position, shown.wait_time, shown.waiting, shown.restarted) == (4, 30, 2, 1)
    assert (shown.n, shown.kudos, shown.elapsed_s, shown.is_possible) == (2, 12.5, 3.5, False)


@pytest.mark.parametrize(
    ("overrides", "state"),
    [
        ({}, "queued"),
        ({"processing": 1, "waiting": 1, "queue_position": 0}, "processing"),
        ({"finished": 1, "processing": 1, "waiting": 0}, "processing"),
        ({"finished": 2, "waiting": 0}, "finishing"),
        ({"done": True, "faulted": True}, "finishing"),
    ],
)
def test_progress_state(overrides: dict[str, Any], state: str) -> None:
    assert progress(**overrides).state == state


def test_only_a_visible_change_counts_as_changed() -> None:
    first = progress(elapsed_s=1.0)

    assert first.changed_from(None)
    assert not progress(elapsed_s=9.0).changed_from(first)
    assert progress(elapsed_s=1.0) == progress(elapsed_s=5.0)
    assert progress(queue_position=3).changed_from(first)
    assert progress(wait_time=10).changed_from(first)
    assert progress(finished=1).changed_from(first)


# -- DeliveredImage ------------------------------------------------------------------------------


def encoded(image_format: str) -> bytes:
    out = io.BytesIO()
    PIL.Image.new("RGB", (4, 4), "blue").save(out, image_format)
    return out.getvalue()


def delivered(data: bytes, *, seed: str = "1234", index: int = 1) -> DeliveredImage:
    return DeliveredImage(
        generation_id="gen-1",
        index=index,
        seed=seed,
        model="Deliberate",
        worker_name="worker",
        worker_id="w1",
        censored=False,
        data=data,
    )


@pytest.mark.parametrize(("image_format", "extension"), [("WEBP", "webp"), ("PNG", "png"), ("JPEG", "jpg")])
def test_the_extension_follows_the_bytes(image_format: str, extension: str) -> None:
    assert delivered(encoded(image_format)).extension == extension


def test_filenames_are_numbered_from_one_and_safe() -> None:
    webp = encoded("WEBP")

    assert delivered(webp).filename() == "horde_2_1234.webp"
    assert delivered(webp, seed="../../etc passwd", index=0).filename("img") == "img_1_etcpasswd.webp"
    assert delivered(webp, seed="", index=4).filename() == "horde_5.webp"


def test_the_bytes_stay_out_of_repr_and_summary() -> None:
    image = delivered(b"RIFF\x00\x00\x00\x00WEBP" + b"x" * 1000)

    assert "data" not in repr(image)
    assert image.summary() == {
        "id": "gen-1",
        "index": 1,
        "seed": "1234",
        "model": "Deliberate",
        "worker_name": "worker",
        "worker_id": "w1",
        "censored": False,
    }


# -- error texts ---------------------------------------------------------------------------------


def horde_error(
    rc: RC | str = RC.RC_MISSING,
    status: int = 400,
    message: str = "nope",
    errors: dict[str, str] | None = None,
) -> AIHordeRequestError:
    response = RequestErrorResponse(message=message, rc=rc, http_status=status, errors=errors)
    return AIHordeRequestError(response)


def test_kudos_upfront_explains_and_advises_by_account() -> None:
    error = horde_error(RC.KudosUpfront, 403, "This request requires 23 kudos.")

    anonymous = describe_horde_error(error, anonymous=True)
    own = describe_horde_error(error, anonymous=False)

    assert "upfront" in anonymous
    assert "This request requires 23 kudos." in anonymous
    assert "/login" in anonymous
    assert "/login" not in own
    assert "fewer steps" in own


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (horde_error(RC.TooManyPrompts, 429), "Wait for your other jobs to finish"),
        (horde_error(RC.MaintenanceMode, 400), "maintenance mode"),
        (horde_error(RC.InvalidAPIKey, 401), "did not accept your API key"),
        (horde_error(RC.AnonForbidden, 403), "/login"),
        (
            horde_error(errors={"params.steps": "9999 is too big", "prompt": "required"}),
            "rejected these settings: params.steps: 9999 is too big; prompt: required",
        ),
        (horde_error(status=0), "can't be reached"),
        (horde_error(status=429, message="10 per 1 minute"), "rate-limiting"),
        (horde_error(status=502, message="<html>bad gateway</html>"), "HTTP 502"),
        (horde_error(RC.CorruptPrompt, 400, "This prompt violates our terms."), "violates our terms"),
        (horde_error("SomeNewCode", 400, "a reason from a newer server"), "a reason from a newer server"),
    ],
)
def test_horde_errors_become_user_texts(error: AIHordeRequestError, expected: str) -> None:
    assert expected in describe_horde_error(error)


def test_a_server_error_body_is_not_shown() -> None:
    text = describe_horde_error(horde_error(status=500, message="Traceback (most recent call last) ..."))

    assert "Traceback" not in text


def test_an_expired_request_has_its_own_text() -> None:
    response = RequestErrorResponse(message="not found", rc=RC.RequestNotFound, http_status=404)

    assert describe_horde_error(AIHordeRequestExpiredError(response)) == messages.EXPIRED


@pytest.mark.parametrize(
    ("seconds", "text"), [(45, "45 s"), (60, "1 min"), (1170, "19 min 30 s"), (0.45, "0 s")]
)
def test_durations(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
