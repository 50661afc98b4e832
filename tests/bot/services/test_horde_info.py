"""The /horde status, /models and /styles services."""

from __future__ import annotations

from bot.horde import ActiveModel, AIHordeAPIAsyncClientSession, AIHordeAPIAsyncSimpleClient
from bot.horde.consts import MODEL_TYPE
from bot.services.horde_info import ModelSort, fetch_styles, horde_status, models_page, sort_models
from horde_simulator import Simulator


def model(name: str, workers: int, queued: float) -> ActiveModel:
    return ActiveModel.model_validate({"name": name, "count": workers, "queued": queued})


MODELS = [model("b", 3, 10), model("a", 3, 50), model("c", 9, 0), model("d", 1, 99)]


def test_models_sort_by_workers_or_queue() -> None:
    assert [m.name for m in sort_models(MODELS, ModelSort.workers)] == ["c", "a", "b", "d"]
    assert [m.name for m in sort_models(MODELS, ModelSort.queue)] == ["d", "a", "b", "c"]


def test_models_pages_are_clamped() -> None:
    page = models_page(MODELS, sort=ModelSort.workers, page=1, page_size=3)
    assert [m.name for m in page.items] == ["d"]
    assert (page.page, page.pages, page.total, page.has_previous, page.has_next) == (1, 2, 4, True, False)
    assert models_page(MODELS, sort=ModelSort.workers, page=9, page_size=3).page == 1
    assert models_page([], sort=ModelSort.queue, page=-1).pages == 1


async def test_status_fetches_heartbeat_and_performance(horde_sim: Simulator) -> None:
    horde_sim.state.knobs.heartbeat_message = "DOWN"
    async with AIHordeAPIAsyncClientSession(base_url=horde_sim.base_url) as session:
        status = await horde_status(AIHordeAPIAsyncSimpleClient(session))
        styles = await fetch_styles(AIHordeAPIAsyncSimpleClient(session), MODEL_TYPE.text)
    assert not status.healthy
    assert status.performance.worker_count is not None
    assert isinstance(styles, tuple)
    assert horde_sim.counters.calls("styles_text") == 1
