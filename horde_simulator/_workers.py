"""The simulated workers: a scheduler that runs at most ``worker_threads`` pops per kind at once.

A pop of images or texts is a batch of up to ``worker_batch`` jobs of one request (see
``State.pop_jobs``): they are made together and delivered together when the pop is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any, Literal

from horde_simulator import _content, _forms, _images
from horde_simulator import _kudos as kudos
from horde_simulator._records import Form, Generation, GenRequest, Interrogation, Job
from horde_simulator._schema import KNOWN_POST_PROCESSORS
from horde_simulator._state import State

log = logging.getLogger(__name__)
Lane = Literal["image", "text", "interrogation"]


class WorkerPool:
    def __init__(self, state: State, tick: float) -> None:
        self._state = state
        self._tick = tick
        self._wake = asyncio.Event()
        self._running: dict[Lane, set[asyncio.Task[None]]] = {
            "image": set(),
            "text": set(),
            "interrogation": set(),
        }
        self._threads_busy: dict[Lane, set[int]] = {"image": set(), "text": set(), "interrogation": set()}
        self._scheduler: asyncio.Task[None] | None = None
        self._stopping = False
        self._loop = asyncio.get_running_loop()
        state.on_change(self.poke)

    def start(self) -> None:
        self._scheduler = asyncio.create_task(self._schedule(), name="horde-sim-scheduler")

    async def stop(self) -> None:
        self._stopping = True
        tasks = [t for lane in self._running.values() for t in lane]
        if self._scheduler is not None:
            tasks.append(self._scheduler)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def poke(self) -> None:
        """Wake the scheduler; safe from any thread, and a no-op once the loop is gone."""
        if not self._stopping and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    async def _schedule(self) -> None:
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that races
        # with the event being set, and the scheduler would then never stop.
        while not self._stopping:
            self._start_jobs()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._tick):
                    await self._wake.wait()
            self._wake.clear()

    def _start_jobs(self) -> None:
        threads = self._state.knobs.worker_threads
        for lane in ("image", "text"):
            while len(self._running[lane]) < threads:
                thread = min(set(range(threads)) - self._threads_busy[lane], default=0)
                jobs = self._state.pop_jobs(lane, thread)
                if not jobs:
                    break
                self._spawn(lane, self._run_batch(jobs), thread)
        while len(self._running["interrogation"]) < threads:
            popped = _forms.pop_form(self._state)
            if popped is None:
                break
            self._spawn("interrogation", self._run_form(*popped[:2]))

    def _spawn(self, lane: Lane, work: Coroutine[Any, Any, None], thread: int | None = None) -> None:
        task = asyncio.create_task(work)
        self._running[lane].add(task)
        if thread is not None:
            self._threads_busy[lane].add(thread)

        def _done(finished: asyncio.Task[None]) -> None:
            self._running[lane].discard(finished)
            if thread is not None:
                self._threads_busy[lane].discard(thread)
            if not finished.cancelled() and finished.exception() is not None:
                log.error("simulated worker crashed", exc_info=finished.exception())
            self.poke()

        task.add_done_callback(_done)

    async def _until(self, due: float) -> None:
        # Polled, not awaited on an event: the clock may be a ManualClock that nothing signals.
        while (remaining := due - self._state.now()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(min(remaining, self._tick))

    async def _run_batch(self, jobs: list[Job]) -> None:
        results = await asyncio.gather(*(self._make(job) for job in jobs))
        if jobs:
            await self._until(jobs[0].due)
        for job, result in zip(jobs, results, strict=True):
            self._deliver(job, *result)

    async def _make(self, job: Job) -> tuple[bytes | str | BaseException, str | None]:
        censorship = censorship_for(self._state, job.request)
        max_side = self._state.knobs.max_image_side
        try:
            made = await asyncio.to_thread(_make_output, job.request, job.seed, censorship, max_side)
        except Exception as exc:  # handed to _deliver, which faults the job
            return exc, censorship
        return made, censorship

    def _deliver(self, job: Job, result: bytes | str | BaseException, censorship: str | None) -> None:
        request = job.request
        if isinstance(result, BaseException):
            log.error("a simulated worker failed to make %s", job.id, exc_info=result)
            self._state.fault_job(job)
            return
        if self._state.should_fault_job():
            self._state.fault_job(job)
            return
        reward = request.kudos_per_generation
        if isinstance(result, str):
            max_length = int(request.params.get("max_length", 80))
            reward = kudos.text_generation_kudos(result, request.prompt, max_length, job.model)
        generation = Generation(
            id=job.id,
            worker=job.worker,
            model=job.model,
            seed=job.seed,
            kudos=reward,
            image=result if isinstance(result, bytes) else None,
            text=result if isinstance(result, str) else None,
            censorship=censorship,
        )
        if self._state.finish_job(job, generation) and generation.image is not None:
            self._state.store_image(generation.id, generation.image)

    async def _run_form(self, interrogation: Interrogation, form: Form) -> None:
        max_side = self._state.knobs.max_image_side
        made = asyncio.create_task(asyncio.to_thread(_make_form, interrogation.image, form.name, max_side))
        try:
            await self._until(form.due if form.due is not None else self._state.now())
            result, picture = await made
        except Exception:
            log.exception("a simulated alchemist failed on form %s", form.id)
            _forms.fault_form(self._state, interrogation, form)
            return
        finally:
            made.cancel()
        if self._state.should_fault_job():
            _forms.fault_form(self._state, interrogation, form)
            return
        if _forms.finish_form(self._state, interrogation, form, result) and picture is not None:
            self._state.store_image(form.id, picture)


def _make_output(request: GenRequest, seed: int, censorship: str | None, max_side: int) -> bytes | str:
    if request.kind == "image":
        return _make_image(request.prompt, request.params, seed, censorship, max_side)
    return _make_text(request.prompt, request.params, seed)


def _make_image(
    prompt: str, params: dict[str, object], seed: int, censorship: str | None, max_side: int
) -> bytes:
    factor = max(
        (_content.upscale_factor(pp) for pp in _as_strings(params.get("post_processing"))), default=1
    )
    width, height = int(str(params["width"])) * factor, int(str(params["height"])) * factor
    if censorship is not None:
        return _images.render_censored(width, height, max_side)
    positive = prompt.split("###", 1)[0].strip()
    return _images.render_generation(positive, seed, width, height, max_side)


def _make_text(prompt: str, params: dict[str, object], seed: int) -> str:
    max_length = int(str(params.get("max_length", 80)))
    return _content.continue_text(prompt, seed, max_length, _as_strings(params.get("stop_sequence")))


def _make_form(source: bytes, form: str, max_side: int) -> tuple[dict[str, object], bytes | None]:
    image = _images.decode(source)
    result = _content.alchemy_result(form, image, KNOWN_POST_PROCESSORS)
    if form not in KNOWN_POST_PROCESSORS:
        return result, None
    return result, _images.upscale(source, _content.upscale_factor(form), max_side)


def _as_strings(value: object) -> list[str]:
    return [str(item) for item in value] if isinstance(value, list) else []


def censorship_for(state: State, request: GenRequest) -> str | None:
    """``"csam"`` whatever the flags; ``"nsfw"`` only when the request is SFW and asks to censor."""
    prompt = request.prompt.lower()
    with state.lock:
        if any(word and word.lower() in prompt for word in state.knobs.csam_words):
            return "csam"
        if request.nsfw or not request.censor_nsfw:
            return None
        if any(word and word.lower() in prompt for word in state.knobs.censor_words):
            return "nsfw"
        chance = state.knobs.censor_probability
        return "nsfw" if chance > 0 and state.rng.random() < chance else None
