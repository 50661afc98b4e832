from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import io
import itertools
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import PIL.Image
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.horde import (
    ANON_API_KEY,
    KNOWN_ALCHEMY_TYPES,
    MODEL_TYPE,
    WORKER_TYPE,
    AIHordeAPIAsyncClientSession,
    AIHordeAPIAsyncManualClient,
    AIHordeAPIAsyncSimpleClient,
    AIHordeAPIClientSession,
    AIHordeAPIManualClient,
    AIHordeAPISimpleClient,
    AIHordeImageDownloadError,
    AIHordeRequestError,
    AIHordeRequestExpiredError,
    AlchemyAsyncRequest,
    AlchemyAsyncRequestFormItem,
    AlchemyStatusResponse,
    AllStylesImageResponse,
    AllStylesTextResponse,
    ImageGenerateAsyncRequest,
    ImageGenerateCheckResponse,
    ImageGenerateStatusResponse,
    ImageGeneration,
    ImageGenerationInputPayload,
    ModelGenerationInputKobold,
    PollPolicy,
    RequestErrorResponse,
    RetryPolicy,
    TextGenerateAsyncRequest,
    TextGenerateStatusResponse,
    download_image_from_generation,
)
from bot.horde._clients.polling import PollEnd
from bot.horde._clients.scheduler import poll_until
from horde_simulator import Fault, Knobs, Simulator, SimulatorConfig, run_simulator

API_KEY = "abcdefghijklmnopqrstuv"
# Checks as fast as the limits allow (the status fetched in place of a check, and the first
# poll's wait, are tests/horde/test_polling_policy.py's).
FAST_POLL = PollPolicy(
    min_interval=0.01,
    max_interval=0.05,
    processing_max_interval=0.02,
    unknown_wait_interval=0.01,
    final_status_polls=0,
)


def webp_bytes(color: str = "red") -> bytes:
    out = io.BytesIO()
    PIL.Image.new("RGB", (8, 8), color).save(out, "WEBP")
    return out.getvalue()


WEBP = webp_bytes()


# -- a fake Horde -------------------------------------------------------------------------


@dataclass
class Job:
    kind: str
    n: int
    apikey: str | None
    polls_to_finish: int | None
    forms: list[str] = field(default_factory=list)
    polls: int = 0
    deleted: bool = False
    faulted: bool = False

    @property
    def done(self) -> bool:
        return self.faulted or (self.polls_to_finish is not None and self.polls >= self.polls_to_finish)

    @property
    def finished(self) -> int:
        """One more result per poll; all of them once done (fewer when faulted)."""
        if self.faulted:
            return min(self.polls, self.n - 1)
        return self.n if self.done else min(self.polls, self.n - 1)


@dataclass
class FakeHorde:
    polls_to_finish: int | None = 2
    wait_time: int = 0
    queue_position: int = 1
    processing: int = 0
    fault: bool = False
    img_as_url: bool = False
    submit_error: tuple[int, dict[str, Any]] | None = None
    delete_delay: float = 0.0
    submit_delay: float = 0.0
    jobs: dict[str, Job] = field(default_factory=dict)
    hits: Counter[tuple[str, str]] = field(default_factory=Counter)
    log: list[tuple[float, str, str, dict[str, str]]] = field(default_factory=list)
    base_url: str = ""

    def count(self, method: str, path: str) -> int:
        return self.hits[(method, path)]

    def times(self, method: str, path: str) -> list[float]:
        return [at for at, m, p, _ in self.log if (m, p) == (method, path)]

    def app(self) -> web.Application:
        @web.middleware
        async def record(request: web.Request, handler: Any) -> web.StreamResponse:
            path = request.path.removeprefix("/api/")
            self.hits[(request.method, path)] += 1
            self.log.append((time.monotonic(), request.method, path, dict(request.headers)))
            response: web.StreamResponse = await handler(request)
            return response

        app = web.Application(middlewares=[record])
        app.router.add_post("/api/v2/generate/async", self._submit_image)
        app.router.add_get("/api/v2/generate/check/{id}", self._check)
        app.router.add_route("*", "/api/v2/generate/status/{id}", self._image_status)
        app.router.add_post("/api/v2/generate/text/async", self._submit_text)
        app.router.add_route("*", "/api/v2/generate/text/status/{id}", self._text_status)
        app.router.add_post("/api/v2/interrogate/async", self._submit_alchemy)
        app.router.add_route("*", "/api/v2/interrogate/status/{id}", self._alchemy_status)
        app.router.add_get("/img/{name}", self._image_file)
        return app

    def _new_job(self, kind: str, request: web.Request, n: int, forms: list[str] | None = None) -> str:
        gen_id = str(uuid.uuid4())
        self.jobs[gen_id] = Job(
            kind, n, request.headers.get("apikey"), self.polls_to_finish, forms or [], faulted=False
        )
        return gen_id

    def _job(self, request: web.Request, kind: str) -> Job:
        job = self.jobs.get(request.match_info["id"])
        if job is None or job.kind != kind:
            raise web.HTTPNotFound(
                text='{"message": "Request not found.", "rc": "RequestNotFound"}',
                content_type="application/json",
            )
        return job

    def _progress(self, job: Job) -> dict[str, Any]:
        if self.fault and job.polls >= 1:
            job.faulted = True
        done = job.done or job.deleted
        return {
            "finished": job.finished,
            "processing": 0 if done else self.processing,
            "restarted": 0,
            "waiting": 0 if done else job.n - job.finished,
            "done": done,
            "faulted": job.faulted,
            "wait_time": 0 if done else self.wait_time,
            "queue_position": 0 if done else self.queue_position,
            "kudos": 10.0,
            "is_possible": True,
        }

    async def _submit_image(self, request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(self.submit_delay)
        if self.submit_error is not None:
            return web.json_response(self.submit_error[1], status=self.submit_error[0])
        if body.get("dry_run"):
            return web.json_response({"kudos": 12.0})
        gen_id = self._new_job("image", request, body.get("params", {}).get("n", 1))
        return web.json_response({"id": gen_id, "kudos": 10.0}, status=202)

    async def _check(self, request: web.Request) -> web.Response:
        job = self._job(request, "image")
        job.polls += 1
        return web.json_response(self._progress(job))

    async def _image_status(self, request: web.Request) -> web.Response:
        job = self._job(request, "image")
        if request.method == "DELETE":
            await asyncio.sleep(self.delete_delay)
            job.deleted = True
        progress = self._progress(job)
        gen_id = request.match_info["id"]
        progress["generations"] = [self._image(gen_id, i) for i in range(job.finished)]
        return web.json_response(progress)

    def _image(self, gen_id: str, index: int) -> dict[str, Any]:
        img = f"{self.base_url.removesuffix('api/')}img/{gen_id}-{index}.webp?Signature=secret"
        return {
            "img": img if self.img_as_url else base64.b64encode(WEBP).decode(),
            "seed": str(index),
            "id": f"{gen_id}-{index}",
            "censored": False,
            "gen_metadata": [],
            "worker_id": "w",
            "worker_name": "Fake",
            "model": "Deliberate",
            "state": "ok",
        }

    async def _image_file(self, request: web.Request) -> web.Response:
        return web.Response(body=WEBP, content_type="image/webp")

    async def _submit_text(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("dry_run"):
            return web.json_response({"kudos": 3.0})
        gen_id = self._new_job("text", request, body.get("params", {}).get("n", 1))
        return web.json_response({"id": gen_id, "kudos": 3.0}, status=202)

    async def _text_status(self, request: web.Request) -> web.Response:
        job = self._job(request, "text")
        if request.method == "DELETE":
            job.deleted = True
        else:
            job.polls += 1
        progress = self._progress(job)
        progress["done"] = job.done  # text DELETE leaves done false
        progress["generations"] = [
            {"text": f"text {i}", "seed": 0, "state": "ok", "gen_metadata": []} for i in range(job.finished)
        ]
        return web.json_response(progress)

    async def _submit_alchemy(self, request: web.Request) -> web.Response:
        body = await request.json()
        forms = [form["name"] for form in body["forms"]]
        gen_id = self._new_job("alchemy", request, len(forms), forms)
        return web.json_response({"id": gen_id}, status=202)

    async def _alchemy_status(self, request: web.Request) -> web.Response:
        job = self._job(request, "alchemy")
        if request.method == "DELETE":
            job.deleted = True
        else:
            job.polls += 1
        forms = []
        for index, name in enumerate(job.forms):
            if job.done or index < job.finished:
                forms.append({"form": name, "state": "done", "result": {name: "a red square"}})
            else:
                forms.append({"form": name, "state": "cancelled" if job.deleted else "processing"})
        if job.done:
            state = "done"
        elif job.deleted:
            state = "partial"
        else:
            state = "processing"
        return web.json_response({"state": state, "forms": forms})


@contextlib.asynccontextmanager
async def running(horde: FakeHorde) -> AsyncIterator[FakeHorde]:
    server = TestServer(horde.app(), host="127.0.0.1")
    await server.start_server()
    horde.base_url = str(server.make_url("/api/"))
    try:
        yield horde
    finally:
        await server.close()


@contextlib.contextmanager
def running_in_thread(horde: FakeHorde) -> Iterator[FakeHorde]:
    loop = asyncio.new_event_loop()
    started = threading.Event()
    runner = web.AppRunner(horde.app())

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        port = runner.addresses[0][1]
        horde.base_url = f"http://127.0.0.1:{port}/api/"
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(5)
    try:
        yield horde
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def session_for(horde: FakeHorde, **kwargs: Any) -> AIHordeAPIAsyncClientSession:
    kwargs.setdefault("retry", RetryPolicy(max_attempts=2, base_delay=0.01))
    kwargs.setdefault("rate_limits", None)
    return AIHordeAPIAsyncClientSession(base_url=horde.base_url, **kwargs)


@contextlib.asynccontextmanager
async def simple_for(horde: FakeHorde, **kwargs: Any) -> AsyncIterator[AIHordeAPIAsyncSimpleClient]:
    async with session_for(horde) as session:
        yield AIHordeAPIAsyncSimpleClient(session, poll_policy=FAST_POLL, **kwargs)


def image_request(n: int = 1, **kwargs: Any) -> ImageGenerateAsyncRequest:
    return ImageGenerateAsyncRequest(
        prompt="a cat", models=["Deliberate"], params=ImageGenerationInputPayload(n=n), **kwargs
    )


# -- the polling policy -------------------------------------------------------------------


class TestPollPolicy:
    policy = PollPolicy(min_interval=1.0, max_interval=15.0, wait_fraction=0.5, processing_max_interval=3.0)

    def test_follows_the_reported_wait(self) -> None:
        assert self.policy.next_delay(10) == 5.0
        assert self.policy.next_delay(8, queue_position=4, processing=0) == 4.0

    def test_is_clamped(self) -> None:
        assert self.policy.next_delay(0) == 1.0
        assert self.policy.next_delay(1) == 1.0
        assert self.policy.next_delay(-5) == 1.0
        assert self.policy.next_delay(600) == 15.0

    def test_is_quicker_once_every_job_is_with_a_worker(self) -> None:
        assert self.policy.next_delay(20, queue_position=0, processing=1) == 3.0
        assert self.policy.next_delay(20, queue_position=0, processing=0) == 10.0
        # Still partly queued, with no measured drain rate yet: soon enough to measure one.
        assert self.policy.next_delay(20, queue_position=2, processing=1) == self.policy.probe_interval

    def test_without_an_estimate(self) -> None:
        assert PollPolicy(unknown_wait_interval=2.0).next_delay(None) == 2.0
        assert PollPolicy().next_delay(None) == 1.0

    def test_a_small_wait_is_noticed_within_two_seconds(self) -> None:
        assert PollPolicy().next_delay(2) <= 2.0
        assert PollPolicy().next_delay(0, queue_position=0, processing=1) <= 2.0

    def test_rejects_nonsense(self) -> None:
        with pytest.raises(ValueError, match="min_interval"):
            PollPolicy(min_interval=2.0, max_interval=1.0)
        with pytest.raises(ValueError, match="min_interval"):
            PollPolicy(min_interval=0.0)


class TestPollUntil:
    async def test_stops_at_the_final_state_and_reports_every_poll(self) -> None:
        states = iter([1, 2, 3, 4])
        seen: list[int] = []

        async def progress(value: int) -> None:
            seen.append(value)

        async def fetch() -> int:
            return next(states)

        outcome = await poll_until(
            fetch,
            is_final=lambda v: v == 3,
            next_delay=lambda _: 0.0,
            time_limit=5,
            progress_callback=progress,
        )
        assert (outcome.end, outcome.last) == (PollEnd.FINAL, 3)
        assert seen == [1, 2, 3]

    async def test_times_out_after_one_last_poll(self) -> None:
        fetched: list[float] = []

        async def fetch() -> int:
            fetched.append(time.monotonic())
            return 0

        started = time.monotonic()
        outcome = await poll_until(fetch, is_final=lambda _: False, next_delay=lambda _: 0.1, time_limit=0.25)
        assert outcome.end is PollEnd.TIMED_OUT
        assert len(fetched) == 4  # at 0, 0.1, 0.2 and the deadline
        assert fetched[-1] - started == pytest.approx(0.25, abs=0.05)

    async def test_a_set_event_stops_before_the_next_fetch(self) -> None:
        event = asyncio.Event()
        event.set()

        async def fetch() -> int:
            raise AssertionError("must not poll")

        outcome = await poll_until(
            fetch, is_final=lambda _: False, next_delay=lambda _: 1, time_limit=5, cancel_event=event
        )
        assert outcome == type(outcome)(PollEnd.CANCELLED, None)

    async def test_setting_the_event_wakes_the_pause(self) -> None:
        event = asyncio.Event()

        async def fetch() -> int:
            asyncio.get_running_loop().call_later(0.05, event.set)
            return 7

        started = time.monotonic()
        outcome = await poll_until(
            fetch, is_final=lambda _: False, next_delay=lambda _: 10, time_limit=60, cancel_event=event
        )
        assert (outcome.end, outcome.last) == (PollEnd.CANCELLED, 7)
        assert time.monotonic() - started < 1


# -- manual client and session -------------------------------------------------------------


async def test_manual_client_follow_ups_hit_the_right_endpoints() -> None:
    horde = FakeHorde(polls_to_finish=1)
    async with running(horde), AIHordeAPIAsyncManualClient(base_url=horde.base_url) as client:
        submitted = await client.submit_request(
            image_request(), ImageGenerateAsyncRequest.get_default_success_response_type()
        )
        assert not isinstance(submitted, RequestErrorResponse)
        check = await client.get_generate_check(submitted.id_)
        status = await client.get_generate_status(submitted.id_)
        deleted = await client.delete_generate(submitted.id_)
        missing = await client.get_generate_check("nope")
    assert isinstance(check, ImageGenerateCheckResponse)
    assert check.done
    assert isinstance(status, ImageGenerateStatusResponse)
    assert len(status.generations) == 1
    assert isinstance(deleted, ImageGenerateStatusResponse)
    assert isinstance(missing, RequestErrorResponse)
    assert missing.http_status == 404
    gen = submitted.id_
    assert [
        horde.count("GET", f"v2/generate/check/{gen}"),
        horde.count("DELETE", f"v2/generate/status/{gen}"),
    ] == [1, 1]


async def test_alchemy_status_authenticates_with_the_given_key() -> None:
    async with running(FakeHorde()) as horde, AIHordeAPIAsyncManualClient(base_url=horde.base_url) as client:
        gen_id = str(uuid.uuid4())
        horde.jobs[gen_id] = Job("alchemy", 1, API_KEY, 1, ["caption"])
        status = await client.get_alchemy_status(gen_id, apikey=API_KEY)
        await client.delete_alchemy(gen_id)
    assert isinstance(status, AlchemyStatusResponse)
    headers = [h for _, m, p, h in horde.log if p.startswith("v2/interrogate")]
    assert headers[0]["apikey"] == API_KEY
    assert "apikey" not in headers[1]


async def test_session_tracks_until_a_final_status() -> None:
    async with running(FakeHorde(polls_to_finish=2)) as horde, session_for(horde) as session:
        response = await session.submit_request(
            image_request(), ImageGenerateAsyncRequest.get_default_success_response_type()
        )
        assert not isinstance(response, RequestErrorResponse)
        assert session.pending == (response.id_,)
        await session.get_generate_check(response.id_)
        assert session.pending == (response.id_,)
        await session.get_generate_check(response.id_)
        assert session.pending == ()
        dry = await session.submit_request(
            image_request(dry_run=True), ImageGenerateAsyncRequest.dry_run_response_type or type(response)
        )
        assert not isinstance(dry, RequestErrorResponse)
        assert session.pending == ()
    assert horde.count("DELETE", f"v2/generate/status/{response.id_}") == 0


async def test_session_forgets_cancelled_and_expired_ids() -> None:
    async with running(FakeHorde(polls_to_finish=None)) as horde, session_for(horde) as session:
        first = await session.submit_request(
            image_request(), ImageGenerateAsyncRequest.get_default_success_response_type()
        )
        second = await session.submit_request(
            image_request(), ImageGenerateAsyncRequest.get_default_success_response_type()
        )
        assert not isinstance(first, RequestErrorResponse)
        assert not isinstance(second, RequestErrorResponse)
        cancelled = await session.cancel(first.id_)
        assert isinstance(cancelled, ImageGenerateStatusResponse)
        del horde.jobs[second.id_]  # the Horde expired it
        await session.get_generate_check(second.id_)
        assert session.pending == ()


async def test_session_exit_deletes_every_pending_request_concurrently() -> None:
    async with running(FakeHorde(polls_to_finish=None, delete_delay=0.3)) as horde:
        session = session_for(horde)
        async with session:
            for request in (image_request(), image_request(n=2)):
                await session.submit_request(request, request.get_default_success_response_type())
            text = TextGenerateAsyncRequest(prompt="once")
            await session.submit_request(text, text.get_default_success_response_type())
            assert len(session.pending) == 3
            started = time.monotonic()
        elapsed = time.monotonic() - started
    deletes = {path for (method, path) in horde.hits if method == "DELETE"}
    assert deletes == {
        f"v2/generate/{'text/' if job.kind == 'text' else ''}status/{gid}" for gid, job in horde.jobs.items()
    }
    assert all(job.deleted for job in horde.jobs.values())
    assert elapsed < 0.55  # two 0.3 s image DELETEs ran side by side
    assert session.pending == ()
    assert session.transport.closed


async def test_session_exit_deletes_when_the_body_raised() -> None:
    submitted: list[str] = []

    async def body(horde: FakeHorde) -> None:
        async with session_for(horde) as session:
            request = image_request()
            response = await session.submit_request(request, request.get_default_success_response_type())
            assert not isinstance(response, RequestErrorResponse)
            submitted.append(response.id_)
            raise RuntimeError("boom")

    async with running(FakeHorde(polls_to_finish=None)) as horde:
        with pytest.raises(RuntimeError, match="boom"):
            await body(horde)
    assert horde.count("DELETE", f"v2/generate/status/{submitted[0]}") == 1


async def test_session_exit_deletes_on_cancellation_and_lets_it_propagate() -> None:
    submitted = asyncio.Event()
    async with running(FakeHorde(polls_to_finish=None)) as horde:

        async def body() -> None:
            async with session_for(horde) as session:
                request = image_request()
                await session.submit_request(request, request.get_default_success_response_type())
                submitted.set()
                await asyncio.sleep(30)

        task = asyncio.create_task(body())
        await submitted.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    (gen_id,) = horde.jobs
    assert horde.count("DELETE", f"v2/generate/status/{gen_id}") == 1


async def test_session_given_an_aiohttp_session_leaves_it_open() -> None:
    async with running(FakeHorde()) as horde, aiohttp.ClientSession() as http:
        session = AIHordeAPIAsyncClientSession(http, base_url=horde.base_url)
        async with http, session:
            await session.get_generate_check("nope")
        assert http.closed  # closed by its own ``async with``, after the horde session
    assert horde.count("GET", "v2/generate/check/nope") == 1


# -- simple client ---------------------------------------------------------------------------


async def test_image_request_polls_check_and_fetches_status_once() -> None:
    checks: list[ImageGenerateCheckResponse] = []
    order: list[str] = []

    async def progress(check: ImageGenerateCheckResponse) -> None:
        checks.append(check)
        order.append("progress")

    async def submitted(gen_id: str) -> None:
        order.append(f"submitted {gen_id}")

    async with running(FakeHorde(polls_to_finish=3)) as horde, simple_for(horde) as client:
        status, gen_id = await client.image_generate_request(
            image_request(n=2), progress_callback=progress, on_submitted=submitted
        )
        assert client.horde_client_session.pending == ()
    assert order[0] == f"submitted {gen_id}"
    assert len(checks) == 3
    assert checks[-1].done
    assert len(status.generations) == 2
    assert horde.count("GET", f"v2/generate/check/{gen_id}") == 3
    assert horde.count("GET", f"v2/generate/status/{gen_id}") == 1
    assert horde.count("DELETE", f"v2/generate/status/{gen_id}") == 0


async def test_poll_interval_follows_the_reported_wait_time() -> None:
    policy = PollPolicy(min_interval=0.01, max_interval=1.0, wait_fraction=0.05)
    async with running(FakeHorde(polls_to_finish=3, wait_time=4)) as horde, session_for(horde) as session:
        client = AIHordeAPIAsyncSimpleClient(session, poll_policy=policy)
        _, gen_id = await client.image_generate_request(image_request())
    times = horde.times("GET", f"v2/generate/check/{gen_id}")
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(0.18 <= gap < 0.4 for gap in gaps), gaps  # 4 s × 0.05


async def test_faulted_image_request_returns_what_it_made() -> None:
    async with running(FakeHorde(polls_to_finish=None, fault=True)) as horde, simple_for(horde) as client:
        status, gen_id = await client.image_generate_request(image_request(n=3))
    assert status.done
    assert status.faulted
    assert len(status.generations) < 3
    assert horde.count("DELETE", f"v2/generate/status/{gen_id}") == 0


async def test_cancel_event_deletes_and_returns_partial_results() -> None:
    event = asyncio.Event()

    async def progress(check: ImageGenerateCheckResponse) -> None:
        event.set()

    async with running(FakeHorde(polls_to_finish=None)) as horde, simple_for(horde) as client:
        status, gen_id = await client.image_generate_request(
            image_request(n=2), progress_callback=progress, cancel_event=event
        )
    assert horde.count("DELETE", f"v2/generate/status/{gen_id}") == 1
    assert horde.count("GET", f"v2/generate/status/{gen_id}") == 0
    assert len(status.generations) == 1  # the one finished before the cancel


async def test_timeout_deletes_and_returns_partial_results() -> None:
    async with running(FakeHorde(polls_to_finish=None)) as horde, simple_for(horde) as client:
        started = time.monotonic()
        status, gen_id = await client.image_generate_request(image_request(n=3), timeout=0.2)
        elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 1.0
    assert horde.count("DELETE", f"v2/generate/status/{gen_id}") == 1
    assert 1 <= len(status.generations) < 3


async def test_task_cancellation_deletes_and_propagates() -> None:
    first_poll = asyncio.Event()

    async def progress(check: ImageGenerateCheckResponse) -> None:
        first_poll.set()

    async with running(FakeHorde(polls_to_finish=None)) as horde, simple_for(horde) as client:
        task = asyncio.create_task(client.image_generate_request(image_request(), progress_callback=progress))
        await first_poll.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        (gen_id,) = horde.jobs
        assert horde.count("DELETE", f"v2/generate/status/{gen_id}") == 1
        assert client.horde_client_session.pending == ()


async def test_cancelled_during_submission_still_deletes_what_the_horde_accepted() -> None:
    async with (
        running(FakeHorde(polls_to_finish=None, submit_delay=0.3)) as horde,
        simple_for(horde) as client,
    ):
        task = asyncio.create_task(client.image_generate_request(image_request()))
        await asyncio.sleep(0.1)
        assert horde.count("POST", "v2/generate/async") == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        (gen_id,) = horde.jobs
        assert horde.count("DELETE", f"v2/generate/status/{gen_id}") == 1
        assert horde.count("GET", f"v2/generate/check/{gen_id}") == 0


async def test_failing_on_submitted_deletes_and_propagates() -> None:
    async def journal(gen_id: str) -> None:
        raise OSError("disk full")

    async with running(FakeHorde(polls_to_finish=None)) as horde, simple_for(horde) as client:
        with pytest.raises(OSError, match="disk full"):
            await client.image_generate_request(image_request(), on_submitted=journal)
    (gen_id,) = horde.jobs
    assert horde.count("DELETE", f"v2/generate/status/{gen_id}") == 1
    assert horde.count("GET", f"v2/generate/check/{gen_id}") == 0


async def test_expired_id_raises_a_clear_error_without_cleanup() -> None:
    async with running(FakeHorde()) as horde, simple_for(horde) as client:
        with pytest.raises(AIHordeRequestExpiredError, match="expired or unknown") as caught:
            await client.poll_image_request("gone-id")
    assert caught.value.http_status == 404
    assert caught.value.rc == "RequestNotFound"
    assert horde.count("DELETE", "v2/generate/status/gone-id") == 0


async def test_resuming_a_known_id() -> None:
    async with running(FakeHorde(polls_to_finish=2)) as horde, simple_for(horde) as client:
        gen_id = str(uuid.uuid4())
        horde.jobs[gen_id] = Job("image", 1, None, 2)
        status = await client.poll_image_request(gen_id)
    assert len(status.generations) == 1


async def test_errors_are_raised_with_their_details() -> None:
    error = (403, {"message": "You need kudos upfront", "rc": "KudosUpfront"})
    async with running(FakeHorde(submit_error=error)) as horde, simple_for(horde) as client:
        with pytest.raises(AIHordeRequestError) as caught:
            await client.image_generate_request(image_request(apikey=API_KEY))
    assert caught.value.rc == "KudosUpfront"
    assert caught.value.http_status == 403
    assert caught.value.message == "You need kudos upfront"
    assert isinstance(caught.value.error_response, RequestErrorResponse)
    assert API_KEY not in str(caught.value)


async def test_dry_runs() -> None:
    async with running(FakeHorde()) as horde, simple_for(horde) as client:
        with pytest.raises(ValueError, match="dry_run=True"):
            await client.image_generate_request_dry_run(image_request())
        with pytest.raises(ValueError, match="dry_run"):
            await client.image_generate_request(image_request(dry_run=True))
        image_price = await client.image_generate_request_dry_run(image_request(dry_run=True))
        text_price = await client.text_generate_request_dry_run(
            TextGenerateAsyncRequest(prompt="x", dry_run=True)
        )
    assert (image_price.kudos, text_price.kudos) == (12.0, 3.0)
    assert horde.count("POST", "v2/generate/async") == 1
    assert horde.jobs == {}


async def test_text_request_waits_for_all_generations() -> None:
    seen: list[TextGenerateStatusResponse] = []

    async def progress(status: TextGenerateStatusResponse) -> None:
        seen.append(status)

    async with running(FakeHorde(polls_to_finish=3)) as horde, simple_for(horde) as client:
        request = TextGenerateAsyncRequest(prompt="once", params=ModelGenerationInputKobold(n=2))
        status, gen_id = await client.text_generate_request(request, progress_callback=progress)
    assert [t.text for t in status.generations] == ["text 0", "text 1"]
    assert len(seen) == horde.count("GET", f"v2/generate/text/status/{gen_id}") == 3


async def test_text_cancel_returns_partial_text() -> None:
    event = asyncio.Event()

    async def progress(status: TextGenerateStatusResponse) -> None:
        event.set()

    async with running(FakeHorde(polls_to_finish=None)) as horde, simple_for(horde) as client:
        request = TextGenerateAsyncRequest(prompt="once", params=ModelGenerationInputKobold(n=3))
        status, gen_id = await client.text_generate_request(
            request, progress_callback=progress, cancel_event=event
        )
    assert [t.text for t in status.generations] == ["text 0"]
    assert horde.count("DELETE", f"v2/generate/text/status/{gen_id}") == 1


async def test_alchemy_request_polls_with_the_key_until_every_form_is_done() -> None:
    async with running(FakeHorde(polls_to_finish=2)) as horde, simple_for(horde) as client:
        request = AlchemyAsyncRequest(
            apikey=API_KEY,
            forms=[AlchemyAsyncRequestFormItem(name=KNOWN_ALCHEMY_TYPES.caption)],
            source_image="aGVsbG8=",
        )
        status, gen_id = await client.alchemy_request(request)
    assert [c.caption for c in status.all_caption_results] == ["a red square"]
    polls = [h for _, m, p, h in horde.log if (m, p) == ("GET", f"v2/interrogate/status/{gen_id}")]
    assert len(polls) == 2
    assert all(h["apikey"] == API_KEY for h in polls)


async def test_image_downloads_keep_the_bytes() -> None:
    async with running(FakeHorde(polls_to_finish=1, img_as_url=True)) as horde, simple_for(horde) as client:
        status, _ = await client.image_generate_request(image_request())
        (generation,) = status.generations
        assert generation.is_url
        assert await client.download_image_bytes(generation) == WEBP
        image, image_id = await client.download_image_from_generation(generation)
        from_url = await client.download_image_from_url(generation.img)
    assert image_id == generation.id_
    assert image.size == from_url.size == (8, 8)
    downloads = [p for _, m, p, _ in horde.log if p.startswith(("/img/", "img/"))]
    assert len(downloads) == 3


def b64_generation(img: str) -> ImageGeneration:
    return ImageGeneration.model_validate(
        {
            "img": img,
            "seed": "1",
            "id": "g-1",
            "censored": False,
            "model": "m",
            "worker_id": "w",
            "worker_name": "n",
        }
    )


async def test_base64_generation_downloads_without_http() -> None:
    async with AIHordeAPIAsyncSimpleClient() as client:
        generation = b64_generation(base64.b64encode(WEBP).decode())
        assert await client.download_image_bytes(generation) == WEBP
        image, gen_id = await client.download_image_from_generation(generation)
        assert (image.size, gen_id) == ((8, 8), "g-1")
        with pytest.raises(AIHordeImageDownloadError, match="no image"):
            await client.download_image_bytes(b64_generation("N/A"))
        with pytest.raises(AIHordeImageDownloadError, match="not a readable image"):
            await client.download_image_from_generation(b64_generation(base64.b64encode(b"junk").decode()))


async def test_downloads_are_capped_and_failures_are_clear() -> None:
    async with running(FakeHorde()) as horde:
        root = horde.base_url.removesuffix("api/")
        async with simple_for(horde, max_image_bytes=len(WEBP) - 1) as client:
            with pytest.raises(AIHordeImageDownloadError, match="larger than") as too_big:
                await client.download_image_from_url(f"{root}img/x.webp?Signature=secret")
            with pytest.raises(AIHordeImageDownloadError, match="HTTP 404") as missing:
                await client.download_image_from_url(f"{root}nothing-here?Signature=secret")
            with pytest.raises(AIHordeImageDownloadError, match="http"):
                await client.download_image_from_url("file:///etc/passwd")
    assert "secret" not in str(too_big.value)
    assert "secret" not in str(missing.value)


# -- the sync trio -------------------------------------------------------------------------------


def test_sync_simple_client_generates_and_downloads() -> None:
    with running_in_thread(FakeHorde(polls_to_finish=2, img_as_url=True)) as horde:
        seen: list[ImageGenerateCheckResponse] = []
        with AIHordeAPISimpleClient(base_url=horde.base_url, poll_policy=FAST_POLL) as client:
            status, gen_id = client.image_generate_request(image_request(), progress_callback=seen.append)
            image = client.download_image_from_generation(status.generations[0])
            thread = client._runner.thread
        assert not thread.is_alive()
    assert isinstance(image, PIL.Image.Image)
    assert len(seen) == 2
    assert horde.count("GET", f"v2/generate/status/{gen_id}") == 1


def test_sync_manual_client_matches_the_seed_shape() -> None:
    with running_in_thread(FakeHorde(polls_to_finish=1)) as horde:
        client = AIHordeAPIManualClient(base_url=horde.base_url)
        request = image_request()
        response = client.submit_request(request, request.get_default_success_response_type())
        assert not isinstance(response, RequestErrorResponse)
        check = client.get_generate_check(gen_id=response.id_)
        status = client.get_generate_status(gen_id=response.id_)
        client.close()
        client.close()
        with pytest.raises(RuntimeError, match="closed"):
            client.get_generate_check(gen_id=response.id_)
    assert isinstance(check, ImageGenerateCheckResponse)
    assert check.done
    assert isinstance(status, ImageGenerateStatusResponse)
    image = download_image_from_generation(status.generations[0])
    assert image.size == (8, 8)


def test_sync_session_cleans_up_on_exit_with_an_exception() -> None:
    submitted: list[str] = []

    def body(horde: FakeHorde) -> None:
        with AIHordeAPIClientSession(base_url=horde.base_url) as session:
            request = image_request()
            response = session.submit_request(request, request.get_default_success_response_type())
            assert not isinstance(response, RequestErrorResponse)
            assert session.pending == (response.id_,)
            submitted.append(response.id_)
            raise KeyError("boom")

    with running_in_thread(FakeHorde(polls_to_finish=None)) as horde:
        with pytest.raises(KeyError):
            body(horde)
        assert horde.count("DELETE", f"v2/generate/status/{submitted[0]}") == 1


def test_module_download_handles_urls() -> None:
    with running_in_thread(FakeHorde()) as horde:
        url = f"{horde.base_url.removesuffix('api/')}img/a.webp"
        image = download_image_from_generation(b64_generation(url))
    assert image.size == (8, 8)


def test_forgotten_sync_client_stops_its_thread() -> None:
    with running_in_thread(FakeHorde(polls_to_finish=None)) as horde:
        session = AIHordeAPIClientSession(base_url=horde.base_url)
        request = image_request()
        response = session.submit_request(request, request.get_default_success_response_type())
        assert not isinstance(response, RequestErrorResponse)
        thread = session._runner.thread
        del session
        gc.collect()
        thread.join(5)
        assert not thread.is_alive()
    assert horde.count("DELETE", f"v2/generate/status/{response.id_}") == 1


def test_anonymous_key_is_the_default() -> None:
    assert image_request().apikey == ANON_API_KEY


# -- end to end, against the simulator -------------------------------------------------------


@contextlib.asynccontextmanager
async def simulated(**knobs: Any) -> AsyncIterator[tuple[Simulator, AIHordeAPIAsyncSimpleClient]]:
    # Queue positions computed on the spot: right after a submit the server's once-a-second
    # snapshot says "position 0, no wait", which these tests of the client's other duties skip.
    knobs.setdefault("queue_refresh", 0.0)
    async with run_simulator(SimulatorConfig(knobs=Knobs(**knobs))) as sim:
        session = AIHordeAPIAsyncClientSession(
            base_url=sim.base_url, retry=RetryPolicy(max_attempts=3, base_delay=0.01, retry_after_scale=0.05)
        )
        async with session:
            yield sim, AIHordeAPIAsyncSimpleClient(session, poll_policy=FAST_POLL)


async def test_simulator_round_trips_and_the_default_limits_hold() -> None:
    submitted: list[str] = []

    async def journal(gen_id: str) -> None:
        submitted.append(gen_id)

    async with simulated(speed=0.3) as (sim, client):
        status, gen_id = await client.image_generate_request(image_request(n=2), on_submitted=journal)
        text, text_id = await client.text_generate_request(
            TextGenerateAsyncRequest(prompt="Once upon a time")
        )
        alchemy, _ = await client.alchemy_request(
            AlchemyAsyncRequest(
                forms=[AlchemyAsyncRequestFormItem(name=KNOWN_ALCHEMY_TYPES.caption)],
                source_image=base64.b64encode(WEBP).decode(),
            )
        )
        image_bytes = await client.download_image_bytes(status.generations[0])
        assert client.horde_client_session.pending == ()
    assert submitted == [gen_id]
    assert len(status.generations) == 2
    assert PIL.Image.open(io.BytesIO(image_bytes)).format == "WEBP"
    assert text.generations[0].text
    assert alchemy.all_caption_results
    # Polled as fast as the policy allows, yet the client-side limits kept every call under the server's.
    assert sim.counters.calls("generate_check", id=gen_id) > 5
    assert sim.counters.rate_limited() == 0
    assert sim.counters.calls("generate_status", id=gen_id) == 1
    assert sim.counters.deletes(gen_id) == sim.counters.deletes(text_id) == 0


async def test_simulator_partial_results_on_cancel_event_and_timeout() -> None:
    async with simulated(speed=0.15, worker_threads=1) as (sim, client):
        event = asyncio.Event()

        async def stop_after_first_image(check: ImageGenerateCheckResponse) -> None:
            if check.finished >= 1:
                event.set()

        cancelled, cancelled_id = await client.image_generate_request(
            image_request(n=6), progress_callback=stop_after_first_image, cancel_event=event
        )
        timed_out, timed_out_id = await client.image_generate_request(image_request(n=6), timeout=0.4)
    assert 1 <= len(cancelled.generations) < 6
    assert 1 <= len(timed_out.generations) < 6
    assert sim.counters.deletes(cancelled_id) == sim.counters.deletes(timed_out_id) == 1


async def test_simulator_cancelled_task_deletes_and_session_exit_cleans_the_rest() -> None:
    async with run_simulator(SimulatorConfig(knobs=Knobs(speed=5.0))) as sim:
        polling = asyncio.Event()

        async def progress(check: ImageGenerateCheckResponse) -> None:
            polling.set()

        async def body() -> None:
            async with AIHordeAPIAsyncClientSession(base_url=sim.base_url) as session:
                request = image_request()  # submitted, never followed
                await session.submit_request(request, request.get_default_success_response_type())
                client = AIHordeAPIAsyncSimpleClient(session, poll_policy=FAST_POLL)
                await client.image_generate_request(image_request(), progress_callback=progress)

        task = asyncio.create_task(body())
        await polling.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        ids = list(sim.state.requests)
    assert len(ids) == 2
    assert [sim.counters.deletes(gen_id) for gen_id in ids] == [1, 1]


async def test_simulator_expired_request() -> None:
    async with simulated(speed=5.0) as (sim, client):
        request = image_request()
        response = await client.call(request, request.get_default_success_response_type())
        assert sim.state.expire(response.id_)
        with pytest.raises(AIHordeRequestExpiredError, match="expired or unknown"):
            await client.poll_image_request(response.id_)
        assert client.horde_client_session.pending == ()


async def test_simulator_faults_are_retried() -> None:
    async with simulated(speed=0.05) as (sim, client):
        sim.state.faults.script("generate_check", Fault.http(503, retry_after=1), times=2)
        sim.state.faults.script("generate_status", Fault.drop())
        sim.state.faults.script("generate_async", Fault.rate_limit(retry_after=1))
        status, gen_id = await client.image_generate_request(image_request())
    assert len(status.generations) == 1
    assert sim.counters.faults() == 4
    assert sim.counters.calls("generate_async") == 2
    assert sim.counters.calls("generate_status", id=gen_id) == 2


async def test_simulator_a_delete_failing_with_500_is_sent_again() -> None:
    # The transport never retries a 500; a request left running would spend kudos for nobody.
    async with simulated(worker_threads=0) as (sim, client):
        event = asyncio.Event()

        async def cancel_at_once(check: ImageGenerateCheckResponse) -> None:
            event.set()

        sim.state.faults.script("generate_delete", Fault.http(500), times=2)
        status, gen_id = await client.image_generate_request(
            image_request(), progress_callback=cancel_at_once, cancel_event=event
        )
        assert client.horde_client_session.pending == ()
    assert status.generations == []
    assert sim.counters.deletes(gen_id) == 3
    assert sim.state.ledger()[gen_id].end == "cancelled"


async def test_simulator_a_failed_poll_still_cancels_through_a_failing_delete() -> None:
    async with simulated(worker_threads=0) as (sim, client):
        # A 500 that outlasts the poll loop's grace (a shorter one blip is polled through).
        client.poll_policy = replace(FAST_POLL, error_grace_s=0.05)
        sim.state.faults.script("generate_check", Fault.http(500), times=1000)
        sim.state.faults.script("generate_delete", Fault.http(500), times=2)
        with pytest.raises(AIHordeRequestError) as caught:
            await client.image_generate_request(image_request())
        assert client.horde_client_session.pending == ()
    assert caught.value.http_status == 500
    [gen_id] = sim.state.ledger()
    assert sim.counters.deletes(gen_id) == 3
    assert sim.state.orphans() == {}


async def test_simulator_a_delete_that_keeps_failing_is_given_up_and_reported() -> None:
    async with simulated(worker_threads=0) as (sim, client):
        event = asyncio.Event()
        event.set()
        sim.state.faults.script("generate_delete", Fault.http(500), times=3)
        request = image_request()
        response = await client.call(request, request.get_default_success_response_type())
        with pytest.raises(AIHordeRequestError) as caught:
            await client.poll_image_request(response.id_, timeout=0.01)
        # Still tracked: closing the session tries once more.
        assert client.horde_client_session.pending == (response.id_,)
    assert caught.value.http_status == 500
    assert sim.counters.deletes(response.id_) == 4
    assert sim.state.ledger()[response.id_].end == "cancelled"


def test_interrupting_a_sync_call_deletes_the_generation() -> None:
    with running_in_thread(FakeHorde(polls_to_finish=None)) as horde:
        client = AIHordeAPISimpleClient(base_url=horde.base_url, poll_policy=FAST_POLL)
        timer = threading.Timer(
            0.3, lambda: signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
        )
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                client.image_generate_request(image_request())
            # Deleted by the interrupted call itself, before the interrupt reached the caller.
            (gen_id,) = horde.jobs
            assert horde.count("DELETE", f"v2/generate/status/{gen_id}") == 1
        finally:
            timer.cancel()
            client.close()


async def test_simulator_users_kudos_and_information() -> None:
    alice, bob = "sim-alice-key-00000001", "sim-bob-key-0000000002"
    async with simulated() as (sim, client):
        me = await client.find_user(alice)
        other = await client.get_user(2)
        sent = await client.transfer_kudos(alice, "bob#2", 25, idempotency_key="gift-1")
        assert (await client.find_user(bob)).kudos == 125.0
        models = await client.get_models(MODEL_TYPE.text)
        beat = await client.heartbeat()
        perf = await client.performance()
        news = await client.news()
        workers = await client.workers(WORKER_TYPE.interrogation)
        image_styles = await client.styles()
        text_styles = await client.styles(MODEL_TYPE.text)
        with pytest.raises(AIHordeRequestError) as unknown:
            await client.find_user("unknown-key-0000000000")
    assert (me.username, other.username, sent.transferred) == ("alice#1", "bob#2", 25.0)
    assert [m.name for m in models.root] == ["koboldcpp/SimLlama-8B"]
    assert beat.message == "OK"
    assert perf.worker_count is not None
    assert news.root
    assert {w.type_ for w in workers.root} == {WORKER_TYPE.interrogation}
    assert isinstance(image_styles, AllStylesImageResponse)
    assert isinstance(text_styles, AllStylesTextResponse)
    assert unknown.value.http_status == 404
    assert sim.counters.calls("kudos_transfer") == 1


def test_every_model_constant_and_client_is_exported() -> None:
    import inspect

    import bot.horde
    from bot.horde import _clients, apimodels, consts

    defined_in_consts = [
        name
        for name, value in vars(consts).items()
        if not name.startswith("_")
        and (name.isupper() or (inspect.isclass(value) and value.__module__ == consts.__name__))
    ]
    models = [name for name in apimodels.__all__ if hasattr(apimodels, name)]
    clients = [
        name
        for module in (_clients.manual, _clients.session, _clients.simple, _clients.sync)
        for name, value in vars(module).items()
        if name.startswith("AIHordeAPI") and inspect.isclass(value) and value.__module__ == module.__name__
    ]
    assert len(clients) == 6
    expected = {*models, *defined_in_consts, *clients}
    assert expected <= set(bot.horde.__all__)
    assert all(hasattr(bot.horde, name) for name in bot.horde.__all__)
