"""The simulated Discord server the playground opens: two channels, two members and a welcome.

- ``#general``, and ``#after-dark``, age-restricted (NSFW allowed there, as the bot's policy says);
- "you", with Manage Server so that ``/config`` works, and "sam", a member without special
  permissions, to see private replies stay private, gift kudos and meet the permission checks;
- a first message, from a "Playground" webhook, saying what to try.
"""

from __future__ import annotations

from dataclasses import dataclass

import discord
import simcord

from bot.app import HordeBot

SERVER_NAME = "Horde Playground"
GUIDE_NAME = "Playground"


@dataclass(frozen=True)
class World:
    guild: simcord.GuildHandle
    general: simcord.ChannelHandle
    after_dark: simcord.ChannelHandle
    you: simcord.MemberActor
    sam: simcord.MemberActor

    @property
    def channels(self) -> tuple[simcord.ChannelHandle, ...]:
        return (self.general, self.after_dark)

    @property
    def members(self) -> tuple[simcord.MemberActor, ...]:
        return (self.you, self.sam)

    def channel(self, channel_id: int) -> simcord.ChannelHandle | None:
        return next((channel for channel in self.channels if channel.id == channel_id), None)

    def member(self, member_id: int) -> simcord.MemberActor | None:
        return next((member for member in self.members if member.id == member_id), None)


def build_world(env: simcord.Env) -> World:
    guild = env.create_guild(SERVER_NAME)
    general = guild.create_text_channel("general", topic="Try the bot here: type / to see its commands.")
    after_dark = guild.create_text_channel("after-dark", topic="Age-restricted: NSFW generations allowed.")
    admins = guild.create_role("Server admins", permissions=discord.Permissions(manage_guild=True))
    you = guild.add_member(env.create_user("you", global_name="You"), roles=[admins])
    sam = guild.add_member(env.create_user("sam", global_name="Sam"))
    return World(guild=guild, general=general, after_dark=after_dark, you=you, sam=sam)


def mark_age_restricted(bot: HordeBot, channel: simcord.ChannelHandle) -> None:
    """Make ``channel`` age-restricted as the bot sees it.

    SimCord 3.2.1 does not model a channel's ``nsfw`` flag, so it is set in the bot's cache, where
    ``interaction.channel`` comes from (as tests/conftest.py's ``set_age_restricted`` does).
    """
    cached = bot.get_channel(channel.id)
    if not isinstance(cached, discord.TextChannel):
        raise TypeError(f"{channel!r} is not a text channel the bot can see")
    cached.nsfw = True


def welcome_text(world: World, *, demo_key: str | None, horde: str) -> str:
    """The playground's first message: what to try, in the order a newcomer would."""
    login = (
        f"• `/login` with the simulator's demo key `{demo_key}`, then `/me`: your Horde account.\n"
        if demo_key is not None
        else "• `/me`: the Horde account of the key the playground was started with.\n"
    )
    return (
        f"**Welcome to the Horde bot playground.** This is the real bot in a simulated Discord, "
        f"against {horde}. Type `/` in the box below to see every command.\n"
        "• `/imagine prompt:a lighthouse at dusk`: watch the message move through the queue, then "
        "use its buttons (**Rerun**, **Same seed**, **Details**, **Delete**; **Cancel** while it runs).\n"
        "• Reactions on a result: 🔁 reruns with the same seed, 🎲 with a new one, ❌ deletes it. "
        "The page has no emoji picker: use **React** under each image result; once a reaction is "
        "there, click it to add or remove yours.\n"
        "• `/write prompt:a haiku about volunteers` and `/alchemy` (attach an image). The message "
        "menus (Apps → Describe image, Upscale image) are under each image result too.\n"
        f"{login}"
        "• `/config show` and `/config set`: you manage this server.\n"
        f"Switch **Viewing as** to {world.sam.name} to see what another member sees (private replies "
        f"stay private), and the channel to #{world.after_dark.name}, where NSFW is allowed."
    )


async def post_welcome(world: World, channel: simcord.ChannelHandle, text: str) -> None:
    guide = world.guild.create_webhook(channel, GUIDE_NAME)
    await guide.send(text)
