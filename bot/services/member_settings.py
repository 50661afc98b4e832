"""A member's own defaults (/settings): what their /imagine uses when they leave an option out, and
whether their results are private or come by DM.

Precedence, field by field: an option given in the command, then the member's default, then the
server's (``build_request`` fills what is still unset). Server policy binds whatever the source:
:func:`conflicts` names each of the member's defaults the server's limits refuse, checked when they
are saved and again at every use (the server may have changed its limits since), so the member
learns that it is *their* default the server refuses, and where to change it.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bot.errors import UserInputError
from bot.generation_limits import MAX_N, MAX_PROMPT_CHARS, MAX_SIDE, MAX_STEPS, MIN_SIDE, SIDE_STEP
from bot.horde.consts import KNOWN_IMAGE_SAMPLERS
from bot.services.image.aspect import AspectPreset
from bot.services.image.request import ImagineOptions
from bot.services.settings.config import GuildConfig
from bot.services.styles import NO_STYLE
from bot.storage import Storage

log = logging.getLogger(__name__)

MAX_MODEL_CHARS: Final = 100
MAX_STYLE_CHARS: Final = 100
CHANGE_THEM: Final = "These come from your /settings: change them with `/settings show`, or give the option."


class MemberSettings(BaseModel):
    """A member's saved defaults; ``None`` (every field's default): the server's."""

    # Unknown fields are dropped, not refused: a document written by a newer bot still loads.
    model_config = ConfigDict(frozen=True, extra="ignore")

    model: str | None = Field(default=None, min_length=1, max_length=MAX_MODEL_CHARS)
    aspect: AspectPreset | None = None
    width: int | None = Field(default=None, ge=MIN_SIDE, le=MAX_SIDE, multiple_of=SIDE_STEP)
    height: int | None = Field(default=None, ge=MIN_SIDE, le=MAX_SIDE, multiple_of=SIDE_STEP)
    steps: int | None = Field(default=None, ge=1, le=MAX_STEPS)
    sampler: KNOWN_IMAGE_SAMPLERS | None = None
    negative_prompt: str | None = Field(default=None, min_length=1, max_length=MAX_PROMPT_CHARS)
    n: int | None = Field(default=None, ge=1, le=MAX_N)
    style: str | None = Field(default=None, min_length=1, max_length=MAX_STYLE_CHARS)
    """An AI Horde style by name (``none``: no style, not even the server's default)."""
    private: bool = False
    """Results shown only to the member (an ephemeral reply), wherever the server shows them publicly."""
    dm: bool = False
    """Results sent to the member's DMs (from a server; in DMs they are there anyway)."""

    @model_validator(mode="after")
    def _one_size(self) -> MemberSettings:
        if (self.width is None) != (self.height is None):
            raise ValueError("a size needs both a width and a height")
        if self.aspect is not None and self.width is not None:
            raise ValueError("an aspect or a size, not both")
        return self

    @property
    def is_default(self) -> bool:
        return self == MemberSettings()

    def changed(self, **changes: object) -> MemberSettings:
        """A copy with ``changes``, validated; :class:`UserInputError` saying what is allowed."""
        try:
            return MemberSettings.model_validate({**self.model_dump(), **changes})
        except ValidationError as exc:
            fields = sorted({str(error["loc"][0]) for error in exc.errors() if error["loc"]})
            raise UserInputError(
                "That isn't a valid default: " + ", ".join(_LIMITS.get(name, name) for name in fields) + ".",
                detail=f"invalid member settings: {fields}",
            ) from None

    def fill(self, options: ImagineOptions) -> ImagineOptions:
        """``options`` with every option the member left out taken from their defaults."""
        sized = options.aspect is not None or options.width is not None or options.height is not None
        return dataclasses.replace(
            options,
            model=options.model or self.model,
            sampler=options.sampler or self.sampler,
            steps=options.steps if options.steps is not None else self.steps,
            negative_prompt=options.negative_prompt
            if options.negative_prompt is not None
            else self.negative_prompt,
            n=options.n if options.n is not None else self.n,
            aspect=options.aspect if sized else self.aspect,
            width=options.width if sized else self.width,
            height=options.height if sized else self.height,
        )

    def used_by(self, options: ImagineOptions, *, style_given: bool) -> MemberSettings:
        """Only the defaults a command with ``options`` takes (the ones it gave win); its style is
        looked up after these checks, so whether it gave one is said apart."""
        sized = options.aspect is not None or options.width is not None or options.height is not None
        return MemberSettings(
            model=None if options.model else self.model,
            style=None if style_given else self.style,
            sampler=None if options.sampler else self.sampler,
            steps=None if options.steps is not None else self.steps,
            negative_prompt=None if options.negative_prompt is not None else self.negative_prompt,
            n=None if options.n is not None else self.n,
            aspect=None if sized else self.aspect,
            width=None if sized else self.width,
            height=None if sized else self.height,
        )


_LIMITS: Final = {
    "model": f"a model name of at most {MAX_MODEL_CHARS} characters",
    "width": f"a width that is a multiple of {SIDE_STEP} between {MIN_SIDE} and {MAX_SIDE}",
    "height": f"a height that is a multiple of {SIDE_STEP} between {MIN_SIDE} and {MAX_SIDE}",
    "steps": f"steps between 1 and {MAX_STEPS}",
    "negative_prompt": f"a negative prompt of at most {MAX_PROMPT_CHARS} characters",
    "n": f"a count between 1 and {MAX_N}",
    "sampler": "one of the listed samplers",
    "style": f"a style name of at most {MAX_STYLE_CHARS} characters",
}


def conflicts(member: MemberSettings, config: GuildConfig) -> list[str]:
    """One line per default of ``member`` that this server's limits refuse."""
    limits = config.generation
    lines = []
    model = member.model
    if model is not None and (
        model in config.blocked_models or (config.allowed_models and model not in config.allowed_models)
    ):
        lines.append(f"Your default model “{model}” isn't allowed on this server.")
    style = member.style
    if style is not None and style.strip().casefold() != NO_STYLE and not config.style_allowed(style):
        lines.append(f"Your default style “{style}” isn't allowed on this server.")
    if member.steps is not None and member.steps > limits.max_steps:
        lines.append(f"Your default of {member.steps} steps is above this server's {limits.max_steps}.")
    if member.n is not None and member.n > limits.max_n:
        lines.append(f"Your default count of {member.n} is above this server's {limits.max_n}.")
    if (
        member.width is not None
        and member.height is not None
        and member.width * member.height > limits.max_pixels
    ):
        lines.append(
            f"Your default size {member.width}×{member.height} is above this server's "
            f"{limits.max_pixels:,} pixels."
        )
    return lines


def check_here(member: MemberSettings, config: GuildConfig) -> None:
    """:class:`UserInputError` naming every default of ``member`` this server refuses."""
    lines = conflicts(member, config)
    if lines:
        raise UserInputError("\n".join([*lines, CHANGE_THEM]), detail="member defaults refused by the server")


def imagine_options(
    options: ImagineOptions, member: MemberSettings, config: GuildConfig, *, style_given: bool
) -> ImagineOptions:
    """What /imagine runs with: ``options``, then the member's defaults (refused where this server
    refuses them, the default style too unless the command gave one), with the server's
    negative-prompt prefix in front."""
    check_here(member.used_by(options, style_given=style_given), config)
    filled = member.fill(options)
    return dataclasses.replace(filled, negative_prompt=config.negative_prompt_for(filled.negative_prompt))


class MemberSettingsService:
    """Reads and writes members' settings. Stateless: each call reads the storage."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    async def get(self, discord_id: int) -> MemberSettings:
        """The member's settings; the server's defaults when none are saved, or when the saved
        document can't be read any more (logged: the member is not stopped by it)."""
        stored = await self._storage.member_settings.get(discord_id)
        if stored is None:
            return MemberSettings()
        try:
            return MemberSettings.model_validate_json(stored)
        except ValidationError:
            log.warning(
                "The saved /settings of Discord user %s can't be read: using the defaults", discord_id
            )
            return MemberSettings()

    async def save(self, discord_id: int, settings: MemberSettings) -> None:
        if settings.is_default:
            await self._storage.member_settings.delete(discord_id)
            return
        await self._storage.member_settings.set(discord_id, settings.model_dump_json(exclude_defaults=True))

    async def reset(self, discord_id: int) -> bool:
        """Forget the member's settings; returns whether there were any."""
        return await self._storage.member_settings.delete(discord_id)
