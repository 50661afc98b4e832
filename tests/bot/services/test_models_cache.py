"""The cached /v2/status/models list behind the model autocomplete: TTL, single flight, ranking."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from bot.horde import ActiveModel, AIHordeRequestError, RequestErrorResponse
from bot.services.models_cache import MAX_CHOICES, ModelChoice, ModelsCache, model_label, rank_models


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def model(name: str, count: int = 1, jobs: float = 0.0) -> ActiveModel:
    return ActiveModel.model_validate({"name": name, "count": count, "jobs": jobs})


class FakeHorde:
    """Counts fetches; each fetch can be held open with ``gate`` or made to fail."""

    def __init__(self, models: Sequence[ActiveModel]) -> None:
        self.models = list(models)
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.fail = False

    async def fetch(self) -> Sequence[ActiveModel]:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise AIHordeRequestError(RequestErrorResponse(message="down", http_status=503))
        return list(self.models)


MODELS = [model("stable_diffusion", 5, 2), model("Deliberate", 3), model("AlbedoBase XL (SDXL)", 12, 3)]


async def test_the_list_is_kept_for_the_ttl() -> None:
    horde, clock = FakeHorde(MODELS), FakeClock()
    cache = ModelsCache(horde.fetch, ttl_s=60, clock=clock)

    first = await cache.models()
    clock.now += 59.9
    horde.models = [model("new")]
    second = await cache.models()

    assert horde.calls == 1
    assert first == second == tuple(MODELS)


async def test_the_list_is_refreshed_after_the_ttl() -> None:
    horde, clock = FakeHorde(MODELS), FakeClock()
    cache = ModelsCache(horde.fetch, ttl_s=60, clock=clock)
    await cache.models()

    clock.now += 60
    horde.models = [model("new")]

    assert await cache.models() == (model("new"),)
    assert horde.calls == 2


async def test_a_zero_ttl_fetches_every_time() -> None:
    horde = FakeHorde(MODELS)
    cache = ModelsCache(horde.fetch, ttl_s=0, clock=FakeClock())

    await cache.models()
    await cache.models()

    assert horde.calls == 2


async def test_concurrent_callers_share_one_refresh() -> None:
    horde = FakeHorde(MODELS)
    horde.gate = asyncio.Event()
    cache = ModelsCache(horde.fetch, ttl_s=60, clock=FakeClock())

    callers = [asyncio.create_task(cache.models()) for _ in range(5)]
    await asyncio.sleep(0)
    horde.gate.set()
    results = await asyncio.gather(*callers)

    assert horde.calls == 1
    assert all(result == tuple(MODELS) for result in results)


async def test_a_caller_giving_up_does_not_cancel_the_shared_refresh() -> None:
    horde = FakeHorde(MODELS)
    horde.gate = asyncio.Event()
    cache = ModelsCache(horde.fetch, ttl_s=60, clock=FakeClock())

    impatient = asyncio.create_task(cache.models())
    patient = asyncio.create_task(cache.models())
    await asyncio.sleep(0)
    impatient.cancel()
    await asyncio.sleep(0)
    horde.gate.set()

    assert await patient == tuple(MODELS)
    assert impatient.cancelled()
    assert horde.calls == 1


async def test_a_failure_without_a_cached_list_raises_and_the_next_call_retries() -> None:
    horde = FakeHorde(MODELS)
    horde.fail = True
    cache = ModelsCache(horde.fetch, ttl_s=60, clock=FakeClock())

    with pytest.raises(AIHordeRequestError):
        await cache.models()
    horde.fail = False

    assert await cache.models() == tuple(MODELS)
    assert horde.calls == 2


async def test_a_failed_refresh_keeps_serving_the_stale_list(caplog: pytest.LogCaptureFixture) -> None:
    horde, clock = FakeHorde(MODELS), FakeClock()
    cache = ModelsCache(horde.fetch, ttl_s=60, clock=clock)
    await cache.models()
    clock.now += 61
    horde.fail = True

    assert await cache.models() == tuple(MODELS)
    assert "Could not refresh the models list" in caplog.text
    horde.fail = False
    horde.models = [model("new")]
    assert await cache.models() == (model("new"),)


async def test_close_cancels_a_refresh_in_flight() -> None:
    horde = FakeHorde(MODELS)
    horde.gate = asyncio.Event()
    cache = ModelsCache(horde.fetch, ttl_s=60, clock=FakeClock())
    caller = asyncio.create_task(cache.models())
    await asyncio.sleep(0)

    await cache.close()

    with pytest.raises(asyncio.CancelledError):
        await caller
    with pytest.raises(RuntimeError, match="closed"):
        await cache.models()


async def test_suggest_ranks_the_cached_models() -> None:
    cache = ModelsCache(FakeHorde(MODELS).fetch, ttl_s=60, clock=FakeClock())

    assert await cache.suggest("deli") == [
        ModelChoice(name="Deliberate — 3 workers, 0 queued", value="Deliberate")
    ]


def test_the_label_shows_workers_and_queue() -> None:
    assert model_label(model("AlbedoBase XL (SDXL)", 12, 3)) == "AlbedoBase XL (SDXL) — 12 workers, 3 queued"
    assert model_label(model("Deliberate", 1, 0)) == "Deliberate — 1 worker, 0 queued"
    assert model_label(ActiveModel(name="Bare")) == "Bare — 0 workers, 0 queued"


def test_a_long_name_is_cut_in_the_label_but_kept_as_the_value() -> None:
    name = "x" * 95
    [choice] = rank_models([model(name, 2)], "")

    assert choice.value == name
    assert len(choice.name) == 100
    assert choice.name.endswith("… — 2 workers, 0 queued")


def test_a_name_too_long_to_be_a_value_is_left_out() -> None:
    assert rank_models([model("y" * 101)], "") == []


def test_best_matches_first_then_the_busiest() -> None:
    models = [
        model("Anything Diffusion", 9),  # letters in order: a.l.b
        model("my albedo mix", 4),  # word prefix
        model("AlbedoBase XL (SDXL)", 12),  # prefix
        model("albedo", 1),  # exact
        model("Dreamshaper", 50),  # no match
        model("xalbedox", 2),  # substring
        model("Albedo Lite", 20),  # prefix, busier
    ]

    ranked = [choice.value for choice in rank_models(models, " ALBEDO ")]

    assert ranked == ["albedo", "Albedo Lite", "AlbedoBase XL (SDXL)", "my albedo mix", "xalbedox"]


def test_the_letters_in_order_match_last() -> None:
    models = [model("Anything Diffusion", 9), model("stable_diffusion", 1)]

    assert [choice.value for choice in rank_models(models, "anydif")] == ["Anything Diffusion"]
    assert [choice.value for choice in rank_models(models, "diff")] == [
        "Anything Diffusion",
        "stable_diffusion",
    ]


def test_nothing_typed_lists_the_busiest_first_and_at_most_25() -> None:
    models = [model(f"model {i:02}", count=i) for i in range(40)]

    ranked = rank_models(models, "")

    assert len(ranked) == MAX_CHOICES
    assert ranked[0].value == "model 39"
    assert ranked[-1].value == "model 15"
