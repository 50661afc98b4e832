"""The same requests to the real AI Horde and to the simulator: statuses, bodies, shapes, prices."""

from __future__ import annotations

import asyncio
import base64
import io
from typing import Any

import PIL.Image
from horde_sides import (
    Exchange,
    Side,
    assert_limit_headers,
    assert_same_shape,
    both,
    keys,
    needs_real_horde,
    sides_fixture,  # noqa: F401 - the fixture `sides`
)

from horde_simulator import _kudos

UNKNOWN_ID = "00000000-0000-0000-0000-000000000001"
IMAGE = {"prompt": "a red square", "params": {"steps": 10}}
TEXT_MODEL = "koboldcpp/LLaMA2-13B-Psyfighter2"

pytestmark = needs_real_horde


def assert_same_answer(real: Exchange, sim: Exchange, what: str) -> None:
    """Status, content type and body, word for word."""
    assert (sim.status, sim.content_type) == (real.status, real.content_type), what
    assert sim.body == real.body, what


async def until_done(side: Side, path: str, *, within: float = 60.0) -> list[Exchange]:
    """Every answer of ``path`` (a check or status), polled each second until it says done."""
    answers: list[Exchange] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        answer = await side.call("GET", path)
        answers.append(answer)
        assert answer.status == 200, (side.name, answer.body)
        body = answer.body
        if body.get("done") or body.get("state") in ("done", "faulted"):
            return answers
        await asyncio.sleep(1.0)
    raise AssertionError(f"{side.name}: {path} not done within {within} s: {answers[-1].body}")


async def test_error_answers_are_word_for_word_the_servers(sides: tuple[Side, Side]) -> None:
    exchanges: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", f"v2/generate/check/{UNKNOWN_ID}", {}),
        ("GET", f"v2/generate/status/{UNKNOWN_ID}", {}),
        ("DELETE", f"v2/generate/status/{UNKNOWN_ID}", {}),
        ("GET", f"v2/generate/text/status/{UNKNOWN_ID}", {}),
        ("GET", "v2/generate/text/status/abc", {}),
        ("DELETE", f"v2/generate/text/status/{UNKNOWN_ID}", {}),
        ("GET", f"v2/interrogate/status/{UNKNOWN_ID}", {}),
        ("GET", "v2/interrogate/status/abc", {}),
        ("GET", "v2/users/99999", {}),
        ("GET", "v2/users/abc", {}),
        ("GET", "v2/workers/nope", {}),
        ("GET", "v2/find_user", {}),
        ("PUT", "v2/status/heartbeat", {}),
        ("GET", "v2/no/such/route", {}),
        ("POST", "v2/generate/async", {"user": "bob", "json": {"params": {"steps": 10}}}),
        ("POST", "v2/generate/async", {"user": "bob", "json": {"prompt": "x", "params": {"width": 100}}}),
        ("POST", "v2/generate/async", {"user": "bob", "json": {"prompt": "", "dry_run": True}}),
        ("POST", "v2/kudos/transfer", {"user": "bob", "json": {"username": "nobody#999", "amount": 1}}),
    ]
    for method, path, options in exchanges:
        real, sim = await both(sides, lambda side, m=method, p=path, o=options: side.call(m, p, **o))
        assert_same_answer(real, sim, f"{method} {path}")
        await asyncio.sleep(0.6)  # generate/async allows 2 a second per IP


async def test_status_answers_have_the_servers_shapes_and_limits(sides: tuple[Side, Side]) -> None:
    real_side, _ = sides
    heartbeat = await both(sides, lambda side: side.call("GET", "v2/status/heartbeat"))
    for answer in heartbeat:
        assert answer.status == 200
        assert answer.header("Retry-After") is None  # the heartbeat is exempt from rate limits
    assert_same_shape(heartbeat[0].body, heartbeat[1].body, "heartbeat")
    modes = await both(sides, lambda side: side.call("GET", "v2/status/modes"))
    assert_same_answer(*modes, "status/modes")
    for answer in modes:
        assert_limit_headers(answer, limit=30, window=60, what=f"{answer} status/modes")
    performance = await both(sides, lambda side: side.call("GET", "v2/status/performance"))
    assert_same_shape(*(answer.body for answer in performance), "status/performance")
    news = await both(sides, lambda side: side.call("GET", "v2/status/news"))
    # Different news, the same fields (the server's older pieces have no tags: null).
    assert set(news[1].body[0]) == set(news[0].body[0])
    assert_same_shape(news[0].body[0], news[1].body[0], "a piece of news")
    mine = await both(sides, lambda side: side.call("GET", "v2/find_user", user="bob"))
    # The same fields; what they hold depends on the account's history (its requests, styles).
    history = frozenset({"active_generations"})
    assert keys(mine[1].body, optional=history) == keys(mine[0].body, optional=history)
    for answer in mine:
        assert_limit_headers(answer, limit=90, window=60, what="find_user")
    user_id = str(mine[0].body["id"])
    public = await both(sides, lambda side: side.call("GET", f"v2/users/{user_id}"))
    assert keys(public[1].body) == keys(public[0].body)
    for answer in public:
        assert_limit_headers(answer, limit=60, window=60, what="users/{id}")
    assert real_side.name == "real"


async def test_dry_runs_cost_what_the_server_says(sides: tuple[Side, Side]) -> None:
    cases: list[tuple[dict[str, Any], list[str] | None]] = [
        ({}, None),
        ({"steps": 10}, None),
        ({"n": 2}, None),
        ({"width": 1024, "height": 1024}, None),
        ({"width": 768, "height": 512, "steps": 25}, None),
        ({"post_processing": ["RealESRGAN_x4plus"]}, None),
        ({"loras": [{"name": "123"}]}, None),
        ({}, ["AlbedoBase XL (SDXL)"]),
    ]
    for params, models in cases:
        body: dict[str, Any] = {"prompt": "dry", "dry_run": True, "params": params}
        if models:
            body["models"] = models
        real, sim = await both(
            sides, lambda side, b=body: side.call("POST", "v2/generate/async", user="bob", json=b)
        )
        assert_same_answer(real, sim, f"image dry run {params} {models}")
        await asyncio.sleep(0.6)
    for params in ({}, {"max_length": 200}, {"max_length": 120, "max_context_length": 4096}):
        body = {"prompt": "dry", "dry_run": True, "params": params, "models": [TEXT_MODEL]}
        real, sim = await both(
            sides, lambda side, b=body: side.call("POST", "v2/generate/text/async", user="bob", json=b)
        )
        assert_same_answer(real, sim, f"text dry run {params}")
        await asyncio.sleep(0.6)


async def test_an_image_request_answers_alike_from_submit_to_status(sides: tuple[Side, Side]) -> None:
    await both(sides, lambda side: side.start_worker(1.0))

    async def flow(side: Side) -> tuple[Exchange, list[Exchange], Exchange]:
        accepted = await side.submit("image", IMAGE)
        gen_id = accepted.body["id"]
        checks = await until_done(side, f"v2/generate/check/{gen_id}")
        status = await side.call("GET", f"v2/generate/status/{gen_id}")
        return accepted, checks, status

    real, sim = await both(sides, flow)
    (real_accepted, real_checks, real_status), (sim_accepted, sim_checks, sim_status) = real, sim
    assert (real_accepted.status, sim_accepted.status) == (202, 202)
    assert sim_accepted.body["kudos"] == real_accepted.body["kudos"]
    assert set(sim_accepted.body) == set(real_accepted.body) == {"id", "kudos"}
    assert_same_shape(real_checks[-1].body, sim_checks[-1].body, "check")
    assert sim_checks[-1].body["kudos"] == real_checks[-1].body["kudos"]  # tax 3 + 4.26 + 1, kept whole
    assert_same_shape(real_status.body, sim_status.body, "status")
    for answer in (real_checks[-1], sim_checks[-1]):
        assert_limit_headers(answer, limit=10, window=1, what="check")
    for answer in (real_status, sim_status):
        assert_limit_headers(answer, limit=10, window=60, what="status")
        generation = answer.body["generations"][0]
        assert generation["img"].startswith("http")


async def test_text_and_alchemy_requests_answer_alike(sides: tuple[Side, Side]) -> None:
    await both(sides, lambda side: side.start_worker(1.0))
    text = {"prompt": "Once upon a time", "params": {"max_length": 64}, "models": [TEXT_MODEL]}

    async def write(side: Side) -> tuple[Exchange, list[Exchange]]:
        accepted = await side.submit("text", text)
        return accepted, await until_done(side, f"v2/generate/text/status/{accepted.body['id']}")

    (real_accepted, real_status), (sim_accepted, sim_status) = await both(sides, write)
    assert (real_accepted.status, sim_accepted.status) == (202, 202)
    assert sim_accepted.body["kudos"] == real_accepted.body["kudos"] == 0.0
    assert_same_shape(real_status[-1].body, sim_status[-1].body, "text status")
    # Each text is priced by its length: the tax (1), then its reward + 1, in whole kudos.
    for answer in (real_status[-1], sim_status[-1]):
        (generation,) = answer.body["generations"]
        reward = _kudos.text_generation_kudos(generation["text"], text["prompt"], 64, TEXT_MODEL)
        assert answer.body["kudos"] == _kudos.charged(1.0, reward + 1)

    picture = io.BytesIO()
    PIL.Image.new("RGB", (64, 64), (200, 30, 30)).save(picture, "PNG")
    alchemy = {"source_image": base64.b64encode(picture.getvalue()).decode(), "forms": [{"name": "caption"}]}

    async def describe(side: Side) -> tuple[Exchange, list[Exchange]]:
        await asyncio.sleep(0.6)
        accepted = await side.submit("alchemy", alchemy)
        return accepted, await until_done(side, f"v2/interrogate/status/{accepted.body['id']}")

    (real_accepted, real_forms), (sim_accepted, sim_forms) = await both(sides, describe)
    assert_same_shape(real_accepted.body, sim_accepted.body, "interrogate/async")
    real_done, sim_done = real_forms[-1].body, sim_forms[-1].body
    assert (real_done["state"], sim_done["state"]) == ("done", "done")
    assert [set(form) for form in sim_done["forms"]] == [set(form) for form in real_done["forms"]]


async def test_the_worker_list_has_the_servers_shape(sides: tuple[Side, Side]) -> None:
    await both(sides, lambda side: side.start_worker(1.0))

    async def workers(side: Side) -> list[dict[str, Any]]:
        # The server lists workers from a cache it refreshes every 30 s.
        for _ in range(45):
            answer = await side.call("GET", "v2/workers")
            found = [w for w in answer.body if w["name"].startswith(("Conformance", "Sim"))]
            if {w["type"] for w in found} == {"image", "text", "interrogation"}:
                return found
            await asyncio.sleep(1.0)
        raise AssertionError(f"{side.name}: the workers did not show up: {answer.body}")

    real, sim = await both(sides, workers)
    for kind in ("image", "text", "interrogation"):
        real_worker = next(w for w in real if w["type"] == kind)
        for worker in (w for w in sim if w["type"] == kind):
            assert set(worker) == set(real_worker), kind
            assert_same_shape(real_worker["team"], worker["team"], f"{kind} worker team")
            assert type(worker["kudos_rewards"]) is type(real_worker["kudos_rewards"])
