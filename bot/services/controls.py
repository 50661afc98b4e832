"""Every button and reaction a member can use on the bot's messages, and what each does: the one
list /help, a result's Details and the README's table describe (tests hold the buttons the cogs
draw and the README to it)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final

from bot.config import GenerationDefaults
from bot.services.image.reactions import DELETE_EMOJI, NEW_SEED_EMOJI, kudos_gifting_enabled
from bot.services.settings.config import GuildConfig, build_config


@dataclass(frozen=True, slots=True)
class Control:
    emoji: str
    name: str
    does: str

    def line(self) -> str:
        return f"{self.emoji} **{self.name}**: {self.does}"


RUNNING_BUTTONS: Final[tuple[Control, ...]] = (
    Control("✖️", "Cancel", "stops it on the AI Horde; finished images are kept (asker or moderator)"),
)
"""While /imagine, /write or /alchemy runs."""
IMAGE_BUTTONS: Final[tuple[Control, ...]] = (
    Control("🔍", "U1", "U1 … U5: upscales that image alone and replies with it and its own buttons"),
    Control("🎨", "V1", "V1 … V5: a new set from that image (Vary, strong), as you"),
)
"""Under each image of a finished /imagine result (above 5 images: an Upscale and a Vary select)."""
RESULT_BUTTONS: Final[tuple[Control, ...]] = (
    Control("🔁", "Rerun", "the same request again with a new seed, as you"),
    Control(
        "🌱", "Same seed", "the same images again: each with its own seed (one generation per image), as you"
    ),
    Control("✏️", "Edit", "change the prompt, then run it again"),
    Control("ℹ️", "Details", "every setting, the seeds and the workers, just for you"),
    Control("🗑️", "Delete", "removes the result (asker or moderator)"),
)
"""Under a finished /imagine result, for all of it (a private one has no Delete: dismiss it instead)."""
UPSCALED_BUTTONS: Final[tuple[Control, ...]] = (
    Control("🪶", "Vary (Subtle)", "a new set close to this image (denoising 0.35), as you"),
    Control("🎨", "Vary (Strong)", "a new set freer from this image (denoising 0.7), as you"),
    Control("🔭", "Zoom out 1.5×", "this image in the middle of a canvas 1.5× larger, painted around it"),
    Control("🔭", "Zoom out 2×", "the same on a canvas twice as large"),
    Control("ℹ️", "Details", "the settings of the result this image came from, just for you"),
    Control("⬅️", "Pan", "the canvas extended by half on the left, painted there"),
    Control("➡️", "Pan", "… on the right"),
    Control("⬆️", "Pan", "… at the top"),
    Control("⬇️", "Pan", "… at the bottom"),
)
"""Under an upscaled image (the reply to U1 …). Zoom out and Pan need a worker serving an
inpainting model."""
LEGACY_BUTTONS: Final[tuple[Control, ...]] = (
    Control("🔍", "Upscale", "on results from before U1 …: pick one of the images to upscale"),
)
TEXT_BUTTONS: Final[tuple[Control, ...]] = (
    Control("➡️", "Continue", "under a /write result: writes on from where the text ended"),
)
BUTTONS: Final = (
    RUNNING_BUTTONS + IMAGE_BUTTONS + RESULT_BUTTONS + UPSCALED_BUTTONS + TEXT_BUTTONS + LEGACY_BUTTONS
)

MESSAGE_MENUS: Final[tuple[Control, ...]] = (
    Control("🖼️", "Describe image", "captions and tags any image (right-click it → Apps)"),
    Control("🔍", "Upscale image", "upscales any image (right-click it → Apps)"),
)


def reactions(config: GuildConfig | None) -> tuple[Control, ...]:
    """The reactions on an /imagine result, as a server's settings have them; with ``None``, every
    reaction with its default emoji (a server may change them, and turns gifting on)."""
    generic = config is None
    settings = _defaults() if config is None else config
    found: list[Control] = []
    if generic or settings.rerun_reactions:
        found += [
            Control(settings.rerun_emoji, "Same seed", "reruns it with each image's seed, as you"),
            Control(NEW_SEED_EMOJI, "New seed", "reruns it with a new seed, as you"),
        ]
    found.append(Control(DELETE_EMOJI, "Delete", "removes it (asker or moderator)"))
    if generic or kudos_gifting_enabled(settings):
        where = ", where the server turned it on" if generic else ""
        gift = f"sends the asker {settings.kudos_amount} of your kudos{where}"
        found.append(Control(settings.kudos_emoji, "Gift kudos", gift))
    return tuple(found)


@functools.cache
def _defaults() -> GuildConfig:
    return build_config(None, GenerationDefaults(), {})


def details_legend() -> str:
    """The short reminder at the end of a result's Details (which knows no server's settings)."""
    buttons = " · ".join(f"{control.emoji} {control.name}" for control in IMAGE_BUTTONS + RESULT_BUTTONS)
    reacts = " · ".join(f"{control.emoji} {control.name.lower()}" for control in reactions(None))
    return f"Buttons: {buttons}\nReactions: {reacts} (defaults; /help shows this server's)"
