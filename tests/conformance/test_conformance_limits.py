"""Rate limits as plain users meet them, and what the server caches: both sides alike."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from horde_sides import (
    Exchange,
    Side,
    assert_limit_headers,
    both,
    needs_real_horde,
    sides_fixture,  # noqa: F401 - the fixture `sides`
)

DRY_RUN = {"prompt": "x", "dry_run": True, "params": {"steps": 10}}

pytestmark = needs_real_horde


async def test_a_third_submit_within_a_second_gets_the_servers_429(sides: tuple[Side, Side]) -> None:
    async def burst(side: Side) -> list[Exchange]:
        await asyncio.sleep(1.1)  # a fresh one-second window
        answers = [await side.call("POST", "v2/generate/async", user="bob", json=DRY_RUN) for _ in range(2)]
        await asyncio.sleep(0.55)  # into the window's last half second
        return [*answers, await side.call("POST", "v2/generate/async", user="bob", json=DRY_RUN)]

    real, sim = await both(sides, burst)
    for name, answers in (("real", real), ("sim", sim)):
        assert [a.status for a in answers] == [200, 200, 429], name
        for answer in answers:
            assert_limit_headers(answer, limit=2, window=1, what=name)
        assert [a.header("X-RateLimit-Remaining") for a in answers] == ["1", "0", "0"], name
        refused = answers[-1]
        assert refused.body == {"message": "2 per 1 second"}, name
        # Whole seconds, rounded: 0 in the last half second of the window, which is not over yet.
        assert refused.header("Retry-After") == "0", name


async def test_status_is_refused_after_ten_a_minute_with_the_minute_window(sides: tuple[Side, Side]) -> None:
    path = f"v2/generate/status/{uuid.uuid4()}"

    async def eleven(side: Side) -> list[Exchange]:
        return [await side.call("GET", path) for _ in range(11)]

    real, sim = await both(sides, eleven)
    for name, answers in (("real", real), ("sim", sim)):
        assert [a.status for a in answers] == [404] * 10 + [429], name
        for answer in answers:
            assert_limit_headers(answer, limit=10, window=60, what=name)
        assert [a.header("X-RateLimit-Remaining") for a in answers] == [str(9 - i) for i in range(10)] + ["0"]
        assert answers[-1].body == {"message": "10 per 1 minute"}, name
        assert 55 <= int(str(answers[-1].header("Retry-After"))) <= 60, name


async def test_every_limited_answer_carries_the_limit_headers(sides: tuple[Side, Side]) -> None:
    endpoints: list[tuple[str, dict[str, Any], int, int]] = [
        ("v2/find_user", {"user": "alice"}, 90, 60),
        ("v2/users/1", {}, 60, 60),
        ("v2/status/modes", {}, 30, 60),
        ("v2/status/performance", {}, 90, 60),
        ("v2/status/models", {}, 90, 60),
    ]
    for path, options, limit, window in endpoints:
        real, sim = await both(sides, lambda side, p=path, o=options: side.call("GET", p, **o))
        for name, answer in (("real", real), ("sim", sim)):
            assert answer.status == 200, (name, path, answer.body)
            assert_limit_headers(answer, limit=limit, window=window, what=f"{name} {path}")


async def test_find_user_is_kept_half_a_minute_and_lists_finished_requests(sides: tuple[Side, Side]) -> None:
    await both(sides, lambda side: side.start_worker(1.0))

    async def scenario(side: Side) -> tuple[dict[str, Any], dict[str, Any], str]:
        accepted = await side.submit("image", {"prompt": "listed", "params": {"steps": 10}}, user="alice")
        gen_id = accepted.body["id"]
        for _ in range(30):
            if (await side.call("GET", f"v2/generate/check/{gen_id}")).body["done"]:
                break
            await asyncio.sleep(1.0)
        bob = (await side.call("GET", "v2/find_user", user="bob")).body
        await side.call(
            "POST", "v2/kudos/transfer", user="alice", json={"username": bob["username"], "amount": 1}
        )
        again = (await side.call("GET", "v2/find_user", user="bob")).body
        # Alice's answer is refreshed when its half minute is over: then it lists the request.
        for _ in range(35):
            alice = (await side.call("GET", "v2/find_user", user="alice")).body
            if gen_id in alice.get("active_generations", {}).get("image", []):
                break
            await asyncio.sleep(1.0)
        return {"before": bob["kudos"], "after": again["kudos"]}, alice, gen_id

    real, sim = await both(sides, scenario)
    for name, (kudos, alice, gen_id) in (("real", real), ("sim", sim)):
        assert kudos["after"] == kudos["before"], (name, kudos)  # cached: the transfer does not show yet
        generations = alice["active_generations"]
        assert gen_id in generations["image"], (name, generations)  # finished, still listed
        assert "alchemy" not in generations, (name, generations)
