"""The /imagine job listener against a fake message: throttling, the channel budget, attachments,
Discord errors, and moving to a new message."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import discord
import pytest

from bot.config import ProgressSettings
from bot.horde.consts import KNOWN_IMAGE_SAMPLERS
from bot.services.delivery.budget import ChannelEditBudget
from bot.services.delivery.service import Delivery
from bot.services.delivery.targets import BuildFields
from bot.services.image.listener import MAX_ATTACHMENTS, ImagineListener
from bot.services.image.render import NO_ATTACH_PERMISSION
from bot.services.image.request import ImagineParams
from bot.services.jobs import DeliveredImage, JobAbandoned, JobOutcome, JobProgress
from bot.storage import JobRecord, JobState
from cogs._jobs import is_age_restricted
from cogs.imagine._launch import IMAGE
from cogs.imagine._views import VIEWS

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


@dataclass
class FakeTarget:
    """A :class:`MessageTarget` over a :class:`FakeMessage`. From edit number ``moves_at`` on, it
    is a new message (id 21): what a private reply does when its token runs out."""

    message: FakeMessage
    moves_at: int | None = None
    fresh: list[bool] = field(default_factory=list)
    channel_id: int = 10

    @property
    def message_id(self) -> int | None:
        return 21 if self.moves_at is not None and len(self.fresh) > self.moves_at else None

    async def edit(self, build: BuildFields) -> Any:
        fresh = self.moves_at is not None and len(self.fresh) == self.moves_at
        fields = build(fresh)
        result = await self.message.edit(**fields)
        self.fresh.append(fresh)
        return result


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeJobs:
    def __init__(self) -> None:
        self.moves: list[tuple[str, int | None]] = []

    async def update(self, job_id: str, *, message_id: int | None) -> None:
        self.moves.append((job_id, message_id))


def delivery(interval_s: float = 3.0, budget: ChannelEditBudget | None = None) -> Delivery:
    progress = ProgressSettings.model_construct(edit_interval_s=interval_s, bar_width=10)
    client: Any = SimpleNamespace()
    storage: Any = SimpleNamespace(jobs=FakeJobs())
    return Delivery(
        client, storage, progress, budget=budget or ChannelEditBudget(1000, 1.0), retry_delays_s=(0.0, 0.0)
    )


def listener(
    message: FakeMessage,
    clock: FakeClock,
    interval_s: float = 3.0,
    *,
    target: FakeTarget | None = None,
    budget: ChannelEditBudget | None = None,
) -> ImagineListener:
    return ImagineListener(
        delivery(interval_s, budget),
        target or FakeTarget(message),
        params=PARAMS,
        anonymous=False,
        views=VIEWS,
        clock=clock,
    )


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
    # U and V for each image attached (censored ones too: a spoiler is still the image), then the result's.
    assert [item.custom_id for item in final["view"].children] == [
        *(f"image:{action}:{n}:{JOB.id}" for action in "uv" for n in (1, 2, 3)),
        *(f"imagine:{action}:{JOB.id}" for action in ("rerun", "seed", "edit", "details", "delete")),
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
    assert "so images #11, #12 are not attached. Details lists every seed." in message.edits[-1]["content"]


async def test_images_over_discords_bytes_per_message_are_left_out_with_a_note() -> None:
    # 6 MiB, 6 MiB, 1 MiB: the second would take the message over 10 MiB (a 413 would lose all).
    message, clock = FakeMessage(), FakeClock()
    watcher = listener(message, clock)
    sizes = (6, 6, 1)
    images = tuple(
        dataclasses.replace(image(index), data=bytes(mib * 1024 * 1024)) for index, mib in enumerate(sizes)
    )

    await watcher.on_finished(JOB, outcome(images))

    assert message.attachments == ["imagine_1_100.webp", "imagine_3_102.webp"]
    assert "so image #2 is not attached. Details lists every seed." in message.edits[-1]["content"]
    buttons = [getattr(item, "item", item).label for item in message.edits[-1]["view"].children]
    assert [label for label in buttons if label.startswith("U")] == ["U1", "U3"]


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

    assert f"Could not edit the message of job {JOB.id}: HTTP 500" in caplog.text
    assert message.attachments == ["imagine_1_100.webp"]


def test_the_listener_of_a_journalled_job_needs_readable_parameters() -> None:
    bot: Any = SimpleNamespace(delivery=delivery())

    assert isinstance(IMAGE.listener_for(bot, JOB), ImagineListener)
    # A private job (no channel message) continues in a new channel message.
    assert isinstance(IMAGE.listener_for(bot, JOB.model_copy(update={"message_id": None})), ImagineListener)
    with pytest.raises(JobAbandoned):
        IMAGE.listener_for(bot, JOB.model_copy(update={"params_json": "{}"}))


async def test_a_busy_channel_skips_progress_and_images_while_the_result_waits_its_turn() -> None:
    message, clock = FakeMessage(), FakeClock()
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)
        clock.now += delay

    budget = ChannelEditBudget(2, 10.0, clock=clock, sleep=sleep)
    watcher = listener(message, clock, interval_s=1.0, budget=budget)

    await watcher.on_progress(JOB, progress(0))
    clock.now = 1.0
    await watcher.on_progress(JOB, progress(0, processing=2))
    clock.now = 2.0
    await watcher.on_progress(JOB, progress(1))  # the channel's two edits are spent: skipped
    skipped = len(message.edits)
    await watcher.on_images(JOB, [image(0)])  # no turn free: shown with the next edit
    await watcher.on_finished(JOB, outcome((image(0), image(1))))  # waits until 10 s

    assert skipped == 2
    assert slept == [8.0]
    assert len(message.edits) == 3
    assert message.attachments == ["imagine_1_100.webp", "imagine_2_101.webp"]
    assert budget.available(10) == 0


async def test_the_last_images_go_out_with_the_result_in_one_edit() -> None:
    message, clock = FakeMessage(), FakeClock()
    watcher = listener(message, clock)
    await watcher.on_progress(JOB, progress(0))
    clock.now = 5.0
    await watcher.on_progress(JOB, dataclasses.replace(progress(PARAMS.n), state="finishing"))

    await watcher.on_images(JOB, [image(0), image(1)])  # the job is finishing: no edit of its own
    await watcher.on_finished(JOB, outcome((image(0), image(1))))

    assert len(message.edits) == 3
    assert message.edits[-1]["content"].startswith("✅ **Done**")
    assert [file.filename for file in message.edits[-1]["attachments"]] == [
        "imagine_1_100.webp",
        "imagine_2_101.webp",
    ]


async def test_the_result_is_retried_after_429s_and_5xx() -> None:
    rate_limited = [http_error(discord.HTTPException, 429, 0) for _ in range(2)]
    message = FakeMessage(failures=[*rate_limited, http_error(discord.HTTPException, 502, 0)])
    watcher = listener(message, FakeClock())
    watcher._delivery.retry_delays_s = (0.0, 0.0, 0.0)

    await watcher.on_finished(JOB, outcome((image(0),)))

    [final] = message.edits
    assert final["content"].startswith("✅ **Done**")
    assert message.attachments == ["imagine_1_100.webp"]


async def test_a_moved_message_gets_every_image_again_and_is_journalled() -> None:
    message, clock = FakeMessage(), FakeClock()
    target = FakeTarget(message, moves_at=2)
    watcher = listener(message, clock, target=target)
    await watcher.on_progress(JOB, progress(0))
    await watcher.on_images(JOB, [image(0), image(1)])

    await watcher.on_finished(JOB, outcome((image(0), image(1), image(2))))

    assert target.fresh == [False, False, True]
    final = message.edits[-1]
    # The new message starts empty: every file is uploaded again, none kept by reference.
    assert [getattr(item, "filename", None) for item in final["attachments"]] == [
        "imagine_1_100.webp",
        "imagine_2_101.webp",
        "imagine_3_102.webp",
    ]
    assert "view" in final
    assert watcher._delivery.storage.jobs.moves == [(JOB.id, 21)]


def test_age_restriction_comes_from_the_channel() -> None:
    assert is_age_restricted(SimpleNamespace(is_nsfw=lambda: True))
    assert not is_age_restricted(SimpleNamespace(is_nsfw=lambda: False))
    assert not is_age_restricted(None)  # a DM or an uncached channel
