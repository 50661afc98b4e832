"""/login, /logout and /me on SimCord, against the AI Horde simulator."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import discord
import pytest
import simcord
from test_horde_workers import FIXTURES, assert_within_embed_limits

from bot.crypto import binding
from bot.horde import UserDetailsResponse
from bot.services.accounts import (
    ANONYMOUS_KEY_MESSAGE,
    INVALID_KEY_MESSAGE,
    NOT_LOGGED_IN_MESSAGE,
    STORED_KEY_NOT_YOURS_MESSAGE,
    AccountService,
)
from bot.services.profiles import (
    ACCOUNT_GONE,
    NOT_SHARED,
    OWN_PROFILE_NEEDS_LOGIN,
    SHARING_NEEDS_LOGIN,
    MemberProfile,
)
from bot.storage import UserRecord
from bot.tree import GENERIC_ERROR_MESSAGE
from cogs.accounts import (
    APIKEY_INPUT_ID,
    APIKEY_MAX_LENGTH,
    APIKEY_MIN_LENGTH,
    LOGGED_OUT_MESSAGE,
    LOGIN_MODAL_TITLE,
    NOT_LOGGED_IN_LOGOUT_MESSAGE,
    NOT_LOGGED_IN_STATE,
    PRIVATE_NOW,
    PRIVATE_STATE,
    SHARED_NOW,
    SHARED_STATE,
    member_embed,
)
from horde_simulator import Simulator

if TYPE_CHECKING:
    from conftest import Server

ALICE_KEY = "sim-alice-key-00000001"
BOB_KEY = "sim-bob-key-0000000002"
UNKNOWN_KEY = "nobody-has-this-key-01"
TEXT_INPUT = 4
SHORT_STYLE = 1


def _text_inputs(components: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for component in components:
        if component.get("type") == TEXT_INPUT:
            yield component
        yield from _text_inputs(component.get("components", []))
        if isinstance(component.get("component"), dict):  # a Label wraps one component
            yield from _text_inputs([component["component"]])


def _fields(result: simcord.InteractionResult) -> dict[str | None, str | None]:
    return _fields_of(response_of_embed(result))


def _fields_of(embed: discord.Embed) -> dict[str | None, str | None]:
    return {field.name: field.value for field in embed.fields}


def response_of_embed(result: simcord.InteractionResult) -> discord.Embed:
    assert result.response is not None
    [embed] = result.response.embeds
    return embed


async def login(server: Server, member: simcord.MemberActor, key: str) -> simcord.InteractionResult:
    shown = await member.slash(server.channel, "login")
    return await member.submit_modal(shown, {APIKEY_INPUT_ID: key})


async def stored(server: Server, member: simcord.MemberActor) -> UserRecord | None:
    return await server.bot.storage.users.get(member.id)


def content(result: simcord.InteractionResult) -> str:
    assert result.ephemeral
    assert result.response is not None
    assert result.response.ephemeral
    return result.response.content


# -- /login ------------------------------------------------------------------------------------


async def test_login_opens_a_modal_and_no_command_option_holds_the_key(server: Server) -> None:
    shown = await server.alice.slash(server.channel, "login")

    assert shown.modal is not None
    assert shown.modal["title"] == LOGIN_MODAL_TITLE
    [text_input] = _text_inputs(shown.modal["components"])
    assert text_input["custom_id"] == APIKEY_INPUT_ID
    assert text_input["label"] == "AI Horde API key"
    assert text_input["style"] == SHORT_STYLE
    assert (text_input["min_length"], text_input["max_length"]) == (APIKEY_MIN_LENGTH, APIKEY_MAX_LENGTH)
    assert "aihorde.net/register" in text_input["placeholder"]
    assert not text_input.get("value")

    synced = [
        command
        for entry in server.env.http_requests
        if entry.method == "PUT" and isinstance(entry.json, list)
        for command in entry.json
        if command["name"] == "login"
    ]
    assert synced
    assert all(not command.get("options") for command in synced)


async def test_a_valid_key_logs_in_privately(server: Server) -> None:
    submitted = await login(server, server.alice, ALICE_KEY)

    assert content(submitted) == "Logged in as **alice#1**"
    assert ALICE_KEY not in server.bot.redactor.redact(f"apikey: {ALICE_KEY}")
    record = await stored(server, server.alice)
    assert record is not None
    assert (record.horde_user_id, record.horde_username) == (1, "alice#1")
    assert (
        server.bot.keyring.decrypt(record.encrypted_api_key, bound_to=binding("user", server.alice.id))
        == ALICE_KEY
    )
    assert server.channel.history(viewer=server.bob) == []


async def test_the_horde_username_is_escaped_and_pings_nobody(server: Server, horde_sim: Simulator) -> None:
    horde_sim.state.users[2].alias = "__bob** @everyone"

    submitted = await login(server, server.bob, BOB_KEY)

    assert content(submitted) == r"Logged in as **\_\_bob\*\* @everyone#2**"
    [followup] = [entry for entry in server.env.http_requests if entry.path.startswith("/webhooks/")]
    assert followup.json is not None
    assert followup.json["allowed_mentions"] == {"parse": []}


@pytest.mark.parametrize(
    ("key", "message"),
    [(UNKNOWN_KEY, INVALID_KEY_MESSAGE), ("0000000000", ANONYMOUS_KEY_MESSAGE)],
    ids=["unknown", "anonymous"],
)
async def test_a_refused_key_gets_a_private_clear_error_and_is_not_stored(
    server: Server, key: str, message: str
) -> None:
    submitted = await login(server, server.alice, key)

    assert content(submitted) == message
    assert "https://aihorde.net/register" in message
    assert await stored(server, server.alice) is None


@pytest.mark.allow_unhandled_errors
async def test_a_bug_while_logging_in_gets_the_generic_reply(
    server: Server, monkeypatch: pytest.MonkeyPatch, error_logs: list[logging.LogRecord]
) -> None:
    async def broken(self: AccountService, discord_id: int, apikey: str) -> UserRecord:
        raise ZeroDivisionError

    monkeypatch.setattr(AccountService, "login", broken)

    submitted = await login(server, server.alice, ALICE_KEY)

    assert content(submitted) == GENERIC_ERROR_MESSAGE
    [record] = error_logs
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ZeroDivisionError)


# -- /me ---------------------------------------------------------------------------------------


async def test_me_shows_the_account_fresh_from_the_horde(server: Server, horde_sim: Simulator) -> None:
    await login(server, server.alice, ALICE_KEY)
    horde_sim.state.users[1].kudos = 12345.0
    horde_sim.state.expire_caches()  # the Horde keeps a find_user answer 30 s: as if they passed

    result = await server.alice.slash(server.channel, "me")

    assert result.ephemeral
    assert result.response is not None
    assert result.response.ephemeral
    fields = _fields(result)
    assert fields["Username"] == "alice#1"
    assert fields["Kudos"] == "12,345"
    assert fields["Concurrency"] == "30"
    assert fields["Workers"] == "0"
    assert "Saved" in (fields["API key"] or "")


async def test_me_when_not_logged_in(server: Server, horde_sim: Simulator) -> None:
    result = await server.alice.slash(server.channel, "me")

    assert content(result) == NOT_LOGGED_IN_MESSAGE
    assert "/login" in NOT_LOGGED_IN_MESSAGE
    assert "anonymously" in NOT_LOGGED_IN_MESSAGE
    assert horde_sim.counters.calls("find_user") == 0


# -- /logout -----------------------------------------------------------------------------------


async def test_logout_deletes_the_key(server: Server) -> None:
    await login(server, server.alice, ALICE_KEY)

    assert content(await server.alice.slash(server.channel, "logout")) == LOGGED_OUT_MESSAGE
    assert await stored(server, server.alice) is None
    assert content(await server.alice.slash(server.channel, "logout")) == NOT_LOGGED_IN_LOGOUT_MESSAGE


async def test_logout_only_touches_the_caller(server: Server) -> None:
    await login(server, server.alice, ALICE_KEY)
    await login(server, server.bob, BOB_KEY)

    await server.alice.slash(server.channel, "logout")

    assert await stored(server, server.alice) is None
    assert await stored(server, server.bob) is not None


# -- the key never leaks -----------------------------------------------------------------------


async def test_a_key_moved_onto_another_members_row_is_never_used(
    server: Server, horde_sim: Simulator
) -> None:
    # Whoever can write the database puts alice's stored key on bob's row ("bob's job on alice's account").
    await login(server, server.alice, ALICE_KEY)
    await login(server, server.bob, BOB_KEY)
    alices = await server.bot.storage.users.get(server.alice.id)
    assert alices is not None
    await server.bot.storage.users.update_encrypted_keys({server.bob.id: alices.encrypted_api_key})

    for result in (
        await server.bob.slash(server.channel, "imagine", prompt="a fox on alice's kudos"),
        await server.bob.slash(server.channel, "me"),
    ):
        assert result.ephemeral
        assert result.response is not None
        assert result.response.content == STORED_KEY_NOT_YOURS_MESSAGE
    assert not horde_sim.state.ledger()  # nothing was generated, on anyone's account
    assert (await server.alice.slash(server.channel, "me")).ephemeral  # alice's own row still works


async def test_the_key_never_appears_in_messages_embeds_or_logs(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    await login(server, server.alice, UNKNOWN_KEY)
    await login(server, server.alice, ALICE_KEY)
    await server.alice.slash(server.channel, "me")
    await server.alice.slash(server.channel, "logout")
    await server.alice.slash(server.channel, "me")

    sent_to_discord = json.dumps(
        [[entry.path, entry.params, entry.json] for entry in server.env.http_requests], default=str
    )
    shown = [
        json.dumps([message.content, [embed.to_dict() for embed in message.embeds]])
        for message in server.channel.history(viewer=server.alice)
    ]
    assert len(shown) == 5
    assert caplog.records
    for key in (ALICE_KEY, UNKNOWN_KEY):
        assert key not in sent_to_discord
        assert all(key not in text for text in shown)
        assert key not in caplog.text
        assert all(key not in record.getMessage() for record in caplog.records)


# -- /privacy and /user ------------------------------------------------------------------------


def _embed_fields(result: simcord.InteractionResult) -> dict[str | None, str | None]:
    assert result.ephemeral
    return _fields(result)


async def test_user_shows_nothing_until_the_member_shares(server: Server, horde_sim: Simulator) -> None:
    await login(server, server.alice, ALICE_KEY)
    await login(server, server.bob, BOB_KEY)

    result = await server.bob.slash(server.channel, "user", member=server.alice)

    assert content(result) == NOT_SHARED.format(name="alice")
    assert horde_sim.counters.calls("user_details") == 0  # nothing was looked up


async def test_a_member_who_never_logged_in_gets_the_same_answer(server: Server) -> None:
    # /user tells nobody whether a member logged in.
    await login(server, server.bob, BOB_KEY)

    result = await server.bob.slash(server.channel, "user", member=server.alice)

    assert content(result) == NOT_SHARED.format(name="alice")


async def test_privacy_turns_sharing_on_and_off(server: Server, horde_sim: Simulator) -> None:
    await login(server, server.alice, ALICE_KEY)
    assert content(await server.alice.slash(server.channel, "privacy")) == PRIVATE_STATE

    assert content(await server.alice.slash(server.channel, "privacy", share_account="on")) == SHARED_NOW
    assert content(await server.alice.slash(server.channel, "privacy")) == SHARED_STATE
    shown = _embed_fields(await server.bob.slash(server.channel, "user", member=server.alice))
    assert (shown["Username"], shown["Kudos"], shown["Standing"]) == ("alice#1", "5,000", "member")
    assert (
        shown["Contributed (their workers)"]
        == "0 images, 0 texts, 0 alchemy forms\n0 megapixelsteps, 0 tokens"
    )
    assert horde_sim.counters.calls("user_details") == 1
    assert _fields(await server.alice.slash(server.channel, "me"))["Shown to members"] == "yes, with /user"

    assert content(await server.alice.slash(server.channel, "privacy", share_account="off")) == PRIVATE_NOW
    refused = await server.bob.slash(server.channel, "user", member=server.alice)
    assert content(refused) == NOT_SHARED.format(name="alice")
    assert horde_sim.counters.calls("user_details") == 1


async def test_sharing_needs_a_login_and_works_in_a_dm(server: Server) -> None:
    assert content(await server.alice.user.slash("privacy")) == NOT_LOGGED_IN_STATE
    assert content(await server.alice.user.slash("privacy", share_account="on")) == SHARING_NEEDS_LOGIN

    await login(server, server.alice, ALICE_KEY)
    assert content(await server.alice.user.slash("privacy", share_account="on")) == SHARED_NOW
    record = await stored(server, server.alice)
    assert record is not None
    assert record.profile_shared


async def test_user_is_a_server_command(server: Server) -> None:
    dm_commands = server.alice.user.available_commands()

    assert "user" not in dm_commands
    assert "privacy" in dm_commands
    assert "user" in server.alice.available_commands(server.channel)


async def test_your_own_account_shows_what_others_would_see(server: Server) -> None:
    await login(server, server.alice, ALICE_KEY)

    private = await server.alice.slash(server.channel, "user", member=server.alice)
    assert response_of_embed(private).footer.text == (
        "Only you can see this: your account is private. /privacy shares it."
    )

    assert content(await server.bob.slash(server.channel, "user", member=server.bob)) == (
        OWN_PROFILE_NEEDS_LOGIN
    )


async def test_a_shared_account_the_horde_forgot(server: Server, horde_sim: Simulator) -> None:
    await login(server, server.alice, ALICE_KEY)
    await server.alice.slash(server.channel, "privacy", share_account="on")
    del horde_sim.state.users[1]

    result = await server.bob.slash(server.channel, "user", member=server.alice)

    assert content(result) == ACCOUNT_GONE.format(name="alice")


async def test_member_names_are_escaped_and_ping_nobody(server: Server) -> None:
    tricky = server.guild.add_member(server.env.create_user("__under__"))
    await login(server, server.bob, BOB_KEY)

    result = await server.bob.slash(server.channel, "user", member=tricky)

    assert content(result) == NOT_SHARED.format(name="\\_\\_under\\_\\_")
    sent = [entry for entry in server.env.http_requests if entry.method == "POST"][-1]
    assert sent.json["allowed_mentions"] == {"parse": []}


def test_a_real_user_answer_fits_the_embed() -> None:
    details = UserDetailsResponse.model_validate_json((FIXTURES / "real" / "users_1_200.json").read_text())
    member = SimpleNamespace(display_name="x" * 32)

    for shared, own in ((True, False), (False, True), (True, True)):
        embed = member_embed(member, MemberProfile(details=details, shared=shared, own=own))  # type: ignore[arg-type]
        assert_within_embed_limits(embed)
    assert _fields_of(embed)["Standing"] == "trusted, moderator"
