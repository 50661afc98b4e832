"""Per-server settings: a registry of typed settings, the resolved :class:`GuildConfig`, and the service
that reads (cached) and writes (validated, audited, all-or-nothing) them.

Every setting is stored in ``guild_settings`` as its canonical text (what ``/config show`` prints), so
one parser reads both what an admin typed and what was stored. Values stored under an older
``config.toml`` that no longer fit are ignored with a warning rather than breaking the server.
Per-channel overrides are stored under ``<name>#<channel id>``.

The sponsor key is not a plain setting: it is checked with the AI Horde, stored encrypted in its own
table (an encrypted column, so ``rotate_all`` covers it) and never shown, only whose key it is.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Generic, Literal, TypeVar, cast, get_args

from pydantic import ValidationError

from bot.config import GenerationDefaults
from bot.crypto import DecryptionError, KeyBindingError, KeyRing, binding
from bot.errors import BotError, HordeUnavailableError, UserInputError
from bot.horde import ANON_API_KEY, AIHordeAPIAsyncSimpleClient, AIHordeRequestError, FindUserRequest
from bot.horde.consts import KNOWN_IMAGE_SAMPLERS
from bot.services.accounts import ResolvedKey, SecretRegistry
from bot.services.patterns import (
    ALLOWED,
    MAX_PATTERN_LENGTH,
    BlockedPattern,
    PatternError,
    compile_pattern,
)
from bot.storage import GuildSettingAuditRecord, GuildSponsorKeyRecord, Storage

log = logging.getLogger(__name__)

T = TypeVar("T")

NsfwPolicy = Literal["age_restricted_only", "off"]
Visibility = Literal["public", "private"]

GENERATION_COMMANDS: Final = ("imagine", "write", "alchemy")
"""The commands that start generations, for ``allowed_commands``; later generation commands add theirs."""
SPONSOR_KEY: Final = "sponsor_key"
CHANNEL_SEPARATOR: Final = "#"

MAX_LIST_ITEMS: Final = 100
MAX_WORD_LENGTH: Final = 100
MAX_PATTERNS: Final = 25
MAX_SHOWN_PATTERN: Final = 60
MAX_MODEL_NAME: Final = 100
MAX_NEGATIVE_PROMPT: Final = 1000
MAX_PROMPT_LENGTH: Final = 6000
"""Discord's longest string option: a longer limit could never be reached."""
MAX_TEXT_TOKENS: Final = 4096
"""The Horde's most for a text's ``max_length``."""
MAX_COOLDOWN_S: Final = 86_400
MAX_CONCURRENT: Final = 100
MAX_GIFT_KUDOS: Final = 10_000
MAX_DAILY_KUDOS: Final = 10_000_000
MIN_SIDE: Final = 64
MAX_SIDE: Final = 3072
SIDE_STEP: Final = 64

_NONE_WORDS: Final = frozenset({"", "none", "-", "all", "any"})
_TRUE: Final = frozenset({"on", "yes", "true", "1", "enabled", "enable"})
_FALSE: Final = frozenset({"off", "no", "false", "0", "disabled", "disable"})
_CHANNEL_REF: Final = re.compile(r"<#(\d{15,21})>|(\d{15,21})")
_CUSTOM_EMOJI: Final = re.compile(r"<a?:\w{2,32}:\d{15,21}>")


class SettingGroup(StrEnum):
    defaults = "defaults"
    limits = "limits"
    models = "models"
    filters = "filters"
    channels = "channels"
    nsfw = "nsfw"
    access = "access"
    rate = "rate"
    reactions = "reactions"
    visibility = "visibility"
    logging = "logging"


class SettingValueError(UserInputError):
    """A value an admin typed cannot be used; the message names the setting and what is allowed."""


class UnknownSettingError(UserInputError):
    pass


@dataclass(frozen=True, slots=True)
class Setting(Generic[T]):
    """One server setting. ``parse`` raises ``ValueError`` (its text, if any, adds to ``allowed``)."""

    name: str
    group: SettingGroup
    description: str
    allowed: str
    parse: Callable[[str], T]
    format: Callable[[T], str]
    default: Callable[[GenerationDefaults], T]
    per_channel: bool = False
    secret: bool = False

    def read(self, text: str) -> T:
        try:
            return self.parse(text.strip())
        except ValueError as exc:
            why = f" ({exc})" if str(exc) else ""
            raise SettingValueError(f"`{self.name}`{why}: allowed is {self.allowed}.") from None

    def canonical(self, text: str) -> str:
        return self.format(self.read(text))


# -- parsers and formatters ------------------------------------------------------------------------


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text.replace("_", "").replace(",", ""))
        if not low <= value <= high:
            raise ValueError
        return value

    return parse


def _float_range(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = round(float(text), 2)
        if not low <= value <= high:
            raise ValueError
        return value

    return parse


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError


def _format_bool(value: bool) -> str:
    return "on" if value else "off"


def _choice(choices: Sequence[str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        lowered = text.lower().replace("-", "_").replace(" ", "_")
        if lowered not in choices:
            raise ValueError
        return lowered

    return parse


def _text(max_length: int) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if len(text) > max_length or not text.isprintable():
            raise ValueError
        return text

    return parse


def _model_name(text: str) -> str:
    if not text or len(text) > MAX_MODEL_NAME or not text.isprintable():
        raise ValueError
    return text


def _sampler(text: str) -> str:
    try:
        return KNOWN_IMAGE_SAMPLERS(text).value
    except ValueError:
        raise ValueError from None


def _size(text: str) -> tuple[int, int]:
    width_text, sep, height_text = text.lower().replace("×", "x").replace(" ", "").partition("x")
    if not sep:
        raise ValueError
    width, height = int(width_text), int(height_text)
    for side in (width, height):
        if not MIN_SIDE <= side <= MAX_SIDE or side % SIDE_STEP:
            raise ValueError
    return width, height


def _format_size(value: tuple[int, int]) -> str:
    return f"{value[0]}x{value[1]}"


def _items(text: str) -> list[str]:
    """A JSON list of strings, or comma-separated items; ``none`` is the empty list."""
    if text.lower() in _NONE_WORDS:
        return []
    if text.startswith("["):
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError:
            raise ValueError("not a valid JSON list") from None
        if not isinstance(loaded, list) or not all(isinstance(item, str) for item in loaded):
            raise ValueError("a JSON list must hold strings only")
        items = [item.strip() for item in loaded]
    else:
        items = [item.strip() for item in text.split(",")]
    items = list(dict.fromkeys(item for item in items if item))
    if len(items) > MAX_LIST_ITEMS:
        raise ValueError(f"at most {MAX_LIST_ITEMS} entries")
    return items


def _string_set(item: Callable[[str], str]) -> Callable[[str], frozenset[str]]:
    def parse(text: str) -> frozenset[str]:
        return frozenset(item(entry) for entry in _items(text))

    return parse


def _format_string_set(value: frozenset[str]) -> str:
    if not value:
        return "none"
    joined = ", ".join(sorted(value))
    # Entries such as "a,b", "-" or "[x" would read back as something else: JSON keeps them whole.
    try:
        if frozenset(_items(joined)) == value:
            return joined
    except ValueError:
        pass
    return json.dumps(sorted(value), ensure_ascii=False)


def _word(text: str) -> str:
    if len(text) > MAX_WORD_LENGTH or not text.isprintable():
        raise ValueError(f"each word or phrase at most {MAX_WORD_LENGTH} characters")
    return text.lower()


def _words(text: str) -> tuple[str, ...]:
    return tuple(sorted(_string_set(_word)(text)))


def _format_words(value: tuple[str, ...]) -> str:
    return _format_string_set(frozenset(value))


def _pattern_entries(text: str) -> list[str]:
    # A single pattern may contain commas ({1,3}); several need the JSON list form.
    if text.lower() in _NONE_WORDS:
        return []
    entries = _items(text) if text.startswith("[") else [text]
    if len(entries) > MAX_PATTERNS:
        raise ValueError(f"at most {MAX_PATTERNS} patterns")
    return entries


def _compile(entry: str) -> BlockedPattern:
    try:
        return compile_pattern(entry)
    except PatternError as exc:
        raise PatternError(f"“{entry[:MAX_SHOWN_PATTERN]}”: {exc}") from None


def _patterns(text: str) -> tuple[str, ...]:
    entries = _pattern_entries(text)
    for entry in entries:
        _compile(entry)
    return tuple(entries)


def _stored_patterns(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Stored patterns that still compile, and why each other one is no longer applied.

    Patterns saved before they ran on RE2 may use what RE2 cannot do: the others keep working.
    """
    kept: list[str] = []
    refused: list[str] = []
    for entry in _pattern_entries(text):
        try:
            _compile(entry)
        except PatternError as exc:
            refused.append(str(exc))
        else:
            kept.append(entry)
    return tuple(kept), tuple(refused)


def _format_patterns(value: tuple[str, ...]) -> str:
    if not value:
        return "none"
    if len(value) == 1 and not value[0].startswith("["):
        return value[0]
    return json.dumps(list(value), ensure_ascii=False)


def _channel_ids(text: str) -> frozenset[int]:
    if text.lower() in _NONE_WORDS:
        return frozenset()
    ids: set[int] = set()
    for entry in text.replace(",", " ").split():
        match = _CHANNEL_REF.fullmatch(entry)
        if match is None:
            raise ValueError
        ids.add(int(match.group(1) or match.group(2)))
    if len(ids) > MAX_LIST_ITEMS:
        raise ValueError(f"at most {MAX_LIST_ITEMS} channels")
    return frozenset(ids)


def _format_channel_ids(value: frozenset[int]) -> str:
    return ", ".join(f"<#{channel}>" for channel in sorted(value)) or "none"


def _optional_channel(text: str) -> int | None:
    ids = _channel_ids(text)
    if len(ids) > 1:
        raise ValueError("only one channel")
    return next(iter(ids), None)


def _format_optional_channel(value: int | None) -> str:
    return "none" if value is None else f"<#{value}>"


def _emoji(text: str) -> str:
    if _CUSTOM_EMOJI.fullmatch(text):
        return text
    if not 1 <= len(text) <= 8 or any(char.isascii() for char in text) or not text.isprintable():
        raise ValueError
    return text


def _commands(text: str) -> frozenset[str] | None:
    if text.lower() in ("all", "any"):
        return None
    return _string_set(_choice(GENERATION_COMMANDS))(text)


def _format_commands(value: frozenset[str] | None) -> str:
    return "all" if value is None else _format_string_set(value)


def _identity(value: str) -> str:
    return value


def _const(value: T) -> Callable[[GenerationDefaults], T]:
    return lambda _defaults: value


def _count(low: int, high: int) -> str:
    return f"a whole number from {low:,} to {high:,}"


# -- the registry ----------------------------------------------------------------------------------

_NSFW_POLICIES: Final = get_args(NsfwPolicy)
_VISIBILITIES: Final = get_args(Visibility)

SETTINGS: Final[tuple[Setting[Any], ...]] = (
    Setting(
        "model",
        SettingGroup.defaults,
        "The model used when a member names none.",
        f"a model name of 1 to {MAX_MODEL_NAME} characters",
        _model_name,
        _identity,
        lambda d: d.model,
    ),
    Setting(
        "steps",
        SettingGroup.defaults,
        "Sampling steps when a member gives none.",
        "a whole number from 1 to this server's max_steps",
        _int_range(1, 500),
        str,
        lambda d: d.steps,
    ),
    Setting(
        "size",
        SettingGroup.defaults,
        "Width x height when a member gives none.",
        f"WIDTHxHEIGHT, each a multiple of {SIDE_STEP} from {MIN_SIDE} to {MAX_SIDE}, "
        "at most this server's max_pixels in all",
        _size,
        _format_size,
        lambda d: (d.width, d.height),
    ),
    Setting(
        "sampler",
        SettingGroup.defaults,
        "The sampler when a member chooses none.",
        "one of " + ", ".join(KNOWN_IMAGE_SAMPLERS),
        _sampler,
        _identity,
        lambda d: d.sampler.value,
    ),
    Setting(
        "cfg_scale",
        SettingGroup.defaults,
        "CFG scale when a member gives none.",
        "a number from 0 to 100",
        _float_range(0, 100),
        lambda v: f"{v:g}",
        lambda d: d.cfg_scale,
    ),
    Setting(
        "negative_prompt",
        SettingGroup.defaults,
        "Put in front of every negative prompt (none: nothing).",
        f"text of at most {MAX_NEGATIVE_PROMPT} characters, or none",
        lambda text: "" if text.lower() == "none" else _text(MAX_NEGATIVE_PROMPT)(text),
        lambda v: v or "none",
        lambda d: d.negative_prompt,
    ),
    Setting(
        "max_steps",
        SettingGroup.limits,
        "The most sampling steps a generation may use.",
        _count(1, 500) + ", at least the default steps",
        _int_range(1, 500),
        str,
        lambda d: d.max_steps,
    ),
    Setting(
        "max_pixels",
        SettingGroup.limits,
        "The most pixels (width x height) an image may have.",
        _count(64 * 64, MAX_SIDE * MAX_SIDE) + ", at least the default size",
        _int_range(64 * 64, MAX_SIDE * MAX_SIDE),
        str,
        lambda d: d.max_pixels,
    ),
    Setting(
        "max_count",
        SettingGroup.limits,
        "The most images one generation may make.",
        _count(1, 20),
        _int_range(1, 20),
        str,
        lambda d: d.max_n,
    ),
    Setting(
        "max_prompt_length",
        SettingGroup.limits,
        "The most characters a member may type as a prompt (with the negative prompt), any command.",
        _count(16, MAX_PROMPT_LENGTH),
        _int_range(16, MAX_PROMPT_LENGTH),
        str,
        lambda d: d.max_prompt_length,
    ),
    Setting(
        "max_text_tokens",
        SettingGroup.limits,
        "The most tokens /write may write (its max_length).",
        _count(16, MAX_TEXT_TOKENS),
        _int_range(16, MAX_TEXT_TOKENS),
        str,
        lambda d: d.max_text_tokens,
    ),
    Setting(
        "allowed_models",
        SettingGroup.models,
        "Only these models may be used (none: any model).",
        f"model names separated by commas, or none; at most {MAX_LIST_ITEMS}",
        _string_set(_model_name),
        _format_string_set,
        _const(frozenset()),
    ),
    Setting(
        "blocked_models",
        SettingGroup.models,
        "These models may not be used.",
        f"model names separated by commas, or none; at most {MAX_LIST_ITEMS}",
        _string_set(_model_name),
        _format_string_set,
        _const(frozenset()),
    ),
    Setting(
        "blocked_words",
        SettingGroup.filters,
        "Prompts containing these words or phrases are refused.",
        f"words or phrases separated by commas, or none; at most {MAX_LIST_ITEMS}",
        _words,
        _format_words,
        _const(()),
    ),
    Setting(
        "blocked_patterns",
        SettingGroup.filters,
        "Prompts matching these regular expressions (case-insensitive) are refused.",
        f'one regular expression, or a JSON list of up to {MAX_PATTERNS} such as ["fo+", "ba[rz]"], '
        f"each at most {MAX_PATTERN_LENGTH} characters; or none. Patterns: {ALLOWED}",
        _patterns,
        _format_patterns,
        _const(()),
    ),
    Setting(
        "allowed_channels",
        SettingGroup.channels,
        "Generation only in these channels (none: everywhere).",
        "channel mentions or ids separated by spaces or commas, or none",
        _channel_ids,
        _format_channel_ids,
        _const(frozenset()),
    ),
    Setting(
        "blocked_channels",
        SettingGroup.channels,
        "No generation in these channels.",
        "channel mentions or ids separated by spaces or commas, or none",
        _channel_ids,
        _format_channel_ids,
        _const(frozenset()),
    ),
    Setting(
        "allowed_commands",
        SettingGroup.channels,
        "Which generation commands may be used (per channel too).",
        "all, none, or some of: " + ", ".join(GENERATION_COMMANDS),
        _commands,
        _format_commands,
        _const(None),
        per_channel=True,
    ),
    Setting(
        "nsfw_policy",
        SettingGroup.nsfw,
        "NSFW images: off, or only in age-restricted channels (per channel too).",
        "one of " + ", ".join(_NSFW_POLICIES),
        _choice(_NSFW_POLICIES),
        _identity,
        lambda d: d.nsfw_policy,
        per_channel=True,
    ),
    Setting(
        "allow_anonymous",
        SettingGroup.access,
        "Members without their own key (and without a sponsor key) may use the anonymous key.",
        "on or off",
        _bool,
        _format_bool,
        lambda d: d.allow_anonymous,
    ),
    Setting(
        SPONSOR_KEY,
        SettingGroup.access,
        "This server's AI Horde key for members without their own; stored encrypted, never shown.",
        "an AI Horde API key the AI Horde accepts (not the anonymous key)",
        _identity,
        _identity,
        _const(""),
        secret=True,
    ),
    Setting(
        "daily_kudos_member",
        SettingGroup.access,
        "Kudos each member may spend per day (UTC) on the sponsor or anonymous key (0: no limit).",
        _count(0, MAX_DAILY_KUDOS),
        _int_range(0, MAX_DAILY_KUDOS),
        str,
        _const(0),
    ),
    Setting(
        "daily_kudos_server",
        SettingGroup.access,
        "Kudos the whole server may spend per day (UTC) on the sponsor or anonymous key (0: no limit).",
        _count(0, MAX_DAILY_KUDOS),
        _int_range(0, MAX_DAILY_KUDOS),
        str,
        _const(0),
    ),
    Setting(
        "cooldown_seconds",
        SettingGroup.rate,
        "Seconds a member waits between generations (0: none).",
        _count(0, MAX_COOLDOWN_S),
        _int_range(0, MAX_COOLDOWN_S),
        str,
        _const(0),
    ),
    Setting(
        "max_jobs_member",
        SettingGroup.rate,
        "Generations one member may run at once (0: no limit).",
        _count(0, MAX_CONCURRENT),
        _int_range(0, MAX_CONCURRENT),
        str,
        _const(0),
    ),
    Setting(
        "max_jobs_server",
        SettingGroup.rate,
        "Generations the server may run at once (0: no limit).",
        _count(0, MAX_CONCURRENT),
        _int_range(0, MAX_CONCURRENT),
        str,
        _const(0),
    ),
    Setting(
        "rerun_emoji",
        SettingGroup.reactions,
        "Reacting with this reruns a generation.",
        "one emoji",
        _emoji,
        _identity,
        _const("🔁"),
    ),
    Setting(
        "rerun_reactions",
        SettingGroup.reactions,
        "Whether reacting reruns.",
        "on or off",
        _bool,
        _format_bool,
        _const(True),
    ),
    Setting(
        "kudos_emoji",
        SettingGroup.reactions,
        "Reacting with this gifts kudos to the author.",
        "one emoji",
        _emoji,
        _identity,
        _const("⭐"),
    ),
    Setting(
        "kudos_reactions",
        SettingGroup.reactions,
        "Whether reacting gifts kudos (off by default: it spends members' kudos).",
        "on or off",
        _bool,
        _format_bool,
        _const(False),
    ),
    Setting(
        "kudos_amount",
        SettingGroup.reactions,
        "Kudos one gifting reaction sends to the author.",
        _count(1, MAX_GIFT_KUDOS),
        _int_range(1, MAX_GIFT_KUDOS),
        str,
        _const(10),
    ),
    Setting(
        "visibility",
        SettingGroup.visibility,
        "Results public in the channel, or private to the member (per channel too).",
        "one of " + ", ".join(_VISIBILITIES),
        _choice(_VISIBILITIES),
        _identity,
        _const("public"),
        per_channel=True,
    ),
    Setting(
        "log_channel",
        SettingGroup.logging,
        "Where changes of these settings are posted (none: nowhere).",
        "one channel mention or id, or none",
        _optional_channel,
        _format_optional_channel,
        _const(None),
    ),
)
REGISTRY: Final[Mapping[str, Setting[Any]]] = {setting.name: setting for setting in SETTINGS}


def get_setting(name: str) -> Setting[Any]:
    setting = REGISTRY.get(name.strip().lower())
    if setting is None:
        raise UnknownSettingError(f"There is no setting “{name[:60]}”. Use /config show to list them.")
    return setting


def storage_key(name: str, channel_id: int | None) -> str:
    return name if channel_id is None else f"{name}{CHANNEL_SEPARATOR}{channel_id}"


# -- the resolved configuration -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GuildConfig:
    """A server's settings: ``config.toml`` defaults with the server's overrides applied.

    ``generation`` carries the /imagine defaults and limits in the shape the request builder takes.
    """

    guild_id: int | None
    generation: GenerationDefaults
    allowed_models: frozenset[str]
    blocked_models: frozenset[str]
    blocked_words: tuple[str, ...]
    blocked_patterns: tuple[str, ...]
    allowed_channels: frozenset[int]
    blocked_channels: frozenset[int]
    allowed_commands: frozenset[str] | None
    nsfw_policy: NsfwPolicy
    allow_anonymous: bool
    sponsor_username: str | None
    daily_kudos_member: int
    daily_kudos_server: int
    cooldown_seconds: int
    max_jobs_member: int
    max_jobs_server: int
    rerun_emoji: str
    rerun_reactions: bool
    kudos_emoji: str
    kudos_reactions: bool
    kudos_amount: int
    visibility: Visibility
    log_channel: int | None
    values: Mapping[str, Any] = field(repr=False)
    """Every setting's typed value, by name."""
    overridden: frozenset[str] = frozenset()
    """The names set for this server (channel overrides as ``name#channel``)."""
    channel_overrides: Mapping[int, Mapping[str, Any]] = field(default_factory=dict, repr=False)
    refused_patterns: tuple[str, ...] = ()
    """Stored patterns no longer applied, each with why (see :func:`_stored_patterns`)."""
    _compiled_patterns: tuple[BlockedPattern, ...] = field(default=(), repr=False)

    @property
    def has_sponsor_key(self) -> bool:
        return self.sponsor_username is not None

    def in_channel(self, name: str, channel_id: int | None) -> Any:
        """A per-channel setting's value in ``channel_id``: its override, else the server's value."""
        if channel_id is not None:
            overrides = self.channel_overrides.get(channel_id, {})
            if name in overrides:
                return overrides[name]
        return self.values[name]

    def nsfw_allowed(self, channel_id: int | None, *, age_restricted: bool) -> bool:
        """NSFW only in age-restricted channels, and never where the policy is off."""
        return age_restricted and self.in_channel("nsfw_policy", channel_id) == "age_restricted_only"

    def commands_in(self, channel_id: int | None) -> frozenset[str] | None:
        """The generation commands allowed in ``channel_id``; ``None`` means all."""
        return cast("frozenset[str] | None", self.in_channel("allowed_commands", channel_id))

    def visibility_in(self, channel_id: int | None) -> Visibility:
        return cast(Visibility, self.in_channel("visibility", channel_id))

    def negative_prompt_for(self, typed: str | None) -> str | None:
        """The server's negative-prompt prefix in front of what the member typed."""
        parts = [part.strip() for part in (self.generation.negative_prompt, typed or "") if part.strip()]
        return ", ".join(parts) or None

    def blocked_term_in(self, text: str) -> str | None:
        """The first blocked word or pattern found in ``text`` (the word, or "a blocked pattern")."""
        for word in self.blocked_words:
            if re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, re.IGNORECASE):
                return f"“{word}”"
        for pattern in self._compiled_patterns:
            if pattern.search(text):  # RE2: linear in the text, whatever the admin wrote
                return "a blocked pattern"
        return None


def _generation(base: GenerationDefaults, values: Mapping[str, Any]) -> GenerationDefaults:
    width, height = values["size"]
    return GenerationDefaults.model_validate(
        {
            "max_steps": values["max_steps"],
            "max_pixels": values["max_pixels"],
            "max_n": values["max_count"],
            "max_prompt_length": values["max_prompt_length"],
            "max_text_tokens": values["max_text_tokens"],
            "model": values["model"],
            "steps": values["steps"],
            "width": width,
            "height": height,
            "sampler": values["sampler"],
            "cfg_scale": values["cfg_scale"],
            "n": min(base.n, values["max_count"]),
            "negative_prompt": values["negative_prompt"],
            "allow_anonymous": values["allow_anonymous"],
            "nsfw_policy": values["nsfw_policy"],
        }
    )


def _consistency_problems(values: Mapping[str, Any]) -> dict[str, str]:
    """Cross-setting rules, keyed by the settings involved, so a message names what to change."""
    problems: dict[str, str] = {}
    if values["steps"] > values["max_steps"]:
        problems["steps"] = problems["max_steps"] = (
            f"the default steps ({values['steps']}) must not exceed max_steps ({values['max_steps']})"
        )
    width, height = values["size"]
    if width * height > values["max_pixels"]:
        problems["size"] = problems["max_pixels"] = (
            f"the default size ({width}x{height} = {width * height:,} pixels) must not exceed "
            f"max_pixels ({values['max_pixels']:,})"
        )
    model = values["model"]
    if model in values["blocked_models"] or (
        values["allowed_models"] and model not in values["allowed_models"]
    ):
        problems["model"] = problems["allowed_models"] = problems["blocked_models"] = (
            f"the default model ({model}) must be allowed and not blocked"
        )
    return problems


def build_config(
    guild_id: int | None,
    base: GenerationDefaults,
    stored: Mapping[str, Any],
    *,
    sponsor_username: str | None = None,
) -> GuildConfig:
    """The configuration from the ``config.toml`` defaults and the stored overrides.

    A stored value that no longer parses or fits (``config.toml`` changed since) is skipped.
    """
    values: dict[str, Any] = {setting.name: setting.default(base) for setting in SETTINGS}
    overridden: set[str] = set()
    channel_overrides: dict[int, dict[str, Any]] = {}
    refused_patterns: tuple[str, ...] = ()
    for key, raw in sorted(stored.items()):
        name, _, channel_text = key.partition(CHANNEL_SEPARATOR)
        setting = REGISTRY.get(name)
        if (
            setting is None
            or setting.secret
            or not isinstance(raw, str)
            or (channel_text and not setting.per_channel)
        ):
            log.warning("Guild %s: ignoring the stored setting %r", guild_id, key)
            continue
        try:
            if name == "blocked_patterns" and not channel_text:
                value, refused_patterns = _stored_patterns(raw.strip())
                for why in refused_patterns:
                    log.warning("Guild %s: a stored blocked pattern is no longer applied: %s", guild_id, why)
            else:
                value = setting.read(raw)
            if channel_text:
                channel_overrides.setdefault(int(channel_text), {})[name] = value
            else:
                values[name] = value
        except (BotError, ValueError) as exc:
            log.warning("Guild %s: ignoring the stored setting %r: %s", guild_id, key, exc)
            continue
        overridden.add(key)
    # The defaults are consistent (config.toml is validated), so dropping the overrides involved
    # in a contradiction always ends in a consistent configuration.
    while conflicting := set(_consistency_problems(values)) & overridden:
        for name in sorted(conflicting):
            log.warning(
                "Guild %s: ignoring the stored setting %r: it contradicts another one", guild_id, name
            )
            values[name] = REGISTRY[name].default(base)
        overridden -= conflicting
    values[SPONSOR_KEY] = ""
    if sponsor_username is not None:
        overridden.add(SPONSOR_KEY)
    return GuildConfig(
        guild_id=guild_id,
        generation=_generation(base, values),
        allowed_models=values["allowed_models"],
        blocked_models=values["blocked_models"],
        blocked_words=values["blocked_words"],
        blocked_patterns=values["blocked_patterns"],
        allowed_channels=values["allowed_channels"],
        blocked_channels=values["blocked_channels"],
        allowed_commands=values["allowed_commands"],
        nsfw_policy=values["nsfw_policy"],
        allow_anonymous=values["allow_anonymous"],
        sponsor_username=sponsor_username,
        daily_kudos_member=values["daily_kudos_member"],
        daily_kudos_server=values["daily_kudos_server"],
        cooldown_seconds=values["cooldown_seconds"],
        max_jobs_member=values["max_jobs_member"],
        max_jobs_server=values["max_jobs_server"],
        rerun_emoji=values["rerun_emoji"],
        rerun_reactions=values["rerun_reactions"],
        kudos_emoji=values["kudos_emoji"],
        kudos_reactions=values["kudos_reactions"],
        kudos_amount=values["kudos_amount"],
        visibility=values["visibility"],
        log_channel=values["log_channel"],
        values=values,
        overridden=frozenset(overridden),
        channel_overrides=channel_overrides,
        refused_patterns=refused_patterns,
        _compiled_patterns=tuple(compile_pattern(pattern) for pattern in values["blocked_patterns"]),
    )


# -- the service -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SettingChange:
    """What ``set`` or ``reset`` did: ``old`` and ``new`` as ``/config show`` prints them."""

    name: str
    channel_id: int | None
    old: str
    new: str
    changed: bool


@dataclass(frozen=True, slots=True)
class ShownSetting:
    name: str
    group: SettingGroup
    value: str
    overridden: bool
    description: str


SPONSOR_REJECTED_MESSAGE: Final = (
    "The AI Horde did not accept that API key, so it was not saved. Check that you copied it whole."
)
SPONSOR_ANONYMOUS_MESSAGE: Final = (
    "The anonymous key can't be a sponsor key; use a key of your own AI Horde account."
)
SPONSOR_MALFORMED_MESSAGE: Final = (
    "That doesn't look like an AI Horde API key (22 characters of letters, digits, `-` and `_`, "
    "or a shared-key UUID)."
)
SPONSOR_UNREADABLE_MESSAGE: Final = (
    "This server's sponsor key can't be read any more (the bot's encryption keys changed). "
    "A server admin needs to set it again with /config set sponsor_key."
)
SPONSOR_NOT_BOUND_MESSAGE: Final = (
    "This server's sponsor key can't be used: in the bot's records it isn't bound to this server, so it "
    "was not used. A server admin needs to set it again with /config set sponsor_key."
)
NOT_PER_CHANNEL_MESSAGE: Final = (
    "`{name}` is a server-wide setting; it can't be set per channel. Per channel: {names}."
)


class SponsorKeyUnreadableError(BotError):
    default_message = SPONSOR_UNREADABLE_MESSAGE


class GuildSettingsService:
    """Reads and writes server settings. Reads are cached per guild, for at most ``cache_ttl_s``.

    Several bot processes may share the database. This service's own writes invalidate at once;
    other processes' writes arrive through ``storage.watch_guild_settings`` where the backend
    pushes them (PostgreSQL), and the time limit bounds how stale a guild may be otherwise (SQLite
    shared by processes, or the push connection down). ``cache_ttl_s = 0`` disables the cache.
    """

    DEFAULT_CACHE_TTL_S: Final = 30.0
    DEFAULT_CACHE_SIZE: Final = 10_000
    """Servers kept at once; past it the least recently read is dropped (read again when needed)."""

    def __init__(
        self,
        storage: Storage,
        defaults: GenerationDefaults,
        *,
        keyring: KeyRing,
        horde: AIHordeAPIAsyncSimpleClient,
        redactor: SecretRegistry | None = None,
        cache_ttl_s: float = DEFAULT_CACHE_TTL_S,
        cache_size: int = DEFAULT_CACHE_SIZE,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if cache_ttl_s < 0:
            raise ValueError("cache_ttl_s must not be negative")
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        self._storage = storage
        self._defaults = defaults
        self._keyring = keyring
        self._horde = horde
        self._redactor = redactor
        self._cache_ttl_s = cache_ttl_s
        # Looked up at each call, not bound at import, so a patched clock (SimCord's virtual one) applies.
        self._clock = clock or (lambda: time.monotonic())
        # guild → (config, when it was read), least recently read first; at most cache_size.
        self._cache: OrderedDict[int, tuple[GuildConfig, float]] = OrderedDict()
        self._cache_size = cache_size
        # Bumped on every invalidation (per guild, and for all at once), so a read that started
        # before a write does not cache what it read. Only guilds being read have an entry.
        self._versions: dict[int, int] = {}
        self._readers: Counter[int] = Counter()
        self._generation = 0
        self._dm_config = build_config(None, defaults, {})
        self._unwatch = storage.watch_guild_settings(self._changed_in_storage)

    def __repr__(self) -> str:
        return f"GuildSettingsService({self._storage!r}, cached={len(self._cache)})"

    async def get(self, guild_id: int | None) -> GuildConfig:
        """The configuration in ``guild_id`` (``None``, a DM: the ``config.toml`` defaults)."""
        if guild_id is None:
            return self._dm_config
        cached = self._cache.get(guild_id)
        if cached is not None:
            config, read_at = cached
            if self._clock() - read_at < self._cache_ttl_s:
                self._cache.move_to_end(guild_id)
                return config
            del self._cache[guild_id]
        version = (self._generation, self._versions.get(guild_id, 0))
        read_at = self._clock()
        self._readers[guild_id] += 1
        try:
            config = await self._load(guild_id)
        finally:
            unchanged = (self._generation, self._versions.get(guild_id, 0)) == version
            self._readers[guild_id] -= 1
            if not self._readers[guild_id]:
                del self._readers[guild_id]
                self._versions.pop(guild_id, None)
        if self._cache_ttl_s > 0 and unchanged:
            self._cache[guild_id] = (config, read_at)
            self._cache.move_to_end(guild_id)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return config

    def invalidate(self, guild_id: int) -> None:
        if guild_id in self._readers:
            self._versions[guild_id] = self._versions.get(guild_id, 0) + 1
        self._cache.pop(guild_id, None)

    def invalidate_all(self) -> None:
        self._generation += 1
        self._cache.clear()

    def close(self) -> None:
        """Stop watching the storage for other processes' changes."""
        self._unwatch()

    def _changed_in_storage(self, guild_id: int | None) -> None:
        if guild_id is None:
            self.invalidate_all()
        else:
            self.invalidate(guild_id)

    async def _load(self, guild_id: int) -> GuildConfig:
        stored = await self._storage.guild_settings.get_all(guild_id)
        sponsor = await self._storage.sponsor_keys.get(guild_id)
        return build_config(
            guild_id,
            self._defaults,
            stored,
            sponsor_username=None if sponsor is None else sponsor.horde_username,
        )

    def show(self, config: GuildConfig) -> list[ShownSetting]:
        """Every setting with its current value as text, in registry (group) order."""
        shown = []
        for setting in SETTINGS:
            if setting.secret:
                value = (
                    f"set (AI Horde user {config.sponsor_username})" if config.has_sponsor_key else "not set"
                )
            else:
                value = setting.format(config.values[setting.name])
            shown.append(
                ShownSetting(
                    setting.name, setting.group, value, setting.name in config.overridden, setting.description
                )
            )
        if config.refused_patterns:
            shown.append(
                ShownSetting(
                    "blocked_patterns not applied",
                    SettingGroup.filters,
                    "; ".join(config.refused_patterns),
                    True,
                    "Stored patterns the bot can no longer match safely: set blocked_patterns again "
                    f"without them. Allowed: {ALLOWED}.",
                )
            )
        for channel_id, overrides in sorted(config.channel_overrides.items()):
            for name, value in overrides.items():
                setting = REGISTRY[name]
                shown.append(
                    ShownSetting(
                        f"{name} in <#{channel_id}>",
                        setting.group,
                        setting.format(value),
                        True,
                        setting.description,
                    )
                )
        return shown

    async def set(
        self, guild_id: int, name: str, text: str, actor_id: int, *, channel_id: int | None = None
    ) -> SettingChange:
        """Validate ``text`` for setting ``name`` against the others and store it with its audit row.

        Raises :class:`SettingValueError` naming what is allowed; then nothing was stored.
        """
        setting = self._writable(name, channel_id)
        if setting.secret:
            return await self._set_sponsor_key(guild_id, text, actor_id)
        value = setting.read(text)
        config = await self.get(guild_id)
        old = self._value_text(config, setting, channel_id)
        new = setting.format(value)
        if channel_id is None:
            problems = _consistency_problems({**config.values, setting.name: value})
            if setting.name in problems:
                raise SettingValueError(f"`{setting.name}`: {problems[setting.name]}.")
        changed = await self._storage.guild_settings.set(
            guild_id, storage_key(setting.name, channel_id), new, actor_id
        )
        self.invalidate(guild_id)
        return SettingChange(setting.name, channel_id, old, new, changed)

    async def reset(
        self, guild_id: int, name: str, actor_id: int, *, channel_id: int | None = None
    ) -> SettingChange:
        """Back to the ``config.toml`` default (or, for a channel, to the server's value)."""
        setting = self._writable(name, channel_id)
        config = await self.get(guild_id)
        old = self._value_text(config, setting, channel_id)
        if setting.secret:
            changed = await self._storage.sponsor_keys.delete(guild_id, actor_id)
            self.invalidate(guild_id)
            return SettingChange(setting.name, None, old, "not set", changed)
        fallback = config.values[setting.name] if channel_id is not None else setting.default(self._defaults)
        new = setting.format(fallback)
        if channel_id is None:
            problems = _consistency_problems({**config.values, setting.name: fallback})
            if setting.name in problems:
                raise SettingValueError(f"`{setting.name}` can't be reset: {problems[setting.name]}.")
        changed = await self._storage.guild_settings.reset(
            guild_id, storage_key(setting.name, channel_id), actor_id
        )
        self.invalidate(guild_id)
        return SettingChange(setting.name, channel_id, old, new, changed)

    async def audit(self, guild_id: int, limit: int = 20) -> list[GuildSettingAuditRecord]:
        return await self._storage.guild_settings.audit(guild_id, limit)

    async def sponsor_key(self, guild_id: int | None) -> ResolvedKey | None:
        """The server's sponsor key, decrypted for one request, or ``None``."""
        if guild_id is None:
            return None
        record = await self._storage.sponsor_keys.get(guild_id)
        if record is None:
            return None
        try:
            apikey = self._keyring.decrypt(record.encrypted_api_key, bound_to=binding("guild", guild_id))
        except KeyBindingError as exc:
            log.error("Refusing the sponsor key of guild %s: %s", guild_id, exc)
            raise SponsorKeyUnreadableError(
                SPONSOR_NOT_BOUND_MESSAGE, detail=f"sponsor key bound to another row on guild {guild_id}"
            ) from None
        except DecryptionError as exc:
            log.error("Cannot decrypt the sponsor key of guild %s: %s", guild_id, exc)
            raise SponsorKeyUnreadableError(detail=f"undecryptable sponsor key of guild {guild_id}") from None
        self._register(apikey)
        return ResolvedKey(apikey=apikey, owner="sponsor", horde_username=record.horde_username)

    def _writable(self, name: str, channel_id: int | None) -> Setting[Any]:
        setting = get_setting(name)
        if channel_id is not None and not setting.per_channel:
            names = ", ".join(s.name for s in SETTINGS if s.per_channel)
            raise SettingValueError(NOT_PER_CHANNEL_MESSAGE.format(name=setting.name, names=names))
        return setting

    @staticmethod
    def _value_text(config: GuildConfig, setting: Setting[Any], channel_id: int | None) -> str:
        if setting.secret:
            return f"set (AI Horde user {config.sponsor_username})" if config.has_sponsor_key else "not set"
        return setting.format(config.in_channel(setting.name, channel_id))

    async def _set_sponsor_key(self, guild_id: int, apikey: str, actor_id: int) -> SettingChange:
        apikey = apikey.strip()
        if apikey == ANON_API_KEY:
            raise SettingValueError(SPONSOR_ANONYMOUS_MESSAGE)
        try:
            FindUserRequest(apikey=apikey)
        except ValidationError:
            raise SettingValueError(SPONSOR_MALFORMED_MESSAGE) from None
        self._register(apikey)
        old = await self._storage.sponsor_keys.get(guild_id)
        try:
            details = await self._horde.find_user(apikey)
        except AIHordeRequestError as exc:
            if exc.http_status in (401, 404):
                raise SettingValueError(SPONSOR_REJECTED_MESSAGE) from None
            log.warning(
                "AI Horde find_user failed for a sponsor key of guild %s: HTTP %s", guild_id, exc.http_status
            )
            raise HordeUnavailableError(detail=f"find_user: HTTP {exc.http_status}") from None
        username = details.username or "unknown"
        await self._storage.sponsor_keys.set(
            GuildSponsorKeyRecord(
                guild_id=guild_id,
                encrypted_api_key=self._keyring.encrypt(apikey, bound_to=binding("guild", guild_id)),
                horde_username=username,
                updated_by=actor_id,
            )
        )
        self.invalidate(guild_id)
        old_text = "not set" if old is None else f"set (AI Horde user {old.horde_username})"
        return SettingChange(SPONSOR_KEY, None, old_text, f"set (AI Horde user {username})", True)

    def _register(self, apikey: str) -> None:
        if self._redactor is not None:
            self._redactor.register_secret(apikey)


def setting_names(prefix: str = "", *, per_channel: bool = False) -> Iterable[str]:
    lowered = prefix.strip().lower()
    for setting in SETTINGS:
        if lowered in setting.name and (setting.per_channel or not per_channel):
            yield setting.name
