"""Image jobs: poll ``check``, fetch ``status`` only when new images are ready, download them once.

The status endpoint allows 10 calls a minute per request, so mid-job fetches are spaced by
``status_interval_s``; images that arrive in between are picked up by a later fetch or by the
final status the client fetches anyway. A final status (or the DELETE's answer) never costs an
extra call here: it comes back from the client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from bot.clock import monotonic
from bot.horde import (
    BaseAsyncRequest,
    ImageGenerateAsyncRequest,
    ImageGenerateCheckResponse,
    ImageGenerateStatusResponse,
    ImageGeneration,
    RequestErrorResponse,
)
from bot.services.jobs import messages
from bot.services.jobs.downloads import ImageDeliverySettings, download_with_retries
from bot.services.jobs.kinds import (
    JobContext,
    RunEnd,
    error_of,
    expect,
    known_horde_id,
    params_n,
    submit_or_resume,
)
from bot.services.jobs.models import DeliveredImage
from bot.storage import JobKind

log = logging.getLogger(__name__)


class ImageJobs:
    """The image kind (/imagine): a :class:`~bot.services.jobs.JobKindHandler`."""

    kind: ClassVar[JobKind] = "image"
    request_type: ClassVar[type[ImageGenerateAsyncRequest]] = ImageGenerateAsyncRequest

    def __init__(
        self,
        settings: ImageDeliverySettings = ImageDeliverySettings(),  # noqa: B008 - frozen
        *,
        clock: Callable[[], float] = monotonic,
    ) -> None:
        self._settings = settings
        self._clock = clock

    def journal_body(self, request: BaseAsyncRequest) -> Any:
        return request.to_wire().json

    def expected_results(self, request_body: Mapping[str, Any]) -> int:
        return params_n(request_body)

    def submit(self, ctx: JobContext, request: BaseAsyncRequest) -> ImageRun:
        return ImageRun(ctx, self._settings, self._clock, expect(request, ImageGenerateAsyncRequest))

    def resume(self, ctx: JobContext) -> ImageRun:
        return ImageRun(ctx, self._settings, self._clock, None)


class ImageRun:
    """One image job: submits ``request`` (or, without one, follows ``ctx.horde_id`` again)."""

    def __init__(
        self,
        ctx: JobContext,
        settings: ImageDeliverySettings,
        clock: Callable[[], float],
        request: ImageGenerateAsyncRequest | None,
    ) -> None:
        self._ctx = ctx
        self._settings = settings
        self._clock = clock
        self._request = request
        self._seen: set[str] = set()
        self._images: list[DeliveredImage] = []
        self._lost: list[ImageGeneration] = []
        self._faulted = False
        self._fetched_for = 0
        self._last_fetch: float | None = None

    @property
    def images(self) -> Sequence[DeliveredImage]:
        return tuple(self._images)

    @property
    def received(self) -> int:
        return len(self._seen)

    @property
    def lost(self) -> int:
        return len(self._lost)

    def notes(self) -> tuple[str, ...]:
        return (messages.lost_images(len(self._lost)),) if self._lost else ()

    def result_json(self) -> dict[str, Any]:
        return {
            "n": self._ctx.n,
            "images": [image.summary() for image in self._images],
            "lost": [_lost_summary(generation) for generation in self._lost],
            "faulted": self._faulted,
        }

    async def run(self) -> RunEnd:
        ctx = self._ctx
        status = await submit_or_resume(
            ctx,
            self._request,
            submit=ctx.horde.image_generate_request,
            resume=ctx.horde.poll_image_request,
            on_progress=self._on_check,
        )
        self._faulted = status.faulted
        await self._collect(status)
        return RunEnd(complete=len(status.generations) >= ctx.n, faulted=status.faulted, kudos=status.kudos)

    async def recover(self) -> Sequence[DeliveredImage]:
        status = await self._ctx.horde.horde_client_session.get_generate_status(known_horde_id(self._ctx))
        if isinstance(status, RequestErrorResponse):
            raise error_of(status)
        await self._collect(status, deliver=False)
        return self.images

    async def _on_check(self, check: ImageGenerateCheckResponse) -> None:
        await self._ctx.progress(check)
        # The client fetches the final status itself; only images finished before it are ours to get.
        if check.is_final or check.finished <= self._fetched_for:
            return
        now = self._clock()
        if self._last_fetch is not None and now - self._last_fetch < self._settings.status_interval_s:
            return
        self._last_fetch, self._fetched_for = now, check.finished
        gen_id = known_horde_id(self._ctx)
        status = await self._ctx.horde.horde_client_session.get_generate_status(gen_id)
        if isinstance(status, RequestErrorResponse):
            # Not fatal: the final status brings every image anyway.
            log.warning(
                "Job %s: fetching the status of %s failed: %s", self._ctx.job_id, gen_id, status.message
            )
            return
        await self._collect(status)

    async def _collect(self, status: ImageGenerateStatusResponse, *, deliver: bool = True) -> None:
        new = [generation for generation in status.generations if generation.id_ not in self._seen]
        if not new:
            return
        self._seen.update(generation.id_ for generation in new)
        async with asyncio.TaskGroup() as group:
            downloads = [group.create_task(self._download(generation)) for generation in new]
        delivered: list[DeliveredImage] = []
        for generation, download in zip(new, downloads, strict=True):
            data = download.result()
            if data is None:
                self._lost.append(generation)
                continue
            image = _delivered(generation, len(self._images), data)
            self._images.append(image)
            delivered.append(image)
        if delivered and deliver:
            await self._ctx.deliver_images(delivered)

    async def _download(self, generation: ImageGeneration) -> bytes | None:
        return await download_with_retries(self._ctx, generation, self._settings, f"image {generation.id_}")


def _censored(generation: ImageGeneration) -> bool:
    return generation.censored or generation.is_censored


def _delivered(generation: ImageGeneration, index: int, data: bytes) -> DeliveredImage:
    return DeliveredImage(
        generation_id=generation.id_,
        index=index,
        seed=generation.seed,
        model=generation.model,
        worker_name=generation.worker_name,
        worker_id=generation.worker_id,
        censored=_censored(generation),
        data=data,
    )


def _lost_summary(generation: ImageGeneration) -> dict[str, Any]:
    return {
        "id": generation.id_,
        "seed": generation.seed,
        "model": generation.model,
        "worker_name": generation.worker_name,
        "worker_id": generation.worker_id,
        "censored": _censored(generation),
    }
