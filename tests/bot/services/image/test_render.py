"""The /imagine message texts, the progress bar and the edit throttle."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.horde.consts import KNOWN_FACEFIXERS, KNOWN_IMAGE_SAMPLERS, KNOWN_UPSCALERS
from bot.services.controls import details_legend
from bot.services.delivery.budget import EditThrottle
from bot.services.delivery.render import LOGIN_HINT, progress_bar, progress_fraction, prompt_preview
from bot.services.formatting import format_duration, format_kudos
from bot.services.image.render import render_details, render_progress, render_result
from bot.services.image.request import ImagineParams, NamedStrength
from bot.services.jobs import CancelReason, DeliveredImage, JobOutcome, JobProgress
from bot.storage import JobRecord, JobState

PARAMS = ImagineParams(
    prompt="a red fox in the snow",
    model="AlbedoBase XL (SDXL)",
    sampler=KNOWN_IMAGE_SAMPLERS.k_euler_a,
    steps=30,
    cfg_scale=7.0,
    width=512,
    height=768,
    n=4,
)


def progress(**changes: Any) -> JobProgress:
    values: dict[str, Any] = {
        "job_id": "a" * 32,
        "state": "processing",
        "queue_position": 3,
        "wait_time": 12,
        "finished": 1,
        "processing": 2,
        "waiting": 1,
        "restarted": 0,
        "n": 4,
        "kudos": 10.5,
        "elapsed_s": 4.2,
        "is_possible": True,
    }
    return JobProgress(**{**values, **changes})


def image(index: int, seed: str, *, censored: bool = False, worker: str = "Worker A") -> DeliveredImage:
    return DeliveredImage(
        generation_id=f"gen-{index}",
        index=index,
        seed=seed,
        model="AlbedoBase XL (SDXL)",
        worker_name=worker,
        worker_id="w1",
        censored=censored,
        data=b"RIFF....WEBP",
    )


def outcome(state: JobState, images: tuple[DeliveredImage, ...], **changes: Any) -> JobOutcome:
    values: dict[str, Any] = {
        "state": state,
        "images": images,
        "kudos": 22.0,
        "workers": tuple(dict.fromkeys(img.worker_name for img in images if img.worker_name)),
        "error": None,
    }
    return JobOutcome(**{**values, **changes})


# -- the bar ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fraction", "bar"),
    [
        (0.0, "░░░░░░░░░░"),
        (0.25, "██░░░░░░░░"),
        (0.5, "█████░░░░░"),
        (1.0, "██████████"),
        (1.7, "██████████"),
    ],
)
def test_the_bar_fills_its_width(fraction: float, bar: str) -> None:
    assert progress_bar(fraction, 10) == bar


def test_the_bar_has_the_configured_width() -> None:
    assert len(progress_bar(0.3, 37)) == 37


def test_images_being_generated_count_half() -> None:
    assert progress_fraction(progress(finished=1, processing=2, n=4)) == 0.5
    assert progress_fraction(progress(finished=4, processing=0, n=4)) == 1.0


# -- formatting ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0 s"), (4.4, "4 s"), (60, "1 min"), (185, "3 min 5 s"), (3720, "1 h 2 min")]
)
def test_durations(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_kudos() -> None:
    assert format_kudos(10.0) == "10"
    assert format_kudos(1234.56) == "1,234.6"


def test_the_prompt_preview_is_one_escaped_clipped_line() -> None:
    assert prompt_preview("a *bold*\n\nfox") == "a \\*bold\\* fox"
    assert prompt_preview("x" * 400, limit=10) == "x" * 9 + "…"


# -- progress --------------------------------------------------------------------------------------


def test_the_progress_text_shows_everything_the_user_waits_for() -> None:
    text = render_progress(PARAMS, progress(), bar_width=10, anonymous=False)

    assert text.splitlines() == [
        "**a red fox in the snow**",
        "-# AlbedoBase XL (SDXL) · 4 images",
        "🎨 Generating",
        "`█████░░░░░` 1/4",
        "1 finished · 2 processing · 1 waiting",
        "ETA 12 s · 10.5 kudos · 4 s elapsed",
    ]


def test_restarted_images_are_shown_only_when_there_are_some_and_say_what_it_means() -> None:
    text = render_progress(PARAMS, progress(restarted=2), bar_width=10, anonymous=False)

    assert (
        "1 finished · 2 processing · 1 waiting · 2 images restarted on another worker (the first one failed)"
        in text.splitlines()
    )


def test_a_queued_job_shows_its_queue_position() -> None:
    text = render_progress(
        PARAMS, progress(state="queued", finished=0, processing=0), bar_width=10, anonymous=False
    )

    assert "⏳ Waiting for a worker" in text
    assert "Queue position 3 · ETA 12 s" in text


def test_a_job_waiting_in_the_bots_queue_shows_its_place_there() -> None:
    waiting = JobProgress.in_bot_queue("job", 7, n=4, elapsed_s=12.0)
    text = render_progress(PARAMS, waiting, bar_width=4, anonymous=False)

    assert "🕒 Waiting for its turn to be sent to the AI Horde" in text
    assert "Place in the bot's queue: 7 · 12 s elapsed" in text
    assert "ETA" not in text


def test_an_impossible_request_says_so() -> None:
    text = render_progress(PARAMS, progress(is_possible=False), bar_width=10, anonymous=False)

    assert "No worker can run this request right now" in text


def test_before_the_first_poll() -> None:
    text = render_progress(PARAMS, None, bar_width=4, anonymous=False)

    assert "Sending the request to the AI Horde" in text
    assert "`░░░░` 0/4" in text


def test_an_anonymous_user_is_told_how_to_log_in() -> None:
    assert LOGIN_HINT in render_progress(PARAMS, progress(), bar_width=10, anonymous=True)
    assert "/login" in LOGIN_HINT
    assert LOGIN_HINT not in render_progress(PARAMS, progress(), bar_width=10, anonymous=False)


def test_notes_are_appended() -> None:
    text = render_progress(PARAMS, progress(), bar_width=10, anonymous=False, notes=["⚠️ no files"])

    assert text.splitlines()[-1] == "⚠️ no files"


def test_progress_texts_differ_when_the_progress_does() -> None:
    texts = {
        render_progress(PARAMS, p, bar_width=10, anonymous=False)
        for p in (progress(finished=0), progress(finished=1), progress(finished=1, elapsed_s=9))
    }

    assert len(texts) == 3


# -- results ---------------------------------------------------------------------------------------


def test_a_finished_job_shows_its_parameters_seeds_kudos_and_workers() -> None:
    images = (image(0, "111"), image(1, "222", worker="Worker B"), image(2, "333"), image(3, "444"))

    result = render_result(PARAMS, outcome(JobState.DONE, images), anonymous=False)

    assert result.content == "✅ **Done** — 4 images · 22 kudos"
    fields = {field.name: field.value for field in result.embed.fields}
    assert result.embed.description == "a red fox in the snow"
    assert fields["Model"] == "AlbedoBase XL (SDXL)"
    assert fields["Size"] == "512×768"
    assert fields["Seeds"] == "#1 `111`\n#2 `222`\n#3 `333`\n#4 `444`"
    assert fields["Kudos"] == "22"
    assert fields["Workers"] == "Worker A, Worker B"


def test_a_censored_image_is_noted_with_its_seed() -> None:
    images = (image(0, "111"), image(1, "222", censored=True))

    result = render_result(
        PARAMS.model_copy(update={"n": 2}), outcome(JobState.DONE, images), anonymous=False
    )

    assert "Image 2 (seed 222) was censored by the AI Horde's safety filter." in result.content
    seeds = {field.name: field.value for field in result.embed.fields}["Seeds"]
    assert seeds == "#1 `111`\n#2 `222` — censored by the AI Horde's safety filter"


def test_a_cancelled_job_says_so_and_counts_what_finished() -> None:
    ended = outcome(
        JobState.CANCELLED, (image(0, "111"),), error="Cancelled.", cancel_reason=CancelReason.USER
    )

    result = render_result(PARAMS, ended, anonymous=False)

    # The label says it: no "Cancelled." line under "🛑 Cancelled".
    assert result.content.splitlines() == ["🛑 **Cancelled** — 1 of 4 images · 22 kudos"]


def test_a_cancel_for_another_reason_says_why() -> None:
    ended = outcome(
        JobState.CANCELLED,
        (),
        error="Cancelled because its message was deleted.",
        cancel_reason=CancelReason.MESSAGE_GONE,
    )

    result = render_result(PARAMS, ended, anonymous=False)

    assert result.content.splitlines()[1] == "Cancelled because its message was deleted."


def test_a_failed_job_shows_the_error_notes_and_the_login_hint() -> None:
    ended = outcome(JobState.FAILED, (), error="The AI Horde refused this request.", notes=("1 lost",))

    result = render_result(PARAMS, ended, anonymous=True, notes=["extra"])

    assert result.content.splitlines() == [
        "❌ **Failed** — 0 of 4 images · 22 kudos",
        "The AI Horde refused this request.",
        "1 lost",
        "extra",
        LOGIN_HINT,
    ]
    assert "Seeds" not in {field.name for field in result.embed.fields}


def test_the_negative_prompt_is_shown() -> None:
    params = PARAMS.model_copy(update={"negative_prompt": "blurry"})

    result = render_result(params, outcome(JobState.DONE, (image(0, "1"),)), anonymous=False)

    assert {field.name: field.value for field in result.embed.fields}["Negative prompt"] == "blurry"


# -- details ---------------------------------------------------------------------------------------


def record(**changes: Any) -> JobRecord:
    values: dict[str, Any] = {
        "kind": "image",
        "channel_id": 1,
        "user_id": 2,
        "key_owner": "user",
        "request_json": "{}",
        "params_json": PARAMS.to_json(),
    }
    return JobRecord(**{**values, **changes})


def test_details_list_every_parameter_and_the_seeds() -> None:
    params = PARAMS.model_copy(
        update={
            "negative_prompt": "ugly",
            "seed": "42",
            "upscaler": KNOWN_UPSCALERS.RealESRGAN_x2plus,
            "facefixer": KNOWN_FACEFIXERS.GFPGAN,
            "loras": (NamedStrength(name="glow", strength=0.5),),
            "tis": (NamedStrength(name="7808"),),
            "source_image": "cat.png",
            "denoising_strength": 0.4,
        }
    )
    result = {"images": [{"index": 0, "seed": "42", "worker_name": "W", "censored": True}]}
    job = record(
        params_json=params.to_json(),
        result_json=json.dumps(result),
        state=JobState.DONE,
        kudos=3.0,
        horde_id="h",
    )

    embed = render_details(job)

    fields = {field.name: field.value for field in embed.fields}
    assert embed.description == "a red fox in the snow"
    assert fields["Negative prompt"] == "ugly"
    assert fields["Seed"] == "42"
    assert fields["Sampler"] == "k_euler_a"
    assert fields["Upscaler"] == "RealESRGAN_x2plus"
    assert fields["Face fixer"] == "GFPGAN"
    assert fields["LoRAs"] == "glow:0.5"
    assert fields["Textual inversions"] == "7808:1"
    assert fields["Source image"] == "cat.png (strength 0.4)"
    assert fields["NSFW"] == "censored"
    assert fields["Seeds"] == "#1 `42` · W — censored by the AI Horde's safety filter"
    assert fields["State"] == "done"
    assert fields["Kudos"] == "3"
    assert embed.footer.text == f"Job {job.id}"


def test_details_of_a_job_without_results() -> None:
    embed = render_details(record(error="boom", state=JobState.FAILED, result_json=None))

    fields = {field.name: field.value for field in embed.fields}
    assert fields["Seed"] == "random"
    assert fields["Error"] == "boom"
    assert "Seeds" not in fields


# -- the throttle ----------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_first_edit_goes_out() -> None:
    throttle = EditThrottle(3.0, clock=FakeClock())

    assert throttle.should_edit("a")


def test_an_unchanged_message_is_not_edited_again() -> None:
    clock = FakeClock()
    throttle = EditThrottle(3.0, clock=clock)
    throttle.sent("a")
    clock.now = 100

    assert not throttle.should_edit("a")
    assert throttle.should_edit("b")


def test_edits_are_spaced_by_the_interval() -> None:
    clock = FakeClock()
    throttle = EditThrottle(3.0, clock=clock)
    throttle.sent("a")

    clock.now = 2.99
    assert not throttle.ready()
    assert not throttle.should_edit("b")
    clock.now = 3.0
    assert throttle.should_edit("b")
    throttle.sent("b")
    clock.now = 4.0
    assert not throttle.should_edit("c")


def test_a_forced_edit_always_goes_out() -> None:
    clock = FakeClock()
    throttle = EditThrottle(3.0, clock=clock)
    throttle.sent("a")

    assert throttle.should_edit("a", force=True)
    assert throttle.should_edit("b", force=True)


def test_details_end_with_the_buttons_and_reactions() -> None:
    fields = {field.name: field.value for field in render_details(record()).fields}

    assert list(fields)[-1] == "Buttons and reactions"
    assert fields["Buttons and reactions"] == details_legend()
