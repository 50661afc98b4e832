"""/imagine for a model no worker serves: the Horde accepts it (202, ``NoAvailableWorker``) and
would keep it waiting until it expires, 20 minutes on; the member is told plainly instead.

The bot polls the Horde every 30 virtual seconds, so between polls it is parked and an action
returns; ``server.env.advance_time(POLL_S)`` makes it poll once more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from test_imagine_inflight import POLL_S, simcord_bot  # noqa: F401 - a fixture: the bot polls every 30 s
from test_imagine_support import only_job, response_of, until
from test_imagine_support import settings as support_settings  # noqa: F401 - a fixture, used by name

from bot.config import Settings
from bot.services.jobs import CancelReason
from bot.services.jobs.messages import CANCELLED
from bot.storage import JobState
from horde_simulator import Knobs, RateLimits, Simulator, SimulatorConfig

if TYPE_CHECKING:
    from conftest import Server

NO_WORKER_S = 60.0


@pytest.fixture
def horde_sim_config() -> SimulatorConfig:
    # The workers serve only the models they announce (the real Horde's rule).
    return SimulatorConfig(knobs=Knobs(speed=0.05, rate_limits=RateLimits(enabled=False)))


@pytest.fixture
def settings(support_settings: Settings) -> Settings:  # noqa: F811 - wraps the imported fixture
    horde = support_settings.horde.model_copy(update={"no_worker_timeout_s": NO_WORKER_S})
    return support_settings.model_copy(update={"horde": horde})


async def test_a_model_no_worker_serves_is_cancelled_and_the_member_told(
    server: Server, horde_sim: Simulator
) -> None:
    result = await server.alice.slash(server.channel, "imagine", prompt="a fox", model="No Such Model")
    message = response_of(result)
    job = await only_job(server, server.alice)
    assert job.state is JobState.SUBMITTED
    assert "No worker can run this request right now" in message.content

    await server.env.advance_time(POLL_S)  # still nobody to run it, and not long enough yet
    assert (await only_job(server, server.alice)).state is JobState.SUBMITTED
    await server.env.advance_time(POLL_S)

    ended = await only_job(server, server.alice)
    assert ended.state is JobState.CANCELLED
    assert ended.error == CANCELLED[CancelReason.NO_WORKER]
    assert message.content.startswith("🛑 **Cancelled**")
    assert CANCELLED[CancelReason.NO_WORKER] in message.content
    assert horde_sim.counters.deletes(job.horde_id or "") == 1
    assert horde_sim.state.orphans() == {}
    assert server.bot.jobs.active_jobs() == []


async def test_a_served_model_is_not_cancelled(server: Server, horde_sim: Simulator) -> None:
    result = await server.alice.slash(server.channel, "imagine", prompt="a fox", model="Deliberate")
    message = response_of(result)
    job = await only_job(server, server.alice)
    request = horde_sim.state.requests[job.horde_id or ""]
    await until(lambda: request.done)  # the simulated worker, in real time
    await server.env.advance_time(POLL_S)

    assert (await only_job(server, server.alice)).state is JobState.DONE
    assert message.content.startswith("✅ **Done**")
    assert horde_sim.counters.calls("generate_delete") == 0
