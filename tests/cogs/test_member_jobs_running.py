"""/jobs list while a job runs: its queue position, elapsed time and a Cancel button (the slow
polling and manual simulator clock of ``test_imagine_inflight``)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from test_imagine_inflight import (  # noqa: F401 - fixtures are used by name
    POLL_S,
    horde_sim_config,
    sim_clock,
    simcord_bot,
    start,
)
from test_imagine_support import custom_ids, response_of, settings  # noqa: F401

from bot.storage import JobState
from cogs._jobs import ALREADY_FINISHED

if TYPE_CHECKING:
    from conftest import Server


async def test_a_running_job_is_listed_with_its_position_elapsed_time_and_a_cancel_button(
    server: Server,
) -> None:
    _, job = await start(server, prompt="a slow fox")
    await server.env.advance_time(POLL_S)

    listed = response_of(await server.alice.slash(server.channel, "jobs list"))

    description = listed.embeds[0].description or ""
    running = description.split("\n\n")[0].splitlines()
    assert running[0] == "**Running**"
    [line] = running[1:]
    assert line.startswith(f"`{job.id[:8]}` 🎨 a slow fox · 0/1 done, 1 with a worker · ")
    assert re.search(r" · \d+ s$", line)  # the elapsed time
    assert custom_ids(listed) == [f"jobs:cancel:{job.id}"]

    clicked = await server.alice.click(listed, custom_id=f"jobs:cancel:{job.id}")

    assert clicked.followups[0].content.startswith(f"Cancelling `{job.id[:8]}`")
    cancelled = await server.bot.storage.jobs.get(job.id)
    assert cancelled is not None
    assert cancelled.state is JobState.CANCELLED
    listed_again = response_of(await server.alice.slash(server.channel, "jobs list"))
    assert custom_ids(listed_again) == []
    assert "✖️ cancelled" in (listed_again.embeds[0].description or "")


async def test_the_lists_cancel_button_still_answers_after_a_restart(server: Server) -> None:
    _, job = await start(server, prompt="a slow fox")
    listed = response_of(await server.alice.slash(server.channel, "jobs list"))

    await server.restart()  # the shutdown cancels the running job
    clicked = await server.alice.click(listed, custom_id=f"jobs:cancel:{job.id}")

    assert clicked.ephemeral
    assert response_of(clicked).content == ALREADY_FINISHED
