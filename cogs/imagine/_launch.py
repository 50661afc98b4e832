"""How /imagine jobs look on Discord (:data:`IMAGE`): the launch path and a restart use it; and
:func:`launch_admitted`, a rerun started in a channel message (a reaction, Same seed's extra images)."""

from __future__ import annotations

import discord

from bot.app import HordeBot
from bot.services.delivery.targets import MessageTarget
from bot.services.image.listener import ImagineListener
from bot.services.image.render import render_progress
from bot.services.image.request import ImagineParams, ImagineRequest
from bot.services.jobs import JobListener
from bot.services.policy import GenerationContext
from cogs._jobs import JobUI, launch_in_channel
from cogs.imagine._views import VIEWS, ImagineButton


def _listener(
    bot: HordeBot, target: MessageTarget, params: ImagineParams, *, anonymous: bool, private: bool
) -> JobListener:
    return ImagineListener(
        bot.delivery, target, params=params, anonymous=anonymous, private=private, views=VIEWS
    )


IMAGE = JobUI("image", ImagineButton, ImagineParams.from_json, render_progress, _listener, VIEWS)


async def launch_admitted(
    bot: HordeBot,
    channel: discord.abc.Messageable,
    imagine: ImagineRequest,
    context: GenerationContext,
    *,
    user_id: int,
    guild_id: int | None,
) -> None:
    """Through the policy, then in a new message in ``channel``; a refusal is raised (``BotError``)."""
    async with bot.policy.admit(context) as decision:
        await launch_in_channel(
            bot,
            channel,
            IMAGE.launch(imagine.request, imagine.params),
            decision.key,
            user_id=user_id,
            guild_id=guild_id,
        )
