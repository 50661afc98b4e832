"""Alchemy jobs: interrogation (caption, tags, NSFW check) and post-processing of one image.

The alchemy status has no progress counters of its own, so each poll is turned into the common
progress shape (finished / processing / waiting forms). Text results (captions, tags, the NSFW
verdict) are journalled in ``result_json``; post-processed images are downloaded from their
presigned URLs as soon as their form is done and handed to the listener like generated images.
The URLs themselves are never journalled: a presigned URL is a credential.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final

from bot.horde import (
    AlchemyAsyncRequest,
    AlchemyFormStatus,
    AlchemyStatusResponse,
    BaseAsyncRequest,
    BaseGenerationProgressResponse,
    ImageGeneration,
    RequestErrorResponse,
)
from bot.horde.consts import GENERATION_STATE, KNOWN_FACEFIXERS, KNOWN_MISC_POST_PROCESSORS, KNOWN_UPSCALERS
from bot.services.jobs import messages
from bot.services.jobs.downloads import ImageDeliverySettings, download_with_retries
from bot.services.jobs.kinds import JobContext, RunEnd, error_of, expect, known_horde_id, submit_or_resume
from bot.services.jobs.models import DeliveredImage
from bot.storage import JobKind

IMAGE_FORMS: Final[frozenset[str]] = frozenset(
    [*KNOWN_UPSCALERS, *KNOWN_FACEFIXERS, *KNOWN_MISC_POST_PROCESSORS]
)
"""The forms whose result is an image (a URL), not a value."""
SOURCE_IMAGE_JOURNAL: Final = "<omitted>"


class AlchemyJobs:
    """The alchemy kind (/alchemy): a :class:`~bot.services.jobs.JobKindHandler`."""

    kind: ClassVar[JobKind] = "alchemy"
    request_type: ClassVar[type[AlchemyAsyncRequest]] = AlchemyAsyncRequest

    def __init__(self, delivery: ImageDeliverySettings = ImageDeliverySettings()) -> None:  # noqa: B008 - frozen
        self._delivery = delivery

    def expected_results(self, request_body: Mapping[str, Any]) -> int:
        forms = request_body.get("forms")
        if not isinstance(forms, list):
            return 1
        names = {form.get("name") for form in forms if isinstance(form, Mapping)}
        return max(1, len(names))

    def journal_body(self, request: BaseAsyncRequest) -> dict[str, Any]:
        """The wire body without the source image, which may be megabytes of base64."""
        body = dict(expect(request, AlchemyAsyncRequest).to_wire().json or {})
        body["source_image"] = SOURCE_IMAGE_JOURNAL
        return body

    def submit(self, ctx: JobContext, request: BaseAsyncRequest) -> AlchemyRun:
        return AlchemyRun(ctx, self._delivery, expect(request, AlchemyAsyncRequest))

    def resume(self, ctx: JobContext) -> AlchemyRun:
        return AlchemyRun(ctx, self._delivery, None)


class AlchemyRun:
    def __init__(
        self, ctx: JobContext, delivery: ImageDeliverySettings, request: AlchemyAsyncRequest | None
    ) -> None:
        self._ctx = ctx
        self._delivery = delivery
        self._request = request
        self._forms: tuple[AlchemyFormStatus, ...] = ()
        self._seen: set[str] = set()
        self._images: list[DeliveredImage] = []
        self._lost: list[str] = []
        self._faulted = False

    @property
    def images(self) -> Sequence[DeliveredImage]:
        return tuple(self._images)

    @property
    def received(self) -> int:
        return sum(1 for form in self._forms if form.done)

    @property
    def lost(self) -> int:
        return len(self._lost)

    def notes(self) -> tuple[str, ...]:
        return (messages.lost_images(len(self._lost)),) if self._lost else ()

    def result_json(self) -> dict[str, Any]:
        return {
            "n": self._ctx.n,
            "forms": [_form_summary(form) for form in self._forms],
            "images": [image.summary() for image in self._images],
            "lost": list(self._lost),
            "faulted": self._faulted,
        }

    async def run(self) -> RunEnd:
        ctx = self._ctx
        # A resumed job's status needs no key of its own: the session's default does.
        status = await submit_or_resume(
            ctx,
            self._request,
            submit=ctx.horde.alchemy_request,
            resume=ctx.horde.poll_alchemy_request,
            on_progress=self._on_status,
        )
        self._faulted = status.is_faulted
        await self._collect(status)
        # Alchemy is free: there is no kudos figure to report.
        return RunEnd(complete=status.is_job_complete(ctx.n), faulted=status.is_faulted, kudos=0.0)

    async def recover(self) -> Sequence[DeliveredImage]:
        status = await self._ctx.horde.horde_client_session.get_alchemy_status(known_horde_id(self._ctx))
        if isinstance(status, RequestErrorResponse):
            raise error_of(status)
        await self._collect(status, deliver=False)
        return self.images

    async def _on_status(self, status: AlchemyStatusResponse) -> None:
        await self._ctx.progress(progress_of(status, self._ctx.n))
        await self._collect(status)

    async def _collect(self, status: AlchemyStatusResponse, *, deliver: bool = True) -> None:
        if len(status.forms) >= len(self._forms):
            self._forms = tuple(status.forms)
        delivered: list[DeliveredImage] = []
        for form in status.forms:
            name = str(form.form)
            url = image_url(form)
            if url is None or name in self._seen:
                continue
            self._seen.add(name)
            data = await self._download(name, url)
            if data is None:
                self._lost.append(name)
                continue
            image = DeliveredImage(
                generation_id=f"{self._ctx.horde_id}:{name}",
                index=len(self._images),
                seed="",
                model=name,
                worker_name=None,
                worker_id=None,
                censored=False,
                data=data,
            )
            self._images.append(image)
            delivered.append(image)
        if delivered and deliver:
            await self._ctx.deliver_images(delivered)

    async def _download(self, form: str, url: str) -> bytes | None:
        # The client downloads generations; a post-processed image is one in all but name.
        generation = ImageGeneration.model_validate({"id": form, "img": url, "seed": "0"})
        return await download_with_retries(self._ctx, generation, self._delivery, f"the {form} result")


def progress_of(status: AlchemyStatusResponse, n: int) -> BaseGenerationProgressResponse:
    """The alchemy status in the shape every job reports its progress in."""
    states = [form.state for form in status.forms]
    return BaseGenerationProgressResponse(
        finished=states.count(GENERATION_STATE.done),
        processing=states.count(GENERATION_STATE.processing),
        waiting=states.count(GENERATION_STATE.waiting) + max(0, n - len(states)),
        restarted=0,
        done=status.is_final,
        faulted=status.is_faulted,
        wait_time=0,
        queue_position=0,
        kudos=0.0,
    )


def image_url(form: AlchemyFormStatus) -> str | None:
    """Where a finished post-processing form's image is (an R2 link), else ``None``."""
    name = str(form.form)
    if not form.done or name not in IMAGE_FORMS or form.result is None:
        return None
    url = form.result.get(name)
    return url if isinstance(url, str) and url.startswith(("http://", "https://")) else None


def _form_summary(form: AlchemyFormStatus) -> dict[str, Any]:
    name = str(form.form)
    value = None if name in IMAGE_FORMS or form.result is None else form.result.get(name)
    return {"form": name, "state": str(form.state), "result": value}
