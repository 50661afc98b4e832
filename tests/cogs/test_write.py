"""/write end to end on SimCord, against the AI Horde simulator.

The bot polls every 30 virtual seconds, so between polls an action returns with the job parked;
``advance_time(POLL_S)`` makes it poll again. Simulated workers take 0.05 s of real time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, NoReturn

import pytest
import simcord
from test_imagine_support import (
    custom_ids,
    message_edits,
    response_of,
)

from bot.app import HordeBot
from bot.config import Settings
from bot.horde import PollPolicy
from bot.services.jobs import JobsShuttingDownError
from bot.services.text.render import TEXT_FILENAME
from bot.storage import JobRecord, JobState
from horde_simulator import Knobs, Simulator, SimulatorConfig

if TYPE_CHECKING:
    from conftest import Server

POLL_S = 30.0
SLOW_POLL = PollPolicy(
    min_interval=POLL_S, max_interval=POLL_S, processing_max_interval=POLL_S, unknown_wait_interval=POLL_S
)


@pytest.fixture
def horde_sim_config() -> SimulatorConfig:
    return SimulatorConfig(knobs=Knobs(speed=0.05, worker_threads=2))


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"defaults": settings.defaults.model_copy(update={"max_text_tokens": 4096})}
    )


@pytest.fixture
async def simcord_bot(settings: Settings) -> AsyncIterator[HordeBot]:
    from conftest import build_bot

    bot = await build_bot(settings, poll_policy=SLOW_POLL)
    try:
        yield bot
    finally:
        await bot.close()


async def jobs_of(server: Server, member: simcord.MemberActor) -> list[JobRecord]:
    return await server.bot.storage.jobs.list_recent(member.id, limit=20)


async def next_poll(server: Server) -> None:
    await asyncio.sleep(0.3)  # the simulated worker finishes in real time
    await server.env.advance_time(POLL_S)


async def write(
    server: Server, member: simcord.MemberActor | None = None, **options: object
) -> simcord.ResponseMessage:
    result = await (member or server.alice).slash(server.channel, "write", **options)
    assert not result.ephemeral
    message = response_of(result)
    await next_poll(server)
    return message


def texts_of(job: JobRecord) -> list[str]:
    return [entry["text"] for entry in json.loads(job.result_json or "{}")["texts"]]


async def test_write_shows_progress_then_the_text_in_an_embed(server: Server) -> None:
    message = await write(server, prompt="Once upon a time @everyone", max_length=32, temperature=0.7)

    [job] = await jobs_of(server, server.alice)
    assert job.kind == "text"
    assert job.state is JobState.DONE
    [text] = texts_of(job)
    assert message.embeds[0].description == text.strip()
    assert "✅ **Done**" in message.content
    assert "Once upon a time" in message.content
    assert custom_ids(message) == [f"write:continue:{job.id}"]
    assert json.loads(job.request_json)["params"] == {"max_length": 32, "temperature": 0.7}
    edits = message_edits(server, message.id)
    assert any(f"write:cancel:{job.id}" in json.dumps(edit.json) for edit in edits)
    assert all(
        edit.json["allowed_mentions"] == {"parse": []}
        for edit in edits
        if edit.json and "content" in edit.json
    )


async def test_a_long_text_is_attached_as_a_txt_file(server: Server) -> None:
    # Over 512 tokens the Horde wants kudos upfront, which the anonymous key never has.
    await server.bot.accounts.login(server.alice.id, "sim-alice-key-00000001")
    message = await write(server, prompt="A long story", max_length=1200)

    [job] = await jobs_of(server, server.alice)
    [text] = texts_of(job)
    assert len(text) > 4000
    [attachment] = message.attachments
    assert attachment.filename == TEXT_FILENAME
    assert (await attachment.read()).decode() == text
    assert "attached" in (message.embeds[0].description or "")


async def test_continue_extends_the_text_with_the_same_settings(server: Server) -> None:
    first = await write(server, prompt="The dragon", max_length=24, stop_sequences="zzz | \\n\\n")
    [job] = await jobs_of(server, server.alice)
    [previous] = texts_of(job)

    clicked = await server.bob.click(first, custom_id=f"write:continue:{job.id}")
    await next_poll(server)

    [continued] = await jobs_of(server, server.bob)
    assert continued.state is JobState.DONE
    body = json.loads(continued.request_json)
    assert body["prompt"] == "The dragon" + previous
    assert body["params"] == {"max_length": 24, "stop_sequence": ["zzz", "\n\n"]}
    assert json.loads(continued.params_json)["continued_from"] == job.id
    message = response_of(clicked)
    assert message.embeds[0].description == ("The dragon" + previous + texts_of(continued)[0]).strip()


async def test_cancel_stops_a_text_job(server: Server, horde_sim: Simulator) -> None:
    horde_sim.state.knobs.worker_threads = 0
    result = await server.alice.slash(server.channel, "write", prompt="Never finished")
    message = response_of(result)
    [job] = await jobs_of(server, server.alice)
    assert job.state is JobState.SUBMITTED

    refused = await server.bob.click(message, custom_id=f"write:cancel:{job.id}")
    assert refused.ephemeral
    assert "Only the member who started" in (response_of(refused).content or "")

    await server.alice.click(message, custom_id=f"write:cancel:{job.id}")
    await server.env.advance_time(POLL_S)

    [ended] = await jobs_of(server, server.alice)
    assert ended.state is JobState.CANCELLED
    assert "🛑 **Cancelled**" in (message.content or "")
    assert horde_sim.counters.calls("text_delete") >= 1


async def test_a_write_that_cannot_start_after_its_public_answer_is_told_privately(
    server: Server, horde_sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def shutting_down(*args: object, **kwargs: object) -> NoReturn:
        raise JobsShuttingDownError()

    monkeypatch.setattr(server.bot.jobs, "start_job", shutting_down)

    result = await server.alice.slash(server.channel, "write", prompt="Once upon a time")

    [answer] = [*([result.response] if result.response else []), *result.followups]
    assert answer.ephemeral
    assert answer.content == JobsShuttingDownError.default_message
    assert server.channel.history(viewer=server.bob) == []
    assert horde_sim.counters.calls("text_async") == 0


async def test_estimate_replies_privately_with_the_cost(server: Server, horde_sim: Simulator) -> None:
    result = await server.alice.slash(
        server.channel, "write", prompt="How much?", max_length=64, estimate=True
    )

    assert result.ephemeral
    assert "kudos" in (response_of(result).content or "")
    assert await jobs_of(server, server.alice) == []


async def test_model_autocomplete_offers_text_models(server: Server) -> None:
    choices = await server.alice.autocomplete(server.channel, "write", "model", "sim")
    assert [choice["value"] for choice in choices] == ["koboldcpp/SimLlama-8B"]


# -- the server's rules ----------------------------------------------------------------------------

SPONSOR_KEY = "sim-alice-key-00000001"


async def config_set(server: Server, setting: str, value: str, **options: object) -> None:
    result = await server.admin.slash(server.channel, "config set", setting=setting, value=value, **options)
    assert result.ephemeral
    assert (response_of(result).content or "").startswith("Changed")


async def refused_write(server: Server, member: simcord.MemberActor, **options: object) -> str:
    result = await member.slash(server.channel, "write", **options)
    assert result.ephemeral
    return response_of(result).content or ""


async def test_a_blocked_channel_refuses_write_and_continue(server: Server, horde_sim: Simulator) -> None:
    first = await write(server, prompt="The dragon", max_length=24)
    [job] = await jobs_of(server, server.alice)
    await config_set(server, "blocked_channels", server.channel.mention)
    submitted = horde_sim.counters.calls("text_async")

    command = await refused_write(server, server.alice, prompt="The dragon")
    clicked = await server.bob.click(first, custom_id=f"write:continue:{job.id}")

    assert command == "Generating images isn't allowed in this channel."
    assert clicked.ephemeral
    assert response_of(clicked).content == command
    assert horde_sim.counters.calls("text_async") == submitted
    assert await jobs_of(server, server.bob) == []


async def test_write_can_be_turned_off_in_one_channel(server: Server, horde_sim: Simulator) -> None:
    await config_set(server, "allowed_commands", "imagine", channel=server.channel)

    assert await refused_write(server, server.alice, prompt="Hi") == "`/write` isn't allowed in this channel."
    assert horde_sim.counters.calls("text_async") == 0


async def test_a_blocked_word_in_the_prompt_is_refused(server: Server, horde_sim: Simulator) -> None:
    await config_set(server, "blocked_words", "gore")

    message = await refused_write(server, server.alice, prompt="A tale of GORE")

    assert message.startswith("The prompt contains “gore”, which this server blocks.")
    assert horde_sim.counters.calls("text_async") == 0


async def test_the_servers_max_text_tokens_caps_the_length_to_write(
    server: Server, horde_sim: Simulator
) -> None:
    # The bot's own default (4096 here) allows it; the server's setting doesn't.
    await config_set(server, "max_text_tokens", "100")

    message = await refused_write(server, server.alice, prompt="Hi", max_length=101)

    assert message == "Max length may be at most 100 tokens on this server."
    assert horde_sim.counters.calls("text_async") == 0
    await write(server, prompt="x" * 300, max_length=100)  # a long prompt is fine: tokens are capped
    [job] = await jobs_of(server, server.alice)
    assert job.state is JobState.DONE


async def test_the_servers_max_prompt_length_caps_the_prompt_but_not_continue(
    server: Server, horde_sim: Simulator
) -> None:
    await config_set(server, "max_prompt_length", "40")

    message = await refused_write(server, server.alice, prompt="x" * 41)

    assert message == "The prompt may have at most 40 characters on this server; it has 41."
    assert horde_sim.counters.calls("text_async") == 0
    first = await write(server, prompt="y" * 40)
    await server.alice.click(first, label="Continue")  # the continued prompt is longer than 40
    await next_poll(server)
    jobs = await jobs_of(server, server.alice)
    assert [job.state for job in jobs] == [JobState.DONE, JobState.DONE]
    assert max(len(json.loads(job.request_json)["prompt"]) for job in jobs) > 40


async def test_without_anonymous_access_a_member_needs_a_key(server: Server, horde_sim: Simulator) -> None:
    await config_set(server, "allow_anonymous", "off")

    message = await refused_write(server, server.bob, prompt="Hi")

    assert "doesn't allow generating with the anonymous key" in message
    assert horde_sim.counters.calls("text_async") == 0


async def test_the_sponsor_key_pays_for_members_without_a_key_and_is_never_shown(
    server: Server, horde_sim: Simulator
) -> None:
    await config_set(server, "sponsor_key", SPONSOR_KEY)
    await config_set(server, "allow_anonymous", "off")

    await write(server, server.bob, prompt="Sponsored words", max_length=24)

    [job] = await jobs_of(server, server.bob)
    assert (job.state, job.key_owner) == (JobState.DONE, "sponsor")
    assert job.horde_id is not None
    assert horde_sim.state.requests[job.horde_id].user.alias == "alice"
    assert not any(SPONSOR_KEY in json.dumps(entry.json) for entry in server.env.http_requests)


# -- styles ------------------------------------------------------------------------------------------


async def test_a_text_style_applies_its_template_model_and_params_and_continue_keeps_them(
    server: Server, horde_sim: Simulator
) -> None:
    choices = await server.alice.autocomplete(server.channel, "write", "style", "story", prompt="x")
    assert [(choice["name"], choice["value"]) for choice in choices] == [
        ("sim-storyteller — koboldcpp/SimLlama-8B", "sim-storyteller")
    ]

    message = await write(server, prompt="a brave fox", style="sim-storyteller", temperature=0.5)

    [job] = await jobs_of(server, server.alice)
    assert job.state is JobState.DONE
    sent = json.loads(job.request_json)
    assert sent["prompt"] == "Tell a short story about a brave fox"
    assert sent["models"] == ["koboldcpp/SimLlama-8B"]
    # The style's max_length; the member's temperature wins over the style's 0.8.
    assert sent["params"] == {"max_length": 120, "temperature": 0.5}
    assert "style sim-storyteller" in message.content
    [text] = texts_of(job)

    await server.alice.click(message, label="Continue")
    await next_poll(server)

    continued, _ = await jobs_of(server, server.alice)
    again = json.loads(continued.request_json)
    # It goes on from the styled prompt, which is not wrapped in the template again.
    assert again["prompt"] == "Tell a short story about a brave fox" + text
    assert again["params"] == {"max_length": 120, "temperature": 0.5}


async def test_the_servers_default_text_style_applies_within_its_limits(server: Server) -> None:
    await config_set(server, "text_style", "sim-storyteller")
    await config_set(server, "max_text_tokens", "100")

    await write(server, prompt="a brave fox")

    [job] = await jobs_of(server, server.alice)
    sent = json.loads(job.request_json)
    assert sent["prompt"] == "Tell a short story about a brave fox"
    assert sent["params"]["max_length"] == 100  # the style's 120, within this server's limit
