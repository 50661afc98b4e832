"""Resuming the journal after a restart: the bot does it once every extension is loaded (on its
first READY), each kind through the listener factory its own cog registered in ``cog_load``, so
text and alchemy jobs no longer depend on the /imagine extension being there."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from typing import TYPE_CHECKING

import PIL.Image
import pytest
from test_imagine_support import message_edits, response_of

from bot.app import EXTENSIONS
from bot.horde import (
    ANON_API_KEY,
    AIHordeAPIAsyncManualClient,
    AlchemyAsyncRequest,
    AlchemyAsyncResponse,
    BaseAsyncRequest,
    TextGenerateAsyncRequest,
    TextGenerateAsyncResponse,
)
from bot.storage import JobRecord, JobState, new_job_id
from horde_simulator import Knobs, Simulator, SimulatorConfig

if TYPE_CHECKING:
    import simcord
    from conftest import Server

WITHOUT_IMAGINE = tuple(extension for extension in EXTENSIONS if extension != "cogs.imagine")


@pytest.fixture
def horde_sim_config() -> SimulatorConfig:
    return SimulatorConfig(knobs=Knobs(speed=0.05, worker_threads=2))


def png(colour: str) -> bytes:
    out = io.BytesIO()
    PIL.Image.new("RGB", (64, 48), colour).save(out, format="PNG")
    return out.getvalue()


async def crashed_copy(
    server: Server,
    horde_sim: Simulator,
    job: JobRecord,
    request: BaseAsyncRequest,
    response: type[TextGenerateAsyncResponse | AlchemyAsyncResponse],
) -> JobRecord:
    """What a bot killed mid-job leaves behind: a job journalled SUBMITTED into ``job``'s message,
    whose Horde request (``request``) goes on without it."""
    async with AIHordeAPIAsyncManualClient(base_url=horde_sim.base_url) as client:
        accepted = await client.submit_request(request, response)
    assert isinstance(accepted, response)
    horde_id = accepted.id_
    return await server.bot.storage.jobs.create(
        job.model_copy(
            update={
                "id": new_job_id(),
                "state": JobState.SUBMITTED,
                "horde_id": horde_id,
                "result_json": None,
                "error": None,
                "kudos": None,
            }
        )
    )


async def finished(server: Server, job_id: str) -> JobRecord:
    """The job once it ended; the simulator works in real time, the bot in SimCord's."""
    for _ in range(500):
        record = await server.bot.storage.jobs.get(job_id)
        if record is not None and record.state.is_terminal:
            return record
        await server.env.settle()
        await asyncio.sleep(0.01)
    raise AssertionError(f"job {job_id} never ended")


async def only_job(server: Server, member: simcord.MemberActor, kind: str) -> JobRecord:
    [job] = [
        job for job in await server.bot.storage.jobs.list_recent(member.id, limit=10) if job.kind == kind
    ]
    return job


async def test_text_and_alchemy_jobs_resume_without_the_imagine_extension(
    server: Server, horde_sim: Simulator
) -> None:
    written = response_of(await server.alice.slash(server.channel, "write", prompt="Once upon a time"))
    caption = response_of(
        await server.bob.slash(server.channel, "alchemy", image=("red.png", png("red")), operation="caption")
    )
    text_job = await only_job(server, server.alice, "text")
    alchemy_job = await only_job(server, server.bob, "alchemy")
    assert (text_job.state, alchemy_job.state) == (JobState.DONE, JobState.DONE)
    text_request = TextGenerateAsyncRequest.model_validate(
        {**json.loads(text_job.request_json), "prompt": "After the crash", "apikey": ANON_API_KEY}
    )
    alchemy_request = AlchemyAsyncRequest.model_validate(
        {
            **json.loads(alchemy_job.request_json),
            "source_image": base64.b64encode(png("blue")).decode(),
            "apikey": ANON_API_KEY,
        }
    )
    crashed_text = await crashed_copy(server, horde_sim, text_job, text_request, TextGenerateAsyncResponse)
    crashed_alchemy = await crashed_copy(
        server, horde_sim, alchemy_job, alchemy_request, AlchemyAsyncResponse
    )
    edits_before = len(message_edits(server, written.id)), len(message_edits(server, caption.id))

    await server.restart(extensions=WITHOUT_IMAGINE)

    assert "cogs.imagine" not in server.bot.extensions
    text_done = await finished(server, crashed_text.id)
    alchemy_done = await finished(server, crashed_alchemy.id)
    assert (text_done.state, alchemy_done.state) == (JobState.DONE, JobState.DONE)
    # Shown in the original messages by their own kinds' listeners.
    assert len(message_edits(server, written.id)) > edits_before[0]
    assert len(message_edits(server, caption.id)) > edits_before[1]
    [text] = [entry["text"] for entry in json.loads(text_done.result_json or "{}")["texts"]]
    assert written.embeds[0].description == text.strip()
    assert caption.embeds[0].description == "a landscape blue image, 64x48 pixels"
    assert horde_sim.counters.calls("text_async") == 2  # nothing was submitted again


async def test_jobs_of_a_kind_without_its_extension_stay_in_the_journal(
    server: Server, horde_sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    written = response_of(await server.alice.slash(server.channel, "write", prompt="Once upon a time"))
    text_job = await only_job(server, server.alice, "text")
    request = TextGenerateAsyncRequest.model_validate(
        {**json.loads(text_job.request_json), "apikey": ANON_API_KEY}
    )
    crashed = await crashed_copy(server, horde_sim, text_job, request, TextGenerateAsyncResponse)
    edits_before = len(message_edits(server, written.id))

    await server.restart(extensions=tuple(e for e in EXTENSIONS if e != "cogs.write"))
    await server.env.settle()

    # Nobody here can show a text job: it is neither followed nor failed, a process with /write
    # (this one after the next restart) picks it up.
    stored = await server.bot.storage.jobs.get(crashed.id)
    assert stored is not None
    assert stored.state is JobState.SUBMITTED
    assert len(message_edits(server, written.id)) == edits_before
    assert horde_sim.counters.deletes(crashed.horde_id or "") == 0
    assert "Unfinished text job(s) left in the journal" in caplog.text

    await server.restart()

    assert (await finished(server, crashed.id)).state is JobState.DONE
