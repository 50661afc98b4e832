"""The AI Horde simulator against the wire contract and the responses captured from a real server."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import PIL.Image
import pytest

from horde_simulator import (
    Knobs,
    ManualClock,
    RateLimits,
    Simulator,
    SimulatorConfig,
    SimUser,
    _images,
    run_simulator,
)

# Copied from ../shared (origin in tests/fixtures/README.md), so a plain clone runs these.
REAL = Path(__file__).resolve().parents[1] / "fixtures" / "horde" / "real"

ALICE = {"apikey": "sim-alice-key-00000001", "Client-Agent": "sim-tests:1:tests"}
BOB = {"apikey": "sim-bob-key-0000000002"}
POOR = {"apikey": "sim-poor-key-000000003"}
ANON = {"apikey": "0000000000"}


def real(name: str) -> Any:
    return json.loads((REAL / name).read_text())


def assert_same_shape(actual: Any, expected: Any, path: str = "$") -> None:
    """Same keys at every level and the same JSON types (ints stay ints, floats floats)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        assert set(actual) == set(expected), f"{path}: keys differ by {sorted(set(actual) ^ set(expected))}"
        for key, value in expected.items():
            assert_same_shape(actual[key], value, f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{path}: expected a list, got {actual!r}"
        if expected:
            for index, item in enumerate(actual):
                assert_same_shape(item, expected[0], f"{path}[{index}]")
    elif expected is None:
        assert actual is None, f"{path}: expected null, got {actual!r}"
    else:
        assert type(actual) is type(expected), f"{path}: {type(actual).__name__} != {type(expected).__name__}"


def fast(**knobs: Any) -> SimulatorConfig:
    """Quick workers, no rate limits and none of the server's caches unless a test asks for them
    (the caches and the queue snapshot have tests of their own)."""
    knobs.setdefault("speed", 0.02)
    knobs.setdefault("rate_limits", RateLimits(enabled=False))
    for cache in ("check_cache", "queue_refresh", "find_user_cache"):
        knobs.setdefault(cache, 0.0)
    return SimulatorConfig(knobs=Knobs(**knobs))


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with run_simulator(fast()) as running:
        yield running


async def call(
    http: aiohttp.ClientSession, sim: Simulator, method: str, path: str, **kwargs: Any
) -> tuple[int, Any]:
    async with http.request(method, sim.url(path), **kwargs) as response:
        return response.status, await response.json()


async def submit(
    http: aiohttp.ClientSession, sim: Simulator, body: dict[str, Any], headers: Any = None
) -> str:
    status, answer = await call(http, sim, "POST", "v2/generate/async", json=body, headers=headers or ALICE)
    assert status == 202, answer
    return str(answer["id"])


async def poll(
    http: aiohttp.ClientSession, sim: Simulator, path: str, until: Any, within: float = 5.0
) -> dict[str, Any]:
    """GET ``path`` until ``until(answer)`` holds (real time, short sleeps)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        status, answer = await call(http, sim, "GET", path)
        assert status == 200, answer
        if until(answer):
            return dict(answer)
        assert asyncio.get_running_loop().time() < deadline, f"gave up waiting on {path}: {answer}"
        await asyncio.sleep(0.01)


def decode_webp(data: bytes) -> PIL.Image.Image:
    image = PIL.Image.open(io.BytesIO(data))
    assert image.format == "WEBP"
    image.load()
    return image


# -- shapes of every captured response ------------------------------------------------------------


async def test_image_flow_shapes_match_the_captures(http: aiohttp.ClientSession, sim: Simulator) -> None:
    gen_id = await submit(http, sim, {"prompt": "a tiny red cube"})
    status, check = await call(http, sim, "GET", f"v2/generate/check/{gen_id}")
    assert status == 200
    assert_same_shape(check, real("11_img_check.json"))
    done = await poll(http, sim, f"v2/generate/check/{gen_id}", lambda c: c["done"])
    assert_same_shape(done, real("15_img_check.json"))
    _, full = await call(http, sim, "GET", f"v2/generate/status/{gen_id}")
    assert_same_shape(full, real("16_img_status.json"))


async def test_no_worker_answer_matches_capture_word_for_word(http: aiohttp.ClientSession) -> None:
    async with run_simulator(fast(served_image_models=("other",), served_text_models=())) as sim:
        status, answer = await call(
            http, sim, "POST", "v2/generate/async", json={"prompt": "x"}, headers=ALICE
        )
        captured = real("10_img_async.json")
        assert status == 202
        assert_same_shape(answer, captured)
        assert answer["message"] == captured["message"]
        assert answer["warnings"] == captured["warnings"]
        _, check = await call(http, sim, "GET", f"v2/generate/check/{answer['id']}")
        assert check["is_possible"] is False
        assert check["waiting"] == 1
        assert check["queue_position"] == 1

        status, text = await call(
            http, sim, "POST", "v2/generate/text/async", json={"prompt": "x"}, headers=ALICE
        )
        assert status == 202
        assert_same_shape(text, real("50_text_async.json"))
        assert text["message"] == real("50_text_async.json")["message"]


async def test_served_models_make_requests_possible(http: aiohttp.ClientSession) -> None:
    async with run_simulator(fast(served_image_models=("Deliberate",))) as sim:
        _, served = await call(
            http,
            sim,
            "POST",
            "v2/generate/async",
            json={"prompt": "x", "models": ["Deliberate"]},
            headers=ALICE,
        )
        assert set(served) == {"id", "kudos"}
        _, unserved = await call(http, sim, "POST", "v2/generate/async", json={"prompt": "x"}, headers=ALICE)
        assert unserved["warnings"][0]["code"] == "NoAvailableWorker"


async def test_base64_status_matches_capture_and_decodes(http: aiohttp.ClientSession, sim: Simulator) -> None:
    body = {"prompt": "base64 please", "r2": False, "params": {"width": 320, "height": 192}}
    gen_id = await submit(http, sim, body)
    await poll(http, sim, f"v2/generate/check/{gen_id}", lambda c: c["done"])
    _, full = await call(http, sim, "GET", f"v2/generate/status/{gen_id}")
    assert_same_shape(full, real("23_img_b64_status.json"))
    image = decode_webp(base64.b64decode(full["generations"][0]["img"]))
    assert image.size == (320, 192)


async def test_r2_url_downloads_a_webp_of_the_requested_size(
    http: aiohttp.ClientSession, sim: Simulator
) -> None:
    gen_id = await submit(http, sim, {"prompt": "a lighthouse", "params": {"width": 768, "height": 512}})
    await poll(http, sim, f"v2/generate/check/{gen_id}", lambda c: c["done"])
    _, full = await call(http, sim, "GET", f"v2/generate/status/{gen_id}")
    generation = full["generations"][0]
    assert generation["img"] == f"{sim.root_url}_sim/r2/{generation['id']}.webp"
    async with http.get(generation["img"]) as response:
        assert response.status == 200
        assert response.content_type == "image/webp"
        image = decode_webp(await response.read())
    assert image.size == (768, 512)
    assert isinstance(generation["seed"], str)
    assert generation["seed"].isdigit()
    assert generation["worker_name"].startswith("Sim Dreamer")
    assert sim.counters.calls("r2_image", id=generation["id"]) == 1


async def test_huge_images_are_scaled_down_keeping_the_aspect_ratio(http: aiohttp.ClientSession) -> None:
    async with run_simulator(fast(max_image_side=256)) as sim:
        gen_id = await submit(http, sim, {"prompt": "wide", "params": {"width": 1024, "height": 512}})
        await poll(http, sim, f"v2/generate/check/{gen_id}", lambda c: c["done"])
        _, full = await call(http, sim, "GET", f"v2/generate/status/{gen_id}")
        async with http.get(full["generations"][0]["img"]) as response:
            assert decode_webp(await response.read()).size == (256, 128)


async def test_the_seed_paints_the_picture(http: aiohttp.ClientSession, sim: Simulator) -> None:
    ids = [
        await submit(http, sim, {"prompt": "same", "params": {"seed": seed, "width": 64, "height": 64}})
        for seed in ("1", "1", "2")
    ]
    pixels = []
    for gen_id in ids:
        await poll(http, sim, f"v2/generate/check/{gen_id}", lambda c: c["done"])
        _, full = await call(http, sim, "GET", f"v2/generate/status/{gen_id}")
        assert full["generations"][0]["seed"] in ("1", "2")
        async with http.get(full["generations"][0]["img"]) as response:
            pixels.append(decode_webp(await response.read()).convert("RGB").getpixel((0, 0)))
    assert pixels[0] == pixels[1] != pixels[2]


async def test_cancel_shapes_match_the_captures(http: aiohttp.ClientSession) -> None:
    async with run_simulator(fast(served_image_models=())) as sim:
        gen_id = await submit(http, sim, {"prompt": "never served", "params": {"n": 2}})
        status, deleted = await call(http, sim, "DELETE", f"v2/generate/status/{gen_id}")
        assert status == 200
        assert_same_shape(deleted, real("31_cancel_delete.json"))
        assert_same_shape(deleted, real("delete_200.json"))
        assert deleted["waiting"] == 2
        assert deleted["done"] is False
        _, check = await call(http, sim, "GET", f"v2/generate/check/{gen_id}")
        assert_same_shape(check, real("32_cancel_check.json"))
        assert check["waiting"] == 0
        assert check["done"] is True
        assert sim.counters.deletes(gen_id) == 1


async def test_text_shapes_match_the_captures(http: aiohttp.ClientSession, sim: Simulator) -> None:
    status, answer = await call(
        http, sim, "POST", "v2/generate/text/async", json={"prompt": "Once upon a time"}, headers=ALICE
    )
    assert status == 202
    assert set(answer) == {"id", "kudos"}
    done = await poll(http, sim, f"v2/generate/text/status/{answer['id']}", lambda s: s["done"])
    assert_same_shape(done, real("53_text_status.json"))
    assert isinstance(done["generations"][0]["seed"], int)


async def test_text_delete_shape_and_done_staying_false(http: aiohttp.ClientSession) -> None:
    async with run_simulator(fast(served_text_models=())) as sim:
        _, answer = await call(
            http, sim, "POST", "v2/generate/text/async", json={"prompt": "x"}, headers=ALICE
        )
        status, deleted = await call(http, sim, "DELETE", f"v2/generate/text/status/{answer['id']}")
        assert status == 200
        assert_same_shape(deleted, real("55_text_delete.json"))
        _, after = await call(http, sim, "GET", f"v2/generate/text/status/{answer['id']}")
        assert after["waiting"] == 0
        assert after["done"] is False


async def test_alchemy_shapes_match_the_captures(http: aiohttp.ClientSession, sim: Simulator) -> None:
    body = {"source_image": _b64_png(64, 64, (220, 30, 30)), "forms": [{"name": "caption"}]}
    status, answer = await call(http, sim, "POST", "v2/interrogate/async", json=body, headers=ALICE)
    assert status == 202
    assert_same_shape(answer, real("60_int_async.json"))
    done = await poll(http, sim, f"v2/interrogate/status/{answer['id']}", lambda s: s["state"] == "done")
    assert_same_shape(done, real("64_int_status.json"))
    assert done["forms"][0]["result"] == {"caption": "a square red image, 64x64 pixels"}


async def test_dry_runs_match_the_captures(http: aiohttp.ClientSession, sim: Simulator) -> None:
    status, image = await call(
        http, sim, "POST", "v2/generate/async", json={"prompt": "x", "dry_run": True}, headers=ALICE
    )
    assert status == 200
    assert_same_shape(image, real("async_200_dry_run.json"))
    status, text = await call(
        http, sim, "POST", "v2/generate/text/async", json={"prompt": "x", "dry_run": True}, headers=ALICE
    )
    assert status == 200
    assert_same_shape(text, real("text_async_200_dry_run.json"))
    assert sim.state.requests == {}


@pytest.mark.parametrize(
    ("body", "headers", "capture"),
    [
        ({"prompt": ""}, ALICE, "async_400_missing_prompt.json"),
        ({"prompt": "x", "params": {"width": 500, "steps": 1000}}, ALICE, "async_400_validation.json"),
        ({"prompt": "x"}, {"apikey": "nobody-has-this-key-00"}, "async_401_bad_key.json"),
    ],
)
async def test_async_errors_match_the_captures_exactly(
    http: aiohttp.ClientSession, sim: Simulator, body: dict[str, Any], headers: dict[str, str], capture: str
) -> None:
    status, answer = await call(http, sim, "POST", "v2/generate/async", json=body, headers=headers)
    assert answer == real(capture)
    assert status == (401 if "401" in capture else 400)


async def test_kudos_upfront_matches_the_capture(http: aiohttp.ClientSession, sim: Simulator) -> None:
    body = {"prompt": "huge", "params": {"width": 2048, "height": 2048}}
    status, answer = await call(http, sim, "POST", "v2/generate/async", json=body, headers=ANON)
    captured = real("async_403_kudos_upfront.json")
    assert status == 403
    assert_same_shape(answer, captured)
    number = re.compile(r"requires [0-9.]+ kudos")
    assert number.sub("requires N kudos", answer["message"]) == number.sub(
        "requires N kudos", captured["message"]
    )


async def test_not_found_and_user_errors_match_the_captures_exactly(
    http: aiohttp.ClientSession, sim: Simulator
) -> None:
    zero = "00000000-0000-0000-0000-000000000000"
    assert await call(http, sim, "GET", f"v2/generate/check/{zero}") == (404, real("check_404_unknown.json"))
    assert await call(http, sim, "GET", "v2/find_user") == (401, real("find_user_401_nokey.json"))
    unknown = {"apikey": "aaaaaaaaaaaaaaaaaaaaaa"}
    assert await call(http, sim, "GET", "v2/find_user", headers=unknown) == (
        404,
        real("find_user_404_unknown_key.json"),
    )
    bad_form = {"source_image": _b64_png(8, 8, (0, 0, 0)), "forms": [{"name": "nonsense"}]}
    assert await call(http, sim, "POST", "v2/interrogate/async", json=bad_form, headers=ALICE) == (
        400,
        real("interrogate_400_bad_form.json"),
    )


async def test_user_shapes_match_the_captures(http: aiohttp.ClientSession, sim: Simulator) -> None:
    status, me = await call(http, sim, "GET", "v2/find_user", headers=BOB)
    assert status == 200
    assert me["username"] == "bob#2"
    assert me["kudos"] == 100.0
    assert_same_shape(me, real("find_user_200.json"))
    status, public = await call(http, sim, "GET", "v2/users/1")
    assert status == 200
    assert public["username"] == "alice#1"
    captured = real("users_1_200.json")
    assert_same_shape({**public, "styles": []}, captured)
    assert public["styles"]
    assert set(public["styles"][0]) == {"name", "id", "type"}
    _, own = await call(http, sim, "GET", "v2/users/2", headers=BOB)
    assert "worker_ids" in own
    assert "sharedkey_ids" in own
    # The real server's words, hint and all (AI-Horde 5.1.5 on loopback).
    assert await call(http, sim, "GET", "v2/users/abc") == (
        404,
        {
            "message": "User with ID 'Please use only the numerical part of the userID. E.g. the '1' in "
            "'db0#1'' not found. You have requested this URI [/api/v2/users/abc] but did you mean "
            "/api/v2/users/<string:user_id> or /api/v2/users or /api/v2/workers/<string:worker_id> ?",
            "rc": "UserNotFound",
        },
    )
    assert (await call(http, sim, "GET", "v2/users/99"))[0] == 404
    assert (await call(http, sim, "GET", "v2/users/1", headers={"apikey": "wrong-key"}))[0] == 401


async def test_info_shapes_match_the_captures(http: aiohttp.ClientSession, sim: Simulator) -> None:
    status, beat = await call(http, sim, "GET", "v2/status/heartbeat")
    assert status == 200
    assert_same_shape(beat, real("heartbeat_200.json"))
    assert beat["message"] == "OK"
    assert beat["version"] == "5.1.5"
    _, perf = await call(http, sim, "GET", "v2/status/performance")
    assert_same_shape(perf, real("performance_200.json"))
    _, news = await call(http, sim, "GET", "v2/status/news")
    assert news
    assert_same_shape(news, real("news_200.json"))


async def test_workers_look_like_the_real_capture(http: aiohttp.ClientSession, sim: Simulator) -> None:
    # AI-Horde 5.1.5 on loopback with a fake worker of each kind, the image one having made
    # images (the production capture, workers_get_200_real.json, is from an older server: no
    # controlnet keys, whole numbers). Both simulated dreamers make one image first.
    captured = real("workers_200_three_kinds.json")
    gen_id = await submit(http, sim, {"prompt": "x", "params": {"n": 2}})
    await poll(http, sim, f"v2/generate/check/{gen_id}", lambda c: c["done"])
    status, workers = await call(http, sim, "GET", "v2/workers")
    assert status == 200
    assert {w["type"] for w in workers} == {"image", "text", "interrogation"}
    for worker in workers:
        sample = next(w for w in captured if w["type"] == worker["type"] and "info" not in w)
        assert_same_shape(worker, sample)
    _, texts = await call(http, sim, "GET", "v2/workers", params={"type": "text"})
    assert [w["type"] for w in texts] == ["text"]
    first = workers[0]
    assert await call(http, sim, "GET", f"v2/workers/{first['id']}") == (200, first)
    _, by_name = await call(http, sim, "GET", f"v2/workers/name/{first['name']}")
    assert by_name["id"] == first["id"]
    _, named = await call(http, sim, "GET", "v2/workers", params={"name": first["name"].upper()})
    assert [w["id"] for w in named] == [first["id"]]
    assert await call(http, sim, "GET", "v2/workers/nope") == (
        404,
        {
            # The real server's words: Flask-RESTX adds the closest routes to a 404.
            "message": "Worker with ID 'nope' not found. You have requested this URI [/api/v2/workers/nope] "
            "but did you mean /api/v2/workers/<string:worker_id> or "
            "/api/v2/workers/name/<string:worker_name> or /api/v2/workers ?",
            "rc": "WorkerNotFound",
        },
    )


async def test_models_status(http: aiohttp.ClientSession) -> None:
    async with run_simulator(fast(served_image_models=(), served_text_models=())) as sim:
        assert await call(http, sim, "GET", "v2/status/models") == (200, real("status_models_image_200.json"))
        text = await call(http, sim, "GET", "v2/status/models", params={"type": "text"})
        assert text == (200, real("status_models_text_200.json"))
    async with run_simulator(fast(served_image_models=("A", "B"))) as sim:
        _, models = await call(http, sim, "GET", "v2/status/models")
        assert [m["name"] for m in models] == ["A", "B"]
        assert set(models[0]) == {"name", "count", "performance", "queued", "jobs", "eta", "type"}
        assert models[0]["count"] == 2
        assert models[0]["type"] == "image"
        _, custom = await call(http, sim, "GET", "v2/status/models", params={"model_state": "custom"})
        assert [m["name"] for m in custom] == ["A", "B"]
        _, known = await call(http, sim, "GET", "v2/status/models", params={"model_state": "known"})
        assert known == []
        _, few = await call(http, sim, "GET", "v2/status/models", params={"min_count": "3"})
        assert few == []
        status, bad = await call(http, sim, "GET", "v2/status/models", params={"model_state": "odd"})
        assert status == 400
        assert bad["rc"] == "BadRequest"
        _, one = await call(http, sim, "GET", "v2/status/models/A")
        assert [m["name"] for m in one] == ["A"]
        assert await call(http, sim, "GET", "v2/status/models/nothing") == (200, [])
    async with run_simulator(fast()) as sim:
        _, texts = await call(http, sim, "GET", "v2/status/models", params={"type": "text"})
        assert [m["name"] for m in texts] == ["koboldcpp/SimLlama-8B"]
        _, slash = await call(http, sim, "GET", "v2/status/models/koboldcpp/SimLlama-8B")
        assert slash[0]["type"] == "text"


async def test_styles(http: aiohttp.ClientSession, sim: Simulator) -> None:
    status, styles = await call(http, sim, "GET", "v2/styles/image")
    assert status == 200
    assert [s["name"] for s in styles] == ["sim-photoreal", "sim-sketch"]
    assert set(styles[0]) == {
        "name", "info", "prompt", "params", "public", "nsfw", "tags", "models", "id", "use_count", "creator",
        "examples",
    }  # fmt: skip
    _, by_age = await call(http, sim, "GET", "v2/styles/image", params={"sort": "age"})
    assert [s["name"] for s in by_age] == ["sim-sketch", "sim-photoreal"]
    _, tagged = await call(http, sim, "GET", "v2/styles/image", params={"tag": "sketch"})
    assert [s["name"] for s in tagged] == ["sim-sketch"]
    _, for_model = await call(http, sim, "GET", "v2/styles/image", params={"model": "stable_diffusion"})
    assert [s["name"] for s in for_model] == ["sim-photoreal"]
    assert (await call(http, sim, "GET", "v2/styles/image", params={"page": "2"}))[1] == []
    assert (await call(http, sim, "GET", "v2/styles/image", params={"sort": "x"}))[0] == 400
    first = styles[0]
    assert await call(http, sim, "GET", f"v2/styles/image/{first['id']}") == (200, first)
    assert await call(http, sim, "GET", "v2/styles/image_by_name/sim-photoreal") == (200, first)
    assert await call(http, sim, "GET", "v2/styles/image_by_name/alice%231::style::sim-photoreal") == (
        200,
        first,
    )
    # The server builds the rc of a missing style from "image Style".capitalize().
    assert await call(http, sim, "GET", "v2/styles/image/missing") == (
        404,
        {
            "message": "Image style with ID 'missing' not found. You have requested this URI "
            "[/api/v2/styles/image/missing] but did you mean "
            "/api/v2/styles/image/<string:style_id>/example/<string:example_id> or /api/v2/styles/image "
            "or /api/v2/styles/image/<string:style_id>/example ?",
            "rc": "Image styleNotFound",
        },
    )
    assert await call(http, sim, "GET", "v2/styles/image_by_name/missing") == (
        404,
        {
            "message": "Style with ID 'missing' not found. You have requested this URI "
            "[/api/v2/styles/image_by_name/missing] but did you mean "
            "/api/v2/styles/image_by_name/<string:style_name> or "
            "/api/v2/styles/text_by_name/<string:style_name> or "
            "/api/v2/styles/image/<string:style_id>/example/<string:example_id> ?",
            "rc": "StyleNotFound",
        },
    )
    status, wrong = await call(http, sim, "GET", f"v2/styles/text/{first['id']}")
    assert status == 400
    assert wrong["rc"] == "StyleGetMistmatch"
    _, texts = await call(http, sim, "GET", "v2/styles/text")
    assert [s["name"] for s in texts] == ["sim-storyteller"]
    assert "examples" not in texts[0]
    assert (await call(http, sim, "GET", "v2/styles/text_by_name/sim-storyteller"))[0] == 200


async def test_a_style_replaces_prompt_models_and_params(http: aiohttp.ClientSession, sim: Simulator) -> None:
    body = {"prompt": "a cat ### blurry", "style": "sim-sketch", "params": {"n": 2, "width": 1024}}
    gen_id = await submit(http, sim, body)
    record = sim.state.requests[gen_id]
    assert record.prompt == "pencil sketch of a cat ### blurry"
    assert record.models == ["Deliberate"]
    assert (record.params["n"], record.params["width"], record.params["steps"]) == (2, 768, 20)
    status, answer = await call(
        http, sim, "POST", "v2/generate/async", json={"prompt": "x", "style": "nope"}, headers=ALICE
    )
    assert (status, answer["rc"]) == (404, "StyleNotFound")
    # The server's rules: without "###" in the template the negative part gets it; text styles
    # fill {p} only, with no "###" split.
    plain = await submit(http, sim, {"prompt": "a cat", "style": "sim-photoreal"})
    assert sim.state.requests[plain].prompt == "a cat, photorealistic, sharp focus"
    styled = {"prompt": "a cat ### dog", "style": "sim-storyteller"}
    status, text = await call(http, sim, "POST", "v2/generate/text/async", json=styled, headers=ALICE)
    assert status == 202
    assert sim.state.requests[text["id"]].prompt == "Tell a short story about a cat ### dog"


async def test_only_a_service_account_may_send_proxied_account(
    http: aiohttp.ClientSession, sim: Simulator
) -> None:
    body = {"prompt": "a cat", "proxied_account": "discord:1234"}
    status, answer = await call(http, sim, "POST", "v2/generate/async", json=body, headers=ALICE)
    assert (status, answer["rc"]) == (400, "OnlyServiceAccountProxy")
    assert answer["message"] == "Only service accounts can provide a proxied_account value."

    sim.state.add_user(SimUser("studio", 60, "sim-studio-key-0000001", kudos=100.0, service=True))
    status, answer = await call(
        http,
        sim,
        "POST",
        "v2/generate/async",
        json=body,
        headers={**ALICE, "apikey": "sim-studio-key-0000001"},
    )
    assert status == 202
    assert sim.state.requests[answer["id"]].proxied_account == "discord:1234"
    _, found = await call(http, sim, "GET", "v2/find_user", headers={"apikey": "sim-studio-key-0000001"})
    assert found["service"] is True


async def test_unknown_routes_answer_an_html_page_and_wrong_methods_json(
    http: aiohttp.ClientSession, sim: Simulator
) -> None:
    # As the real server (Werkzeug's page for a URL without a route; Flask-RESTX's JSON for a
    # route without that method).
    async with http.get(sim.url("v2/no/such/thing")) as response:
        assert (response.status, response.content_type) == (404, "text/html")
        assert "<title>404 Not Found</title>" in await response.text()
    status, answer = await call(http, sim, "PUT", "v2/status/heartbeat")
    assert (status, answer) == (405, {"message": "The method is not allowed for the requested URL."})


# -- generation behaviour ---------------------------------------------------------------------------


async def test_effective_defaults_and_kudos_charged_per_image(
    http: aiohttp.ClientSession, sim: Simulator
) -> None:
    status, answer = await call(
        http, sim, "POST", "v2/generate/async", json={"prompt": "defaults", "params": {"n": 2}}, headers=ALICE
    )
    assert status == 202
    assert answer["kudos"] == 8.0  # round(7.61): one image, as the real server shows it
    record = sim.state.requests[answer["id"]]
    assert record.models == ["stable_diffusion"]
    assert (record.nsfw, record.censor_nsfw, record.r2) == (True, True, True)
    expected = {
        "n": 2,
        "steps": 30,
        "width": 512,
        "height": 512,
        "sampler_name": "k_euler_a",
        "cfg_scale": 5.0,
        "karras": True,
    }
    assert {key: record.params[key] for key in expected} == expected
    done = await poll(http, sim, f"v2/generate/check/{answer['id']}", lambda c: c["done"])
    # As the real server charges: the horde tax at submit (3), then each image's 7.61 + 1 burn,
    # kept in whole kudos: 3 → 12 (11.61) → 21 (20.61).
    assert done["kudos"] == 21.0
    assert done["finished"] == 2
    assert _kudos(sim, ALICE) == 5000.0 - 21.0


async def test_dry_run_price_follows_the_documented_formula(
    http: aiohttp.ClientSession, sim: Simulator
) -> None:
    async def price(params: dict[str, Any], models: list[str] | None = None) -> float:
        body: dict[str, Any] = {"prompt": "x", "dry_run": True, "params": params}
        if models is not None:
            body["models"] = models
        _, answer = await call(http, sim, "POST", "v2/generate/async", json=body, headers=ALICE)
        return float(answer["kudos"])

    # What AI-Horde 5.1.5 answered for the same dry runs (tests/conformance checks it live).
    assert await price({}) == 10.0  # (7.61 + 1) · 1 + 1
    assert await price({"steps": 10}) == 6.0
    assert await price({"n": 2}) == 18.0
    assert await price({"width": 768, "height": 512, "steps": 25}) == 10.0
    assert await price({"width": 1024, "height": 1024}) == 23.0
    assert await price({"post_processing": ["RealESRGAN_x4plus"]}) == 13.0
    assert await price({"loras": [{"name": "123"}]}) == 13.0  # + 3 per LoRa
    assert await price({}, models=["AlbedoBase XL (SDXL)"]) == 18.0  # SDXL counts double
    assert await price({"width": 1024, "height": 1024}, models=["AlbedoBase XL (SDXL)"]) == 45.0
    assert sim.state.requests == {}


async def test_kudos_upfront_rules(http: aiohttp.ClientSession, sim: Simulator) -> None:
    async def post(params: dict[str, Any], headers: dict[str, str], **extra: Any) -> tuple[int, Any]:
        body = {"prompt": "x", "params": params, **extra}
        return await call(http, sim, "POST", "v2/generate/async", json=body, headers=headers)

    assert (await post({"steps": 41}, ANON))[1]["rc"] == "KudosUpfront"
    assert (await post({"steps": 40}, ANON))[0] == 202
    assert (await post({"steps": 21, "sampler_name": "k_heun"}, ANON))[0] == 403  # counts double
    assert (await post({"steps": 11, "sampler_name": "lcm"}, ANON))[0] == 403
    assert (await post({}, ANON, slow_workers=False))[0] == 403
    assert (await post({"width": 1088, "height": 1024}, ANON))[0] == 403
    assert (await post({"width": 2048, "height": 2048}, BOB))[0] == 403  # 372 kudos > 100
    assert (await post({"width": 2048, "height": 2048}, ALICE))[0] == 202  # alice holds 5000
    status, answer = await post({"width": 2048, "height": 2048, "steps": 80}, ANON, allow_downgrade=True)
    assert status == 202
    params = sim.state.requests[answer["id"]].params
    assert params["width"] * params["height"] <= 1024 * 1024
    assert params["steps"] == 40
    dry = await post({"width": 2048, "height": 2048}, ANON, dry_run=True)
    assert dry[0] == 403  # a dry run goes through the same validation


async def test_too_many_prompts(http: aiohttp.ClientSession) -> None:
    async with run_simulator(fast(served_image_models=())) as sim:
        await submit(http, sim, {"prompt": "x", "params": {"n": 2}}, POOR)
        status, answer = await call(
            http, sim, "POST", "v2/generate/async", json={"prompt": "y"}, headers=POOR
        )
        assert status == 429
        assert answer == {
            "message": "Parallel requests (3) exceeded user limit (2). "
            "Please try again later or request to increase your concurrency.",
            "rc": "TooManyPrompts",
        }
        text = await call(http, sim, "POST", "v2/generate/text/async", json={"prompt": "y"}, headers=POOR)
        assert text[0] == 202  # texts are counted apart from images
        first = next(iter(sim.state.requests))
        await call(http, sim, "DELETE", f"v2/generate/status/{first}")
        assert (await call(http, sim, "POST", "v2/generate/async", json={"prompt": "z"}, headers=POOR))[
            0
        ] == 202


@pytest.mark.parametrize(
    ("params", "field", "reason"),
    [
        ({"n": 21}, "params.n", "21 is greater than the maximum of 20"),
        ({"n": 0}, "params.n", "0 is less than the minimum of 1"),
        ({"steps": 0}, "params.steps", "0 is less than the minimum of 1"),
        ({"height": 3136}, "params.height", "3136 is greater than the maximum of 3072"),
        ({"width": 0}, "params.width", "0 is less than the minimum of 64"),
        ({"width": 96}, "params.width", "96 is not a multiple of 64"),
        ({"cfg_scale": 101}, "params.cfg_scale", "101 is greater than the maximum of 100"),
        ({"seed": 42}, "params.seed", "42 is not of type 'string'"),
        ({"karras": "yes"}, "params.karras", "'yes' is not of type 'boolean'"),
        ({"sampler_name": "k_nope"}, "params.sampler_name", "'k_nope' is not one of"),
        ({"post_processing": ["Magic"]}, "params.post_processing.0", "'Magic' is not one of"),
        (
            {"post_processing": ["GFPGAN", "GFPGAN"]},
            "params.post_processing",
            "['GFPGAN', 'GFPGAN'] has non-unique elements",
        ),
        ({"loras": [{"model": 1}]}, "params.loras.0.name", "'name' is a required property"),
        (
            {"loras": [{"name": "x", "model": 6}]},
            "params.loras.0.model",
            "6 is greater than the maximum of 5.0",
        ),
    ],
)
async def test_schema_errors_have_no_rc(
    http: aiohttp.ClientSession, sim: Simulator, params: dict[str, Any], field: str, reason: str
) -> None:
    status, answer = await call(
        http, sim, "POST", "v2/generate/async", json={"prompt": "x", "params": params}, headers=ALICE
    )
    assert status == 400
    assert set(answer) == {"errors", "message"}
    assert answer["message"] == "Input payload validation failed"
    assert answer["errors"][field].startswith(reason)


async def test_missing_apikey_is_a_reqparse_error(http: aiohttp.ClientSession, sim: Simulator) -> None:
    status, answer = await call(http, sim, "POST", "v2/generate/async", json={"prompt": "x"})
    assert (status, answer) == (
        400,
        {
            "errors": {
                "apikey": "The API Key corresponding to a registered user. "
                "Missing required parameter in the HTTP headers"
            },
            "message": "Input payload validation failed",
        },
    )
    status, answer = await call(http, sim, "POST", "v2/interrogate/async", json={"source_image": "x"})
    assert answer["errors"] == {"apikey": "A User API key Missing required parameter in the HTTP headers"}
    status, answer = await call(http, sim, "POST", "v2/generate/text/async", json={}, headers=ALICE)
    assert answer["errors"] == {
        "prompt": "The prompt to generate from. Missing required parameter in the JSON body"
    }


@pytest.mark.parametrize(
    ("body", "status", "rc"),
    [
        ({"params": {"cfg_scale": 7.555}}, 400, "BadCFGDecimals"),
        (
            {"params": {"post_processing": ["RealESRGAN_x4plus", "RealESRGAN_x2plus"]}},
            400,
            "TooManyUpscalers",
        ),
        ({"params": {"loras": [{"name": str(i)} for i in range(6)]}}, 400, "TooManyLoras"),
        ({"params": {"loras": [{"name": "abc", "is_version": True}]}}, 400, "BadLoraVersion"),
        ({"params": {"tis": [{"name": str(i)} for i in range(21)]}}, 400, "TooManyTIs"),
        ({"params": {"control_type": "canny"}}, 400, "ControlNetSourceMissing"),
        ({"models": ["GFPGAN"]}, 400, "UnexpectedModelName"),
        ({"source_mask": "abc"}, 400, "SourceMaskUnnecessary"),
        ({"source_image": "bm90IGFuIGltYWdl"}, 400, "ImageValidationFailed"),
        ({"extra_source_images": [{"image": "x"}]}, 400, "InvalidExtraSourceImages"),
        ({"workers": ["not-a-worker"]}, 404, "WorkerNotFound"),
        ({"webhook": "http://example.com/hook"}, 400, "BadRequest"),
        ({"disable_batching": True, "params": {"n": 2}}, 403, "RequiresTrust"),
    ],
)
async def test_rc_errors(
    http: aiohttp.ClientSession, sim: Simulator, body: dict[str, Any], status: int, rc: str
) -> None:
    got, answer = await call(
        http, sim, "POST", "v2/generate/async", json={"prompt": "x", **body}, headers=BOB
    )
    assert (got, answer["rc"]) == (status, rc)
    assert set(answer) == {"message", "rc"}


async def test_banned_client_agent(http: aiohttp.ClientSession, sim: Simulator) -> None:
    headers = {**ALICE, "Client-Agent": "My-Project:v0.0.1:My-Contact"}
    status, answer = await call(http, sim, "POST", "v2/generate/async", json={"prompt": "x"}, headers=headers)
    assert (status, answer["rc"]) == (403, "BannedClientAgent")


async def test_worker_whitelist_limits_who_serves(http: aiohttp.ClientSession, sim: Simulator) -> None:
    dreamer = next(w for w in sim.state.workers if w.name == "Sim Dreamer 2")
    gen_id = await submit(http, sim, {"prompt": "x", "workers": [dreamer.id], "params": {"n": 3}})
    await poll(http, sim, f"v2/generate/check/{gen_id}", lambda c: c["done"])
    _, full = await call(http, sim, "GET", f"v2/generate/status/{gen_id}")
    assert {g["worker_name"] for g in full["generations"]} == {"Sim Dreamer 2"}
    blacklisted = await submit(
        http, sim, {"prompt": "x", "workers": [w.id for w in sim.state.workers], "worker_blacklist": True}
    )
    _, check = await call(http, sim, "GET", f"v2/generate/check/{blacklisted}")
    assert check["is_possible"] is False


async def test_images_appear_one_by_one_and_the_queue_is_meaningful(http: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    config = SimulatorConfig(
        clock=clock,
        knobs=Knobs(
            speed=10.0,
            worker_threads=1,
            queue_refresh=0,
            check_cache=0,
            rate_limits=RateLimits(enabled=False),
        ),
    )
    async with run_simulator(config) as sim:
        first = await submit(http, sim, {"prompt": "first", "params": {"n": 2}})
        second = await submit(http, sim, {"prompt": "second"})
        check_a = await poll(http, sim, f"v2/generate/check/{first}", lambda c: c["processing"] == 1)
        _, check_b = await call(http, sim, "GET", f"v2/generate/check/{second}")
        # As the real server: wait_time is the queued jobs up to and including the request over
        # min(threads, those jobs), plus what is left of its own running job. Other requests'
        # running jobs are not counted, so the second waits "20 s" (one job ahead, one its own).
        assert (check_a["waiting"], check_a["queue_position"], check_a["wait_time"]) == (1, 1, 20)
        assert (check_b["waiting"], check_b["queue_position"], check_b["wait_time"]) == (1, 2, 20)

        clock.advance(10)
        # The worker thread picks up the second image on its next tick, a moment after the first ends.
        check_a = await poll(
            http, sim, f"v2/generate/check/{first}", lambda c: (c["finished"], c["processing"]) == (1, 1)
        )
        assert (check_a["processing"], check_a["waiting"], check_a["queue_position"], check_a["done"]) == (
            1,
            0,
            0,
            False,
        )
        assert check_a["wait_time"] == 10
        # The horde tax at submit (3), then one image at 512x512, 30 steps (7.61 + 1 burn): 11.61, kept whole.
        assert check_a["kudos"] == 12.0
        _, partial = await call(http, sim, "GET", f"v2/generate/status/{first}")
        assert len(partial["generations"]) == 1
        _, check_b = await call(http, sim, "GET", f"v2/generate/check/{second}")
        assert (check_b["queue_position"], check_b["wait_time"]) == (1, 10)

        clock.advance(10)
        await poll(http, sim, f"v2/generate/check/{first}", lambda c: c["done"])
        clock.advance(10)
        await poll(http, sim, f"v2/generate/check/{second}", lambda c: c["done"])


async def test_parallel_threads_process_n_images_at_once(http: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    knobs = Knobs(speed=5.0, worker_threads=3, rate_limits=RateLimits(enabled=False))
    async with run_simulator(SimulatorConfig(clock=clock, knobs=knobs)) as sim:
        gen_id = await submit(http, sim, {"prompt": "x", "params": {"n": 3}})
        await poll(http, sim, f"v2/generate/check/{gen_id}", lambda c: c["processing"] == 3)
        clock.advance(5)
        await poll(http, sim, f"v2/generate/check/{gen_id}", lambda c: c["finished"] == 3 and c["done"])


async def test_worker_delay_keeps_jobs_waiting(http: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    knobs = Knobs(speed=1.0, worker_delay=3.0, rate_limits=RateLimits(enabled=False))
    async with run_simulator(SimulatorConfig(clock=clock, knobs=knobs)) as sim:
        gen_id = await submit(http, sim, {"prompt": "x"})
        await asyncio.sleep(0.05)
        _, check = await call(http, sim, "GET", f"v2/generate/check/{gen_id}")
        # The server's estimate is one job's duration while a request waits behind fewer jobs than
        # there are threads; it knows nothing of how long workers take to pick a job up.
        assert (check["waiting"], check["processing"], check["wait_time"]) == (1, 0, 1)
        clock.advance(3)
        await poll(http, sim, f"v2/generate/check/{gen_id}", lambda c: c["processing"] == 1)
        clock.advance(1)
        await poll(http, sim, f"v2/generate/check/{gen_id}", lambda c: c["done"])


async def test_speed_range_is_drawn_with_the_seeded_rng(http: aiohttp.ClientSession) -> None:
    durations = []
    for _ in range(2):
        clock = ManualClock()
        knobs = Knobs(speed=(2.0, 9.0), worker_threads=4, rate_limits=RateLimits(enabled=False))
        async with run_simulator(SimulatorConfig(clock=clock, knobs=knobs, seed=7)) as sim:
            gen_id = await submit(http, sim, {"prompt": "x", "params": {"n": 4}})
            await poll(http, sim, f"v2/generate/check/{gen_id}", lambda c: c["processing"] == 4)
            jobs = sim.state.requests[gen_id].processing
            durations.append([round(job.due - job.started, 6) for job in jobs])
    assert durations[0] == durations[1]
    assert all(2.0 <= d <= 9.0 for d in durations[0])
    assert len(set(durations[0])) == 4


async def test_censoring(http: aiohttp.ClientSession) -> None:
    async with run_simulator(fast(csam_words=("forbidden",))) as sim:
        sfw = await submit(http, sim, {"prompt": "please censor-me", "nsfw": False})
        allowed = await submit(http, sim, {"prompt": "please censor-me"})
        csam = await submit(http, sim, {"prompt": "forbidden thing"})
        results = {}
        for gen_id in (sfw, allowed, csam):
            await poll(http, sim, f"v2/generate/check/{gen_id}", lambda c: c["done"])
            _, full = await call(http, sim, "GET", f"v2/generate/status/{gen_id}")
            results[gen_id] = full["generations"][0]
        assert results[sfw]["censored"] is True
        assert results[sfw]["gen_metadata"] == [{"type": "censorship", "value": "nsfw"}]
        assert results[sfw]["state"] == "ok"
        assert results[allowed]["censored"] is False
        assert results[allowed]["gen_metadata"] == []
        assert results[csam]["gen_metadata"] == [{"type": "censorship", "value": "csam"}]
        async with http.get(results[sfw]["img"]) as response:
            placeholder = decode_webp(await response.read()).convert("RGB")
        assert placeholder.getpixel((0, 0)) == (0, 0, 0)

        sim.state.knobs.censor_probability = 1.0
        by_chance = await submit(http, sim, {"prompt": "harmless", "nsfw": False})
        await poll(http, sim, f"v2/generate/check/{by_chance}", lambda c: c["done"])
        _, full = await call(http, sim, "GET", f"v2/generate/status/{by_chance}")
        assert full["generations"][0]["censored"] is True


async def test_delete_returns_partial_results_and_lets_in_flight_jobs_finish(
    http: aiohttp.ClientSession,
) -> None:
    clock = ManualClock()
    knobs = Knobs(speed=10.0, worker_threads=1, check_cache=0, rate_limits=RateLimits(enabled=False))
    async with run_simulator(SimulatorConfig(clock=clock, knobs=knobs)) as sim:
        gen_id = await submit(http, sim, {"prompt": "x", "params": {"n": 3, "steps": 10}})
        await poll(http, sim, f"v2/generate/check/{gen_id}", lambda c: c["processing"] == 1)
        clock.advance(10)
        await poll(
            http, sim, f"v2/generate/check/{gen_id}", lambda c: c["finished"] == 1 and c["processing"] == 1
        )
        status, deleted = await call(http, sim, "DELETE", f"v2/generate/status/{gen_id}")
        assert status == 200
        assert len(deleted["generations"]) == 1
        assert (deleted["waiting"], deleted["processing"], deleted["done"]) == (1, 1, False)
        # As the real server: the job still on a worker keeps the request open, nothing more is
        # handed out, and once that job is delivered it is done, with the image, and charged.
        _, check = await call(http, sim, "GET", f"v2/generate/check/{gen_id}")
        assert (check["waiting"], check["processing"], check["done"]) == (0, 1, False)
        assert check["kudos"] == 8.0  # tax 3 + one image at 10 steps (4.26 + 1)
        clock.advance(10)
        after = await poll(http, sim, f"v2/generate/check/{gen_id}", lambda c: c["done"])
        assert (after["finished"], after["processing"], after["waiting"]) == (2, 0, 0)
        assert after["kudos"] == 13.0
        _, full = await call(http, sim, "GET", f"v2/generate/status/{gen_id}")
        assert len(full["generations"]) == 2
        assert sim.counters.deletes(gen_id) == 1
        assert sim.state.requests[gen_id].processing == []


async def test_text_generation(http: aiohttp.ClientSession, sim: Simulator) -> None:
    body = {"prompt": "Tell me", "params": {"max_length": 40, "n": 2}, "models": ["koboldcpp/SimLlama-8B"]}
    status, answer = await call(http, sim, "POST", "v2/generate/text/async", json=body, headers=ALICE)
    assert status == 202
    assert answer["kudos"] == 0.0  # the real server never prices a text request in its 202
    done = await poll(http, sim, f"v2/generate/text/status/{answer['id']}", lambda s: s["done"])
    assert done["finished"] == 2
    # The tax (1), then per text its 40 tokens (capped at max_length) × 8B / 125 × the prompt's
    # context multiplier (1.21 for 20 tokens) = 3.10, + 1 burn: 1 → 5 → 9 in whole kudos.
    assert done["kudos"] == 9.0
    assert _kudos(sim, ALICE) == 5000.0 - 9.0
    for generation in done["generations"]:
        assert generation["text"].startswith(" ")
        assert len(generation["text"].split()) == 30
        assert generation["model"] == "koboldcpp/SimLlama-8B"
        assert generation["worker_name"] == "Sim Scribe"
    stop = {"prompt": "Tell me", "params": {"max_length": 200, "stop_sequence": ["the"]}}
    _, answer = await call(http, sim, "POST", "v2/generate/text/async", json=stop, headers=ALICE)
    done = await poll(http, sim, f"v2/generate/text/status/{answer['id']}", lambda s: s["done"])
    assert done["generations"][0]["text"].endswith("the")


async def test_text_validation(http: aiohttp.ClientSession, sim: Simulator) -> None:
    async def post(body: dict[str, Any], headers: dict[str, str] = ALICE) -> tuple[int, Any]:
        return await call(http, sim, "POST", "v2/generate/text/async", json=body, headers=headers)

    assert await post({"prompt": ""}) == (
        400,
        {"message": "You cannot specify an empty prompt.", "rc": "MissingPrompt"},
    )
    assert (await post({"prompt": "x", "params": {"max_length": 512, "max_context_length": 256}}))[1][
        "rc"
    ] == "TokenOverflow"
    assert (await post({"prompt": "x", "params": {"sampler_order": [1, 2]}}))[1][
        "rc"
    ] == "MissingFullSamplerOrder"
    assert (await post({"prompt": "x", "params": {"max_length": 8}}))[1]["errors"] == {
        "params.max_length": "8 is less than the minimum of 16"
    }
    upfront = await post({"prompt": "x", "params": {"max_length": 600}}, ANON)
    assert upfront[0] == 403
    assert upfront[1]["rc"] == "KudosUpfront"
    assert "over 512 tokens" in upfront[1]["message"]
    assert "requires 20.0 kudos" in upfront[1]["message"]
    # What AI-Horde 5.1.5 answered: (max_length · 13 · context multiplier / 100 + 1) · n + 1
    for params, kudos in (({}, 37.0), ({"max_length": 200}, 90.0), ({"n": 2}, 74.0)):
        status, dry = await post({"prompt": "x", "dry_run": True, "params": params})
        assert (status, dry) == (200, {"kudos": kudos})


async def test_alchemy_results(http: aiohttp.ClientSession, sim: Simulator) -> None:
    forms = [
        {"name": n} for n in ("caption", "interrogation", "nsfw", "RealESRGAN_x2plus", "palette", "caption")
    ]
    body = {"source_image": _b64_png(96, 64, (30, 60, 220)), "forms": forms}
    _, answer = await call(http, sim, "POST", "v2/interrogate/async", json=body, headers=ALICE)
    done = await poll(http, sim, f"v2/interrogate/status/{answer['id']}", lambda s: s["state"] == "done")
    results = {form["form"]: form["result"] for form in done["forms"]}
    assert len(done["forms"]) == 5  # duplicates are ignored
    assert results["caption"] == {"caption": "a landscape blue image, 96x64 pixels"}
    assert results["nsfw"] == {"nsfw": False}
    tags = results["interrogation"]["interrogation"]["tags"]
    assert tags[0] == {"text": "blue", "confidence": 0.9}
    assert set(results["interrogation"]["interrogation"]) == {
        "tags", "sites", "artists", "flavors", "mediums", "movements", "techniques",
    }  # fmt: skip
    assert results["palette"]["palette"][0] == "#1e3cdc"
    url = results["RealESRGAN_x2plus"]["RealESRGAN_x2plus"]
    assert url.startswith(f"{sim.root_url}_sim/r2/")
    async with http.get(url) as response:
        assert decode_webp(await response.read()).size == (192, 128)
    # caption 1, interrogation 3, nsfw 1, upscaler 3 per tile, palette 1; plus a burn of 2 per form
    assert _kudos(sim, ALICE) == 5000.0 - (1 + 3 + 1 + 3 + 1) - 5 * 2


async def test_alchemy_accepts_its_own_image_urls(http: aiohttp.ClientSession, sim: Simulator) -> None:
    gen_id = await submit(http, sim, {"prompt": "x", "params": {"width": 128, "height": 256}})
    await poll(http, sim, f"v2/generate/check/{gen_id}", lambda c: c["done"])
    _, full = await call(http, sim, "GET", f"v2/generate/status/{gen_id}")
    body = {"source_image": full["generations"][0]["img"], "forms": [{"name": "caption"}]}
    _, answer = await call(http, sim, "POST", "v2/interrogate/async", json=body, headers=ALICE)
    done = await poll(http, sim, f"v2/interrogate/status/{answer['id']}", lambda s: s["state"] == "done")
    caption = done["forms"][0]["result"]["caption"]
    assert caption.startswith("a portrait ")
    assert caption.endswith("image, 128x256 pixels")


async def test_alchemy_states_and_cancel(http: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    knobs = Knobs(speed=5.0, worker_threads=1, rate_limits=RateLimits(enabled=False))
    async with run_simulator(SimulatorConfig(clock=clock, knobs=knobs)) as sim:
        body = {
            "source_image": _b64_png(32, 32, (0, 200, 0)),
            "forms": [{"name": "caption"}, {"name": "nsfw"}],
        }
        _, answer = await call(http, sim, "POST", "v2/interrogate/async", json=body, headers=ALICE)
        path = f"v2/interrogate/status/{answer['id']}"
        processing = await poll(http, sim, path, lambda s: s["state"] == "processing")
        assert [f["state"] for f in processing["forms"]] == ["processing", "waiting"]
        assert processing["forms"][0]["result"] is None
        clock.advance(5)
        await poll(http, sim, path, lambda s: s["forms"][0]["state"] == "done")
        status, cancelled = await call(http, sim, "DELETE", path)
        assert status == 200
        assert cancelled["state"] == "partial"
        assert [(f["state"], f["result"] is None) for f in cancelled["forms"]] == [
            ("done", False),
            ("cancelled", True),
        ]
        clock.advance(5)
        await asyncio.sleep(0.05)
        _, later = await call(http, sim, "GET", path)
        assert later == cancelled


async def test_alchemy_errors(http: aiohttp.ClientSession, sim: Simulator) -> None:
    async def post(body: dict[str, Any], headers: dict[str, str] = ALICE) -> tuple[int, Any]:
        return await call(http, sim, "POST", "v2/interrogate/async", json=body, headers=headers)

    status, answer = await post({"source_image": "bm90IGFuIGltYWdl", "forms": [{"name": "caption"}]})
    assert (status, answer["rc"]) == (400, "ImageValidationFailed")
    assert answer["message"].startswith("Image validation failed. ")
    huge = _b64_png(8192, 8200, (0, 0, 0), mode="1")
    status, answer = await post({"source_image": huge, "forms": [{"name": "caption"}]})
    assert (status, answer["rc"]) == (400, "SourceImageResolutionExceeded")
    assert "(272 tiles)" in answer["message"]
    status, answer = await post({"forms": [{"name": "caption"}]})
    assert answer["errors"] == {"source_image": "Missing required parameter in the JSON body"}
    status, answer = await post({"source_image": "x"}, {"apikey": "nobody"})
    assert (status, answer["rc"]) == (401, "InvalidAPIKey")
    status, answer = await post(
        {"source_image": _b64_png(8, 8, (1, 2, 3)), "forms": [{"name": "caption"}] * 21}, POOR
    )
    assert (status, answer["rc"]) == (429, "TooManyPrompts")
    status, answer = await post({"source_image": f"{sim.root_url}_sim/r2/unknown.webp"})
    assert (status, answer["rc"]) == (400, "ImageValidationFailed")


def _kudos(sim: Simulator, headers: dict[str, str]) -> float:
    user = sim.state.user_by_key(headers["apikey"])
    assert user is not None
    return user.kudos


def _b64_png(width: int, height: int, colour: tuple[int, int, int], mode: str = "RGB") -> str:
    buffer = io.BytesIO()
    PIL.Image.new(mode, (width, height), colour if mode == "RGB" else 0).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


async def test_a_text_style_is_applied(http: aiohttp.ClientSession, sim: Simulator) -> None:
    body = {"prompt": "a dragon", "style": "sim-storyteller", "params": {"n": 2}}
    status, answer = await call(http, sim, "POST", "v2/generate/text/async", json=body, headers=ALICE)
    assert status == 202
    record = sim.state.requests[answer["id"]]
    assert record.prompt == "Tell a short story about a dragon"
    assert (record.params["max_length"], record.params["n"]) == (120, 2)


@pytest.mark.allow_unhandled_errors
async def test_a_crashing_worker_counts_as_a_faulted_job(
    http: aiohttp.ClientSession,
    sim: Simulator,
    monkeypatch: pytest.MonkeyPatch,
    error_logs: list[logging.LogRecord],
) -> None:
    def broken(*args: object) -> bytes:
        raise RuntimeError("GPU on fire")

    monkeypatch.setattr(_images, "render_generation", broken)
    gen_id = await submit(http, sim, {"prompt": "x"})
    check = await poll(http, sim, f"v2/generate/check/{gen_id}", lambda c: c["done"])
    assert (check["faulted"], check["restarted"], check["finished"]) == (True, 3, 0)
    assert len(error_logs) == 3
    assert all(r.getMessage().startswith("a simulated worker failed to make ") for r in error_logs)
