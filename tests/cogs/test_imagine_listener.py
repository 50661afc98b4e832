"""The /imagine job listener against a fake message: throttling, attachments and Discord errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import discord
import pytest

from bot.config import ProgressSettings
from bot.horde.consts import KNOWN_IMAGE_SAMPLERS
from bot.services.imagine import ImagineParams
from bot.services.jobs import DeliveredImage, JobAbandoned, JobOutcome, JobProgress
from bot.services.render import NO_ATTACH_PERMISSION
from bot.storage import JobRecord, JobState
from cogs.imagine._delivery import MAX_ATTACHMENTS, ImagineListener, is_age_restricted, listener_for

PARAMS = ImagineParams(
    prompt="a fox",
    model="stable_diffusion",
    sampler=KNOWN_IMAGE_SAMPLERS.k_euler_a,
    steps=30,
    cfg_scale=7.0,
    width=512,
    height=512,
    n=12,
)
JOB = JobRecord(
    kind="image",
    channel_id=10,
    message_id=20,
    user_id=30,
    key_owner="user",
    request_json="{}",
    params_json=PARAMS.to_json(),
)


class FakeResponse:
    def __init__(self, status: int) -> None:
        self.status = status
        self.reason = "fake"


def http_error(kind: type[discord.HTTPException], status: int, code: int) -> discord.HTTPException:
    return kind(FakeResponse(status), {"code": code, "message": "fake"})  # type: ignore[arg-type]


@dataclass
class FakeMessage:
    """Records edits; ``failures`` are raised by the next edits, in order."""

    id: int = 20
    channel: Any = field(default_factory=lambda: SimpleNamespace(id=10))
    edits: list[dict[str, Any]] = field(default_factory=list)
    failures: list[discord.HTTPException] = field(default_factory=list)
    attachments: list[str] = field(default_factory=list)

    async def edit(self, **fields: Any) -> Any:
        if self.failures:
            raise self.failures.pop(0)
        self.edits.append(fields)
        if "attachments" in fields:
            self.attachments = [getattr(item, "filename", item) for item in fields["attachments"]]
        return SimpleNamespace(attachments=list(self.attachments))


class FakeBot:
    def __init__(self, message: FakeMessage, interval_s: float) -> None:
        self.message = message
        self.settings = SimpleNamespace(
            progress=ProgressSettings.model_construct(edit_interval_s=interval_s, bar_width=10)
        )

    def get_partial_messageable(self, channel_id: int) -> Any:
        assert channel_id == 10
        return SimpleNamespace(get_partial_message=lambda message_id: self.message)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def listener(message: FakeMessage, clock: FakeClock, interval_s: float = 3.0) -> ImagineListener:
    bot: Any = FakeBot(message, interval_s)
    return ImagineListener(bot, channel_id=10, message_id=20, params=PARAMS, anonymous=False, clock=clock)


def progress(finished: int = 0, processing: int = 1) -> JobProgress:
    return JobProgress(
        job_id=JOB.id,
        state="processing",
        queue_position=0,
        wait_time=5,
        finished=finished,
        processing=processing,
        waiting=0,
        restarted=0,
        n=PARAMS.n,
        kudos=1.0,
        elapsed_s=1.0,
        is_possible=True,
    )


def image(index: int, *, censored: bool = False) -> DeliveredImage:
    return DeliveredImage(
        generation_id=f"gen-{index}",
        index=index,
        seed=str(100 + index),
        model="stable_diffusion",
        worker_name="W",
        worker_id="w",
        censored=censored,
        data=b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    )


def outcome(images: tuple[DeliveredImage, ...]) -> JobOutcome:
    return JobOutcome(state=JobState.DONE, images=images, kudos=2.0, workers=("W",), error=None)


async def test_progress_edits_are_spaced_and_only_sent_when_changed() -> None:
    message, clock = FakeMessage(), FakeClock()
    watcher = listener(message, clock)

    await watcher.on_progress(JOB, progress(0))
    await watcher.on_progress(JOB, progress(1))  # too soon
    clock.now = 3.0
    await watcher.on_progress(JOB, progress(1))
    clock.now = 10.0
    await watcher.on_progress(JOB, progress(1))  # nothing new

    assert len(message.edits) == 2
    assert "0/12" in message.edits[0]["content"]
    assert "1/12" in message.edits[1]["content"]
    assert all(edit["allowed_mentions"].to_dict() == {"parse": []} for edit in message.edits)
    # The Cancel button goes with the first edit; later edits leave the components alone.
    assert "view" in message.edits[0]
    assert "view" not in message.edits[1]


async def test_images_go_up_at_once_and_the_final_edit_always_goes_out() -> None:
    message, clock = FakeMessage(), FakeClock()
    watcher = listener(message, clock)
    await watcher.on_progress(JOB, progress(0))

    await watcher.on_images(JOB, [image(0), image(1, censored=True)])
    await watcher.on_finished(JOB, outcome((image(0), image(1, censored=True), image(2))))

    assert len(message.edits) == 3
    assert message.attachments == ["imagine_1_100.webp", "SPOILER_imagine_2_101.webp", "imagine_3_102.webp"]
    final = message.edits[-1]
    assert final["content"].startswith("✅ **Done**")
    assert isinstance(final["embed"], discord.Embed)
    assert [item.custom_id for item in final["view"].children] == [
        f"imagine:{action}:{JOB.id}" for action in ("rerun", "seed", "edit", "upscale", "details", "delete")
    ]
    # Files already up are kept by reference; only the new one is uploaded.
    kept, new = final["attachments"][:2], final["attachments"][2:]
    assert kept == ["imagine_1_100.webp", "SPOILER_imagine_2_101.webp"]
    assert [file.filename for file in new] == ["imagine_3_102.webp"]


async def test_more_images_than_a_message_holds_are_left_out_with_a_note() -> None:
    message, clock = FakeMessage(), FakeClock()
    watcher = listener(message, clock)
    images = tuple(image(index) for index in range(12))

    await watcher.on_finished(JOB, outcome(images))

    assert len(message.attachments) == MAX_ATTACHMENTS
    assert "so 2 images are not attached; Details lists every seed." in message.edits[-1]["content"]


async def test_a_deleted_message_abandons_the_job() -> None:
    message, clock = FakeMessage(failures=[http_error(discord.NotFound, 404, 10008)]), FakeClock()
    watcher = listener(message, clock)

    with pytest.raises(JobAbandoned):
        await watcher.on_progress(JOB, progress(0))


async def test_no_permission_to_attach_files_is_said_in_text() -> None:
    message, clock = FakeMessage(failures=[http_error(discord.Forbidden, 403, 50013)]), FakeClock()
    watcher = listener(message, clock)

    await watcher.on_images(JOB, [image(0)])
    await watcher.on_finished(JOB, outcome((image(0), image(1))))

    assert [("attachments" in edit) for edit in message.edits] == [False, False]
    assert NO_ATTACH_PERMISSION in message.edits[0]["content"]
    assert NO_ATTACH_PERMISSION in message.edits[1]["content"]


async def test_other_discord_errors_skip_the_edit_and_the_next_one_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    message, clock = FakeMessage(failures=[http_error(discord.HTTPException, 500, 0)]), FakeClock()
    watcher = listener(message, clock)

    await watcher.on_images(JOB, [image(0)])
    await watcher.on_progress(JOB, progress(1))

    assert "Could not edit message 20: HTTP 500" in caplog.text
    assert message.attachments == ["imagine_1_100.webp"]


def test_the_listener_of_a_journalled_job_needs_its_message() -> None:
    bot: Any = FakeBot(FakeMessage(), 3.0)

    assert isinstance(listener_for(bot, JOB), ImagineListener)
    with pytest.raises(JobAbandoned):
        listener_for(bot, JOB.model_copy(update={"message_id": None}))
    with pytest.raises(JobAbandoned):
        listener_for(bot, JOB.model_copy(update={"params_json": "{}"}))


def test_age_restriction_comes_from_the_channel() -> None:
    assert is_age_restricted(SimpleNamespace(is_nsfw=lambda: True))
    assert not is_age_restricted(SimpleNamespace(is_nsfw=lambda: False))
    assert not is_age_restricted(None)  # a DM or an uncached channel
