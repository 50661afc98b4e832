"""How /imagine jobs look on Discord (:data:`IMAGE`): the launch path and a restart use it."""

from __future__ import annotations

from bot.app import HordeBot
from bot.services.delivery.targets import MessageTarget
from bot.services.image.listener import ImagineListener
from bot.services.image.render import render_progress
from bot.services.image.request import ImagineParams
from bot.services.jobs import JobListener
from cogs._jobs import JobUI
from cogs.imagine._views import VIEWS, ImagineButton


def _listener(
    bot: HordeBot, target: MessageTarget, params: ImagineParams, *, anonymous: bool, private: bool
) -> JobListener:
    return ImagineListener(
        bot.delivery, target, params=params, anonymous=anonymous, private=private, views=VIEWS
    )


IMAGE = JobUI("image", ImagineButton, ImagineParams.from_json, render_progress, _listener)
