"""/config end to end on SimCord, and the server's rules applied to /imagine and its buttons."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import discord
import pytest
import simcord
from test_imagine_support import settings  # noqa: F401 - fixture used by name

from bot.storage import JobState
from cogs.config import LOG_CHANNEL_ELSEWHERE, LOG_CHANNEL_NO_ACCESS, LOG_CHANNEL_NOT_HERE
from horde_simulator import Knobs, Simulator, SimulatorConfig

if TYPE_CHECKING:
    from conftest import Server

ALICE_KEY = "sim-alice-key-00000001"
CONFIG_COMMANDS = {"config show", "config set", "config reset", "config audit"}


@pytest.fixture
def horde_sim_config() -> SimulatorConfig:
    return SimulatorConfig(knobs=Knobs(speed=0.05, worker_threads=3))


def text_of(result: simcord.InteractionResult) -> str:
    assert result.response is not None
    return result.response.content


async def config_set(
    server: Server, setting: str, value: str, **options: object
) -> simcord.InteractionResult:
    result = await server.admin.slash(server.channel, "config set", setting=setting, value=value, **options)
    assert result.ephemeral
    return result


async def imagine(
    server: Server, member: simcord.MemberActor, **options: object
) -> simcord.InteractionResult:
    return await member.slash(server.channel, "imagine", **options)


# -- who may configure ---------------------------------------------------------------------------


async def test_only_members_with_manage_server_see_config(server: Server) -> None:
    assert set(server.admin.available_commands(server.channel)) >= CONFIG_COMMANDS
    assert not CONFIG_COMMANDS & set(server.alice.available_commands(server.channel))
    assert not CONFIG_COMMANDS & set(server.moderator.available_commands(server.channel))
    with pytest.raises(simcord.SetupError, match="not visible"):
        await server.alice.slash(server.channel, "config show")


async def test_the_bot_checks_manage_server_again_when_config_runs(server: Server) -> None:
    # A server admin may show the command to anyone; the bot still refuses to run it for them.
    [command] = [cmd for cmd in await server.bot.tree.fetch_commands() if cmd.name == "config"]
    server.guild.set_command_permissions(command, {server.alice: True})
    assert "config set" in server.alice.available_commands(server.channel)

    result = await server.alice.slash(server.channel, "config set", setting="max_steps", value="10")

    assert result.ephemeral
    assert text_of(result) == "You need the Manage Server permission to use this command."
    assert await server.bot.storage.guild_settings.get_all(server.guild.id) == {}


# -- show, set, reset, audit ---------------------------------------------------------------------


async def test_set_show_and_reset(server: Server) -> None:
    changed = await config_set(server, "cooldown_seconds", "30")
    assert text_of(changed) == "Changed `cooldown_seconds`: 0 → 30"

    shown = await server.admin.slash(server.channel, "config show", group="rate")
    assert shown.ephemeral
    assert shown.response is not None
    [field] = shown.response.embeds[0].fields
    assert "**cooldown_seconds**: 30\n" in (field.value or "")
    assert "**max_jobs_member**: 0 *(default)*" in (field.value or "")

    reset = await server.admin.slash(server.channel, "config reset", setting="cooldown_seconds")
    assert reset.ephemeral
    assert text_of(reset) == "Changed `cooldown_seconds`: 30 → 0"
    assert (await server.bot.guild_settings.get(server.guild.id)).cooldown_seconds == 0


async def test_show_lists_every_group(server: Server) -> None:
    shown = await server.admin.slash(server.channel, "config show")
    assert shown.response is not None
    names = [field.name for field in shown.response.embeds[0].fields]
    assert names == [
        "defaults",
        "limits",
        "models",
        "filters",
        "channels",
        "nsfw",
        "access",
        "rate",
        "reactions",
        "visibility",
        "logging",
    ]


async def test_an_invalid_value_is_refused_privately_with_the_allowed_range(server: Server) -> None:
    result = await config_set(server, "max_count", "50")
    assert text_of(result) == "`max_count`: allowed is a whole number from 1 to 20."

    result = await config_set(server, "max_steps", "10")
    assert text_of(result) == "`max_steps`: the default steps (30) must not exceed max_steps (10)."
    assert await server.bot.storage.guild_settings.get_all(server.guild.id) == {}
    assert server.channel.history(viewer=server.bob) == []


async def test_setting_names_autocomplete(server: Server) -> None:
    choices = await server.admin.autocomplete(server.channel, "config set", "setting", "max_")
    assert [choice["value"] for choice in choices] == [
        "max_steps",
        "max_pixels",
        "max_count",
        "max_prompt_length",
        "max_text_tokens",
        "max_jobs_member",
        "max_jobs_server",
    ]


async def test_the_audit_log_records_who_changed_what(server: Server) -> None:
    await config_set(server, "blocked_words", "gore")
    await server.admin.slash(server.channel, "config reset", setting="blocked_words")

    entries = await server.bot.guild_settings.audit(server.guild.id)
    assert [(e.key, e.old_value_json, e.new_value_json, e.actor_id) for e in entries] == [
        ("blocked_words", '"gore"', None, server.admin.id),
        ("blocked_words", None, '"gore"', server.admin.id),
    ]
    shown = await server.admin.slash(server.channel, "config audit")
    assert shown.response is not None
    description = shown.response.embeds[0].description or ""
    assert f"<@{server.admin.id}> `blocked_words`: gore → default" in description


async def test_changes_are_posted_to_the_log_channel(server: Server) -> None:
    log_channel = server.guild.create_text_channel("bot-log")
    await config_set(server, "log_channel", log_channel.mention)

    await config_set(server, "max_count", "2")

    assert log_channel.last_message is not None
    assert log_channel.last_message.content == f"{server.admin.mention} changed `max_count`: 4 → 2"


async def test_a_log_channel_of_another_server_is_refused(server: Server) -> None:
    elsewhere = server.env.create_guild("Someone else's server").create_text_channel("general")

    result = await config_set(server, "log_channel", f"<#{elsewhere.id}>")

    assert text_of(result) == LOG_CHANNEL_NOT_HERE
    assert await server.bot.storage.guild_settings.get_all(server.guild.id) == {}
    await config_set(server, "max_count", "2")
    assert elsewhere.last_message is None


async def test_a_log_channel_the_bot_cannot_post_in_is_refused(server: Server) -> None:
    me = server.guild.me
    assert me is not None
    locked = server.guild.create_text_channel(
        "locked", overwrites={me: discord.PermissionOverwrite(send_messages=False)}
    )

    result = await config_set(server, "log_channel", locked.mention)

    assert text_of(result) == LOG_CHANNEL_NO_ACCESS.format(channel=locked.mention)
    assert await server.bot.storage.guild_settings.get_all(server.guild.id) == {}


async def test_a_stored_log_channel_of_another_server_gets_nothing(server: Server) -> None:
    # Stored before /config checked the channel: changes are not posted there, and the admin is told.
    elsewhere = server.env.create_guild("Someone else's server").create_text_channel("general")
    await server.bot.guild_settings.set(server.guild.id, "log_channel", str(elsewhere.id), server.admin.id)

    result = await config_set(server, "max_count", "2")

    assert text_of(result) == f"Changed `max_count`: 4 → 2\n{LOG_CHANNEL_ELSEWHERE}"
    assert elsewhere.last_message is None


async def test_an_admins_text_is_posted_to_the_log_channel_as_plain_text(server: Server) -> None:
    log_channel = server.guild.create_text_channel("bot-log")
    await config_set(server, "log_channel", log_channel.mention)
    bait = f"[Claim your FREE Nitro](https://evil.example/nitro) @everyone <@{server.bob.id}> **now**"

    result = await config_set(server, "negative_prompt", bait)

    posted = log_channel.last_message
    assert posted is not None
    # Discord shows \[ and \* as the characters; a zero-width space breaks each mention.
    escaped = (
        r"\[Claim your FREE Nitro](https://evil.example/nitro) "
        + f"@\u200beveryone <@\u200b{server.bob.id}> "
        + r"\*\*now\*\*"
    )
    assert posted.content == f"{server.admin.mention} changed `negative_prompt`: none → {escaped}"
    assert posted.flags.suppress_embeds
    assert text_of(result) == f"Changed `negative_prompt`: none → {escaped}"


async def test_a_per_channel_override(server: Server) -> None:
    result = await config_set(server, "nsfw_policy", "off", channel=server.nsfw_channel)
    assert (
        text_of(result)
        == f"Changed `nsfw_policy` in <#{server.nsfw_channel.id}>: age\\_restricted\\_only → off"
    )

    generated = await imagine(server, server.alice, prompt="a fox")
    assert not generated.ephemeral
    [job] = await server.bot.storage.jobs.list_recent(server.alice.id)
    assert json.loads(job.request_json)["nsfw"] is False


async def test_settings_survive_a_restart(server: Server) -> None:
    await config_set(server, "blocked_words", "gore")

    await server.restart()

    result = await imagine(server, server.alice, prompt="gore")
    assert result.ephemeral
    assert "contains “gore”" in text_of(result)


# -- the sponsor key -----------------------------------------------------------------------------


async def test_the_sponsor_key_is_used_for_members_without_a_key_and_never_shown(
    server: Server, horde_sim: Simulator
) -> None:
    result = await config_set(server, "sponsor_key", ALICE_KEY)
    assert text_of(result) == "Changed `sponsor_key`: not set → set (AI Horde user alice#1)"
    await config_set(server, "allow_anonymous", "off")

    generated = await imagine(server, server.bob, prompt="a fox")

    assert not generated.ephemeral
    [job] = await server.bot.storage.jobs.list_recent(server.bob.id)
    assert job.key_owner == "sponsor"
    assert job.horde_id is not None
    assert horde_sim.state.requests[job.horde_id].user.alias == "alice"
    shown = await server.admin.slash(server.channel, "config show", group="access")
    assert shown.response is not None
    assert "set (AI Horde user alice#1)" in (shown.response.embeds[0].fields[0].value or "")
    everything = server.env.transcript()
    bot_output = [json.dumps(entry.json) for entry in server.env.http_requests]
    assert not any(ALICE_KEY in text for text in bot_output)
    assert everything.count(ALICE_KEY) <= 1  # only the admin's own command option


async def test_without_anonymous_access_or_sponsor_a_member_must_log_in(server: Server) -> None:
    await config_set(server, "allow_anonymous", "off")

    result = await imagine(server, server.bob, prompt="a fox")

    assert result.ephemeral
    assert "doesn't allow generating with the anonymous key" in text_of(result)
    assert await server.bot.storage.jobs.list_recent(server.bob.id) == []


# -- the rules on /imagine and its buttons -------------------------------------------------------


async def test_blocked_words_and_patterns_stop_imagine(server: Server) -> None:
    await config_set(server, "blocked_words", "gore")
    await config_set(server, "blocked_patterns", "sp[a4]m+")

    for options in ({"prompt": "GORE"}, {"prompt": "a fox", "negative_prompt": "spammm"}):
        result = await imagine(server, server.alice, **options)
        assert result.ephemeral
        assert "which this server blocks" in text_of(result)
    assert await server.bot.storage.jobs.list_recent(server.alice.id) == []


async def test_limits_and_defaults_apply_to_imagine(server: Server) -> None:
    await config_set(server, "steps", "12")
    await config_set(server, "max_steps", "20")
    await config_set(server, "negative_prompt", "blurry")

    refused = await imagine(server, server.alice, prompt="a fox", steps=25)
    assert refused.ephemeral
    assert "Steps must be between 1 and 20" in text_of(refused)

    await imagine(server, server.alice, prompt="a fox", negative_prompt="ugly")
    [job] = await server.bot.storage.jobs.list_recent(server.alice.id)
    request = json.loads(job.request_json)
    assert request["params"]["steps"] == 12
    assert request["prompt"] == "a fox ### blurry, ugly"


async def test_rerun_buttons_follow_the_rules_of_now(server: Server) -> None:
    generated = await imagine(server, server.alice, prompt="a fox", steps=40)
    assert generated.response is not None
    await config_set(server, "steps", "10")
    await config_set(server, "max_steps", "20")

    for label in ("Rerun", "Same seed"):
        clicked = await server.bob.click(generated.response, label=label)
        assert clicked.ephemeral
        assert "Steps must be between 1 and 20" in text_of(clicked)
    assert await server.bot.storage.jobs.list_recent(server.bob.id) == []


async def test_blocked_channels_stop_imagine_and_reruns(server: Server) -> None:
    generated = await imagine(server, server.alice, prompt="a fox")
    assert generated.response is not None
    await config_set(server, "blocked_channels", server.channel.mention)

    command = await imagine(server, server.alice, prompt="a fox")
    clicked = await server.bob.click(generated.response, label="Rerun")

    for result in (command, clicked):
        assert result.ephemeral
        assert text_of(result) == "Generating images isn't allowed in this channel."


async def test_an_exhausted_budget_blocks_generation(server: Server) -> None:
    others = await imagine(server, server.bob, prompt="a cat")
    assert others.response is not None
    await config_set(server, "daily_kudos_member", "1")
    await imagine(server, server.alice, prompt="a fox")
    [job] = await server.bot.storage.jobs.list_recent(server.alice.id)
    assert job.state is JobState.DONE
    assert job.kudos is not None
    assert job.kudos >= 1

    again = await imagine(server, server.alice, prompt="a fox")
    clicked = await server.alice.click(others.response, label="Rerun")

    for result in (again, clicked):
        assert result.ephemeral
        assert text_of(result).startswith("Your daily kudos budget (1) is used up")
    assert len(await server.bot.storage.jobs.list_recent(server.alice.id)) == 1


async def test_the_cooldown_applies_to_commands_and_buttons(server: Server) -> None:
    await config_set(server, "cooldown_seconds", "60")
    first = await imagine(server, server.alice, prompt="a fox")
    assert first.response is not None

    command = await imagine(server, server.alice, prompt="a fox")
    clicked = await server.alice.click(first.response, label="Rerun")
    for result in (command, clicked):
        assert result.ephemeral
        assert "Try again in 60 seconds." in text_of(result)

    await server.env.advance_time(61)
    assert not (await imagine(server, server.alice, prompt="a fox")).ephemeral
