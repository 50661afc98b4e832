"""Text jobs: the text status is both the progress poll and the result (there is no ``check``).

The client polls the status within its 60-a-minute limit and returns the final one (or the
DELETE's answer with the partial results); the generated texts are journalled in ``result_json``,
so a result can be shown and continued after a restart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from bot.horde import BaseAsyncRequest, TextGenerateAsyncRequest, TextGenerateStatusResponse, TextGeneration
from bot.services.jobs.kinds import JobContext, RunEnd, expect, params_n, submit_or_resume
from bot.services.jobs.models import DeliveredImage
from bot.storage import JobKind


class TextJobs:
    """The text kind (/write): a :class:`~bot.services.jobs.JobKindHandler`."""

    kind: ClassVar[JobKind] = "text"
    request_type: ClassVar[type[TextGenerateAsyncRequest]] = TextGenerateAsyncRequest

    def journal_body(self, request: BaseAsyncRequest) -> Any:
        return request.to_wire().json

    def expected_results(self, request_body: Mapping[str, Any]) -> int:
        return params_n(request_body)

    def submit(self, ctx: JobContext, request: BaseAsyncRequest) -> TextRun:
        return TextRun(ctx, expect(request, TextGenerateAsyncRequest))

    def resume(self, ctx: JobContext) -> TextRun:
        return TextRun(ctx, None)


class TextRun:
    def __init__(self, ctx: JobContext, request: TextGenerateAsyncRequest | None) -> None:
        self._ctx = ctx
        self._request = request
        self._generations: tuple[TextGeneration, ...] = ()
        self._faulted = False

    @property
    def images(self) -> Sequence[DeliveredImage]:
        return ()

    @property
    def received(self) -> int:
        return len(self._generations)

    @property
    def lost(self) -> int:
        return 0

    def notes(self) -> tuple[str, ...]:
        return ()

    async def recover(self) -> Sequence[DeliveredImage]:
        return ()  # the texts are in the journal

    def result_json(self) -> dict[str, Any]:
        return {
            "n": self._ctx.n,
            "texts": [_summary(generation) for generation in self._generations],
            "faulted": self._faulted,
        }

    async def run(self) -> RunEnd:
        ctx = self._ctx
        status = await submit_or_resume(
            ctx,
            self._request,
            submit=ctx.horde.text_generate_request,
            resume=ctx.horde.poll_text_request,
            on_progress=self._on_status,
        )
        self._keep(status)
        self._faulted = status.faulted
        return RunEnd(complete=len(status.generations) >= ctx.n, faulted=status.faulted, kudos=status.kudos)

    async def _on_status(self, status: TextGenerateStatusResponse) -> None:
        # Kept on every poll, so a job that fails later still journals what had arrived.
        self._keep(status)
        await self._ctx.progress(status)

    def _keep(self, status: TextGenerateStatusResponse) -> None:
        if len(status.generations) >= len(self._generations):
            self._generations = tuple(status.generations)


def _summary(generation: TextGeneration) -> dict[str, Any]:
    return {
        "id": generation.id_,
        "text": generation.text,
        "seed": generation.seed,
        "model": generation.model,
        "worker_name": generation.worker_name,
        "worker_id": generation.worker_id,
        "censored": generation.is_censored,
    }
