"""Who may act on whose job, on SimCord against the AI Horde simulator.

- Cancel and Delete (buttons, and the ❌ reaction) are for the member who started the job or a
  member with Manage Messages (``server.moderator``), on image, text and alchemy messages.
- Rerun, Same seed, Edit, Upscale, Continue and the 🔁/🎲 reactions are open to everyone, but they
  run *as the member who acts*: their journal row, their key (or the anonymous one), their limits.
  The owner's key is never used for someone else's job.

Already covered elsewhere: another member can't cancel an image job but a moderator can
(``test_imagine_inflight.py``), Delete for the requester or a moderator (``test_imagine_command.py``),
the owner cancels a text job and another can't (``test_write.py``), ❌ by the requester or not by
another (``test_reactions.py``).
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

import PIL.Image
import pytest
import simcord
from conftest import TEST_POLL_POLICY, build_bot
from test_imagine_support import journal_of, response_of

from bot.app import HordeBot
from bot.config import Settings
from bot.horde import PollPolicy
from bot.storage import JobRecord, JobState
from cogs.accounts import APIKEY_INPUT_ID
from cogs.imagine._views import NEGATIVE_INPUT_ID, PROMPT_INPUT_ID
from horde_simulator import Knobs, Simulator, SimulatorConfig

if TYPE_CHECKING:
    from conftest import Server

ALICE_KEY = "sim-alice-key-00000001"
BOB_KEY = "sim-bob-key-0000000002"
REFUSED = "Only the member who started"


SLOW_POLL = PollPolicy(min_interval=30, max_interval=30, processing_max_interval=30, unknown_wait_interval=30)
"""For jobs that must stay running: the bot parks between polls instead of polling in real time."""


@pytest.fixture
def horde_sim_config() -> SimulatorConfig:
    return SimulatorConfig(knobs=Knobs(speed=0.05, worker_threads=2))


@pytest.fixture
def poll_policy(request: pytest.FixtureRequest) -> PollPolicy:
    return getattr(request, "param", TEST_POLL_POLICY)


@pytest.fixture
async def simcord_bot(settings: Settings, poll_policy: PollPolicy) -> AsyncIterator[HordeBot]:
    bot = await build_bot(settings, poll_policy=poll_policy)
    try:
        yield bot
    finally:
        await bot.close()


async def login(server: Server, member: simcord.MemberActor, key: str) -> None:
    shown = await member.slash(server.channel, "login")
    await member.submit_modal(shown, {APIKEY_INPUT_ID: key})


def png() -> bytes:
    out = io.BytesIO()
    PIL.Image.new("RGB", (64, 64), "red").save(out, format="PNG")
    return out.getvalue()


def horde_user_of(horde_sim: Simulator, job: JobRecord) -> str:
    assert job.horde_id is not None
    record = horde_sim.state.requests.get(job.horde_id) or horde_sim.state.interrogations[job.horde_id]
    return record.user.alias


def bot_messages(server: Server) -> list[int]:
    return [message.id for message in server.channel.history(viewer=server.alice)]


# -- Cancel: image, text, alchemy ------------------------------------------------------------------

Start = Callable[["Server"], Awaitable[simcord.ResponseMessage]]


async def _start_image(server: Server) -> simcord.ResponseMessage:
    return response_of(await server.alice.slash(server.channel, "imagine", prompt="a fox"))


async def _start_text(server: Server) -> simcord.ResponseMessage:
    return response_of(await server.alice.slash(server.channel, "write", prompt="Never finished"))


async def _start_alchemy(server: Server) -> simcord.ResponseMessage:
    result = await server.alice.slash(
        server.channel, "alchemy", image=("cat.png", png()), operation="caption"
    )
    return response_of(result)


STARTS: dict[str, tuple[Start, str]] = {
    "image": (_start_image, "generate_delete"),
    "text": (_start_text, "text_delete"),
    "alchemy": (_start_alchemy, "interrogate_delete"),
}


@pytest.mark.parametrize("poll_policy", [SLOW_POLL], indirect=True)
@pytest.mark.parametrize("kind", list(STARTS))
async def test_only_the_owner_or_a_moderator_cancels_a_running_job(
    server: Server, horde_sim: Simulator, kind: str
) -> None:
    start, delete_endpoint = STARTS[kind]
    horde_sim.state.knobs.worker_threads = 0  # the job waits for a worker for ever
    message = await start(server)
    [job] = await journal_of(server, server.alice)
    assert job.state is JobState.SUBMITTED

    refused = await server.bob.click(message, label="Cancel")

    assert refused.ephemeral
    assert REFUSED in (response_of(refused).content or "")
    assert horde_sim.counters.calls(delete_endpoint) == 0
    assert (await journal_of(server, server.alice))[0].state is JobState.SUBMITTED

    await server.moderator.click(message, label="Cancel")
    await server.env.advance_time(30)  # the next poll records the cancellation

    assert horde_sim.counters.calls(delete_endpoint) >= 1
    [cancelled] = await journal_of(server, server.alice)
    assert cancelled.state is JobState.CANCELLED
    assert await journal_of(server, server.moderator) == []  # the moderator started nothing


# -- Delete: the button and ❌ -----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["button", "reaction"])
async def test_only_the_owner_or_a_moderator_deletes_a_result(server: Server, how: str) -> None:
    message = await _start_image(server)

    if how == "button":
        refused = await server.bob.click(message, label="Delete")
        assert refused.ephemeral
        assert REFUSED in (response_of(refused).content or "")
    else:
        await server.bob.react(message, "❌")
    assert message.id in bot_messages(server)

    if how == "button":
        await server.moderator.click(message, label="Delete")
    else:
        await server.moderator.react(message, "❌")
    assert message.id not in bot_messages(server)


async def test_reactions_on_text_and_alchemy_results_do_nothing(server: Server) -> None:
    # ❌, 🔁 and 🎲 belong to image results; text and alchemy have buttons (and Discord's own Delete).
    for start in (_start_text, _start_alchemy):
        response = await start(server)
        await server.env.advance_time(30)
        assert response.message is not None
        for member in (server.bob, server.moderator):
            for emoji in ("❌", "🔁", "🎲"):
                await member.react(response.message, emoji)
        assert response.id in bot_messages(server)
    assert await journal_of(server, server.bob) == []
    assert await journal_of(server, server.moderator) == []


# -- Rerun, Same seed, Edit, Upscale, Continue, 🔁, 🎲: as the member who acts ----------------------


async def _rerun(server: Server, member: simcord.MemberActor, message: simcord.ResponseMessage) -> None:
    await member.click(message, label="Rerun")


async def _same_seed(server: Server, member: simcord.MemberActor, message: simcord.ResponseMessage) -> None:
    await member.click(message, label="Same seed")


async def _edit(server: Server, member: simcord.MemberActor, message: simcord.ResponseMessage) -> None:
    shown = await member.click(message, label="Edit")
    await member.submit_modal(shown, {PROMPT_INPUT_ID: "a wolf", NEGATIVE_INPUT_ID: ""})


async def _upscale(server: Server, member: simcord.MemberActor, message: simcord.ResponseMessage) -> None:
    await member.click(message, label="U1")


def _react(emoji: str) -> Callable[[Server, simcord.MemberActor, simcord.ResponseMessage], Awaitable[None]]:
    async def react(server: Server, member: simcord.MemberActor, message: simcord.ResponseMessage) -> None:
        assert message.message is not None
        await member.react(message.message, emoji)

    return react


ACTIONS = {
    "Rerun": _rerun,
    "Same seed": _same_seed,
    "Edit": _edit,
    "Upscale": _upscale,
    "🔁": _react("🔁"),
    "🎲": _react("🎲"),
}


@pytest.mark.parametrize("bob_has_a_key", [True, False], ids=["bob-logged-in", "bob-anonymous"])
@pytest.mark.parametrize("action", list(ACTIONS))
async def test_acting_on_someone_elses_image_runs_as_yourself_never_with_their_key(
    server: Server, horde_sim: Simulator, action: str, bob_has_a_key: bool
) -> None:
    await login(server, server.alice, ALICE_KEY)
    if bob_has_a_key:
        await login(server, server.bob, BOB_KEY)
    message = await _start_image(server)
    [original] = await journal_of(server, server.alice)

    await ACTIONS[action](server, server.bob, message)

    assert await journal_of(server, server.alice) == [original]  # nothing more on alice's account
    [job] = await journal_of(server, server.bob)
    assert job.state is JobState.DONE
    assert job.key_owner == ("user" if bob_has_a_key else "anonymous")
    assert horde_user_of(horde_sim, job) == ("bob" if bob_has_a_key else "Anonymous")
    assert job.message_id != original.message_id  # a new message: the original stays alice's


@pytest.mark.parametrize("bob_has_a_key", [True, False], ids=["bob-logged-in", "bob-anonymous"])
async def test_continuing_someone_elses_text_runs_as_yourself_never_with_their_key(
    server: Server, horde_sim: Simulator, bob_has_a_key: bool
) -> None:
    await login(server, server.alice, ALICE_KEY)
    if bob_has_a_key:
        await login(server, server.bob, BOB_KEY)
    message = await _start_text(server)
    await server.env.advance_time(30)
    [original] = await journal_of(server, server.alice)
    assert original.state is JobState.DONE

    await server.bob.click(message, label="Continue")
    await server.env.advance_time(30)

    assert await journal_of(server, server.alice) == [original]
    [job] = await journal_of(server, server.bob)
    assert job.key_owner == ("user" if bob_has_a_key else "anonymous")
    assert horde_user_of(horde_sim, job) == ("bob" if bob_has_a_key else "Anonymous")


async def test_a_rerun_by_another_member_meets_their_limits_not_the_owners(
    server: Server, horde_sim: Simulator
) -> None:
    # Bob has no key and the server allows no anonymous generation: alice's key must not stand in.
    await login(server, server.alice, ALICE_KEY)
    await server.bot.guild_settings.set(server.guild.id, "allow_anonymous", "off", server.admin.id)
    message = await _start_image(server)

    refused = await server.bob.click(message, label="Rerun")
    await server.bob.react(message.message, "🔁")  # type: ignore[arg-type]

    assert refused.ephemeral
    assert "doesn't allow generating with the anonymous key" in (response_of(refused).content or "")
    assert await journal_of(server, server.bob) == []
    assert [horde_user_of(horde_sim, job) for job in await journal_of(server, server.alice)] == ["alice"]
