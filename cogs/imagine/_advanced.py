"""/imagine's **Advanced** form: the options members rarely set (CLIP skip, seed variation, sharing
with LAION), asked in a modal so the command stays within Discord's 25 options."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import discord

from bot.errors import UserInputError
from bot.services.image.request import MAX_CLIP_SKIP, MAX_SEED_VARIATION
from bot.tree import report_interaction_error

CLIP_SKIP_INPUT_ID: Final = "imagine:advanced:clip_skip"
SEED_VARIATION_INPUT_ID: Final = "imagine:advanced:seed_variation"
SHARE_INPUT_ID: Final = "imagine:advanced:share"
_YES: Final = frozenset({"yes", "y", "true", "1", "on"})
_NO: Final = frozenset({"", "no", "n", "false", "0", "off"})
SHARE_WORDS: Final = "Share must be yes or no."


@dataclass(frozen=True, slots=True)
class AdvancedOptions:
    clip_skip: int | None
    seed_variation: int | None
    shared: bool


AdvancedHandler = Callable[[discord.Interaction, AdvancedOptions], Awaitable[None]]


def parse_advanced(clip_skip: str, seed_variation: str, share: str) -> AdvancedOptions:
    """What the form's three fields say; every problem at once, each saying what is allowed."""
    problems: list[str] = []
    clip = _whole(
        clip_skip,
        1,
        MAX_CLIP_SKIP,
        f"CLIP skip must be a whole number between 1 and {MAX_CLIP_SKIP}.",
        problems,
    )
    variation = _whole(
        seed_variation,
        1,
        MAX_SEED_VARIATION,
        f"Seed variation must be a whole number between 1 and {MAX_SEED_VARIATION}.",
        problems,
    )
    word = share.strip().casefold()
    if word not in _YES | _NO:
        problems.append(SHARE_WORDS)
    if problems:
        raise UserInputError("\n".join(problems))
    return AdvancedOptions(clip_skip=clip, seed_variation=variation, shared=word in _YES)


def _whole(text: str, low: int, high: int, message: str, problems: list[str]) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not text.isdecimal() or not low <= int(text) <= high:
        problems.append(message)
        return None
    return int(text)


class AdvancedModal(discord.ui.Modal, title="Advanced image options"):
    clip_skip: discord.ui.TextInput[AdvancedModal] = discord.ui.TextInput(
        label=f"CLIP skip (1–{MAX_CLIP_SKIP})",
        placeholder="Empty: the model's default",
        custom_id=CLIP_SKIP_INPUT_ID,
        required=False,
        max_length=2,
    )
    seed_variation: discord.ui.TextInput[AdvancedModal] = discord.ui.TextInput(
        label=f"Seed variation (1–{MAX_SEED_VARIATION})",
        placeholder="With a seed and a count: each image's seed is the last one plus this",
        custom_id=SEED_VARIATION_INPUT_ID,
        required=False,
        max_length=4,
    )
    share: discord.ui.TextInput[AdvancedModal] = discord.ui.TextInput(
        label="Share with LAION for 2 kudos less (yes/no)",
        placeholder="no",
        custom_id=SHARE_INPUT_ID,
        required=False,
        max_length=5,
    )

    def __init__(self, on_submit: AdvancedHandler) -> None:
        super().__init__()
        self._handler = on_submit

    async def on_submit(self, interaction: discord.Interaction, /) -> None:
        options = parse_advanced(self.clip_skip.value, self.seed_variation.value, self.share.value)
        await self._handler(interaction, options)

    # discord.py's Modal.on_error drops BaseView's `item` argument; mypy sees the base signature.
    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:  # type: ignore[override]
        await report_interaction_error(interaction, error)
