"""Every server setting, declared once: :class:`ServerSettings`.

A declaration is a typed :class:`Setting` on :class:`ServerSettings`: its group, description, what
it allows, how its text is read and written, and its default. The registry (:data:`SETTINGS`,
:data:`REGISTRY`) is read off the class, and :class:`~bot.services.settings.config.GuildConfig`
subclasses it, so each declaration is also a typed attribute of a server's configuration
(``config.cooldown_seconds`` is an ``int`` to mypy, checked against the parser, the formatter and
the default). Adding a setting is adding one declaration here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Final, Generic, Literal, TypeVar, get_args, overload

from pydantic import BaseModel, ConfigDict

from bot import generation_limits as bounds
from bot.config import GenerationDefaults
from bot.errors import UserInputError
from bot.horde.consts import KNOWN_IMAGE_SAMPLERS
from bot.services.settings import parsers as p
from bot.services.settings.patterns import ALLOWED, MAX_PATTERN_LENGTH

T = TypeVar("T")

NsfwPolicy = Literal["age_restricted_only", "off"]
Visibility = Literal["public", "private"]

CHANNEL_SEPARATOR: Final = "#"
MAX_COOLDOWN_S: Final = 86_400
MAX_CONCURRENT: Final = 100
MAX_GIFT_KUDOS: Final = 10_000
MAX_DAILY_KUDOS: Final = 10_000_000


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


@dataclass(frozen=True, slots=True, eq=False)
class Setting(Generic[T]):
    """One server setting. ``parse`` raises ``ValueError`` (its text, if any, adds to ``allowed``).

    Declared on :class:`ServerSettings`, whose attribute name is its name; read on an instance, it
    is that server's value.
    """

    group: SettingGroup
    description: str
    allowed: str
    parse: Callable[[str], T]
    format: Callable[[T], str]
    default: Callable[[GenerationDefaults], T]
    per_channel: bool = False
    secret: bool = False
    name: str = field(init=False, default="")

    def __set_name__(self, owner: type[Any], name: str) -> None:
        object.__setattr__(self, "name", name)

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> Setting[T]: ...

    @overload
    def __get__(self, instance: ServerSettings, owner: type[Any]) -> T: ...

    def __get__(self, instance: ServerSettings | None, owner: type[Any]) -> Setting[T] | T:
        if instance is None:
            return self
        return self.value_in(instance.values)

    def value_in(self, values: Mapping[str, Any]) -> T:
        # Every value in a configuration was produced by this setting's parser or default.
        value: T = values[self.name]
        return value

    def read(self, text: str) -> T:
        try:
            return self.parse(text.strip())
        except ValueError as exc:
            why = f" ({exc})" if str(exc) else ""
            raise SettingValueError(f"`{self.name}`{why}: allowed is {self.allowed}.") from None

    def canonical(self, text: str) -> str:
        return self.format(self.read(text))


_CHANNELS_ALLOWED: Final = "channel mentions or ids separated by spaces or commas, or none"


class ServerSettings(BaseModel):
    """The server settings, in ``/config show`` order; an instance holds one server's ``values``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    values: Mapping[str, Any]
    """Every setting's typed value, by name."""

    model: ClassVar[Setting[str]] = Setting(
        SettingGroup.defaults,
        "The model used when a member names none.",
        f"a model name of 1 to {p.MAX_MODEL_NAME} characters",
        p.model_name,
        p.identity,
        lambda d: d.model,
    )
    steps: ClassVar[Setting[int]] = Setting(
        SettingGroup.defaults,
        "Sampling steps when a member gives none.",
        "a whole number from 1 to this server's max_steps",
        p.int_range(1, bounds.MAX_STEPS),
        str,
        lambda d: d.steps,
    )
    size: ClassVar[Setting[tuple[int, int]]] = Setting(
        SettingGroup.defaults,
        "Width x height when a member gives none.",
        f"WIDTHxHEIGHT, each a multiple of {bounds.SIDE_STEP} from {bounds.MIN_SIDE} to {bounds.MAX_SIDE}, "
        "at most this server's max_pixels in all",
        p.size,
        p.format_size,
        lambda d: (d.width, d.height),
    )
    sampler: ClassVar[Setting[str]] = Setting(
        SettingGroup.defaults,
        "The sampler when a member chooses none.",
        "one of " + ", ".join(KNOWN_IMAGE_SAMPLERS),
        p.sampler,
        p.identity,
        lambda d: d.sampler.value,
    )
    cfg_scale: ClassVar[Setting[float]] = Setting(
        SettingGroup.defaults,
        "CFG scale when a member gives none.",
        f"a number from 0 to {bounds.MAX_CFG_SCALE:g}",
        p.float_range(0, bounds.MAX_CFG_SCALE),
        p.format_number,
        lambda d: d.cfg_scale,
    )
    negative_prompt: ClassVar[Setting[str]] = Setting(
        SettingGroup.defaults,
        "Put in front of every negative prompt (none: nothing).",
        f"text of at most {p.MAX_NEGATIVE_PROMPT} characters, or none",
        p.optional_text(p.MAX_NEGATIVE_PROMPT),
        p.format_optional_text,
        lambda d: d.negative_prompt,
    )
    max_steps: ClassVar[Setting[int]] = Setting(
        SettingGroup.limits,
        "The most sampling steps a generation may use.",
        p.count(1, bounds.MAX_STEPS) + ", at least the default steps",
        p.int_range(1, bounds.MAX_STEPS),
        str,
        lambda d: d.max_steps,
    )
    max_pixels: ClassVar[Setting[int]] = Setting(
        SettingGroup.limits,
        "The most pixels (width x height) an image may have.",
        p.count(bounds.MIN_PIXELS, bounds.MAX_PIXELS) + ", at least the default size",
        p.int_range(bounds.MIN_PIXELS, bounds.MAX_PIXELS),
        str,
        lambda d: d.max_pixels,
    )
    max_count: ClassVar[Setting[int]] = Setting(
        SettingGroup.limits,
        "The most images one generation may make.",
        p.count(1, bounds.MAX_N),
        p.int_range(1, bounds.MAX_N),
        str,
        lambda d: d.max_n,
    )
    max_prompt_length: ClassVar[Setting[int]] = Setting(
        SettingGroup.limits,
        "The most characters a member may type as a prompt (with the negative prompt), any command.",
        p.count(bounds.MIN_PROMPT_LENGTH, bounds.MAX_PROMPT_CHARS),
        p.int_range(bounds.MIN_PROMPT_LENGTH, bounds.MAX_PROMPT_CHARS),
        str,
        lambda d: d.max_prompt_length,
    )
    max_text_tokens: ClassVar[Setting[int]] = Setting(
        SettingGroup.limits,
        "The most tokens /write may write (its max_length).",
        p.count(bounds.MIN_TEXT_TOKENS, bounds.MAX_TEXT_TOKENS),
        p.int_range(bounds.MIN_TEXT_TOKENS, bounds.MAX_TEXT_TOKENS),
        str,
        lambda d: d.max_text_tokens,
    )
    allowed_models: ClassVar[Setting[frozenset[str]]] = Setting(
        SettingGroup.models,
        "Only these models may be used (none: any model).",
        f"model names separated by commas, or none; at most {p.MAX_LIST_ITEMS}",
        p.string_set(p.model_name),
        p.format_string_set,
        p.const(frozenset()),
    )
    blocked_models: ClassVar[Setting[frozenset[str]]] = Setting(
        SettingGroup.models,
        "These models may not be used.",
        f"model names separated by commas, or none; at most {p.MAX_LIST_ITEMS}",
        p.string_set(p.model_name),
        p.format_string_set,
        p.const(frozenset()),
    )
    blocked_words: ClassVar[Setting[tuple[str, ...]]] = Setting(
        SettingGroup.filters,
        "Prompts containing these words or phrases are refused.",
        f"words or phrases separated by commas, or none; at most {p.MAX_LIST_ITEMS}",
        p.words,
        p.format_words,
        p.const(()),
    )
    blocked_patterns: ClassVar[Setting[tuple[str, ...]]] = Setting(
        SettingGroup.filters,
        "Prompts matching these regular expressions (case-insensitive) are refused.",
        f'one regular expression, or a JSON list of up to {p.MAX_PATTERNS} such as ["fo+", "ba[rz]"], '
        f"each at most {MAX_PATTERN_LENGTH} characters; or none. Patterns: {ALLOWED}",
        p.patterns,
        p.format_patterns,
        p.const(()),
    )
    allowed_channels: ClassVar[Setting[frozenset[int]]] = Setting(
        SettingGroup.channels,
        "Generation only in these channels (none: everywhere).",
        _CHANNELS_ALLOWED,
        p.channel_ids,
        p.format_channel_ids,
        p.const(frozenset()),
    )
    blocked_channels: ClassVar[Setting[frozenset[int]]] = Setting(
        SettingGroup.channels,
        "No generation in these channels.",
        _CHANNELS_ALLOWED,
        p.channel_ids,
        p.format_channel_ids,
        p.const(frozenset()),
    )
    allowed_commands: ClassVar[Setting[frozenset[str] | None]] = Setting(
        SettingGroup.channels,
        "Which generation commands may be used (per channel too).",
        "all, none, or some of: " + ", ".join(p.GENERATION_COMMANDS),
        p.commands,
        p.format_commands,
        p.const(None),
        per_channel=True,
    )
    nsfw_policy: ClassVar[Setting[NsfwPolicy]] = Setting(
        SettingGroup.nsfw,
        "NSFW images: off, or only in age-restricted channels (per channel too).",
        "one of " + ", ".join(get_args(NsfwPolicy)),
        p.choice(get_args(NsfwPolicy)),
        p.identity,
        lambda d: d.nsfw_policy,
        per_channel=True,
    )
    allow_anonymous: ClassVar[Setting[bool]] = Setting(
        SettingGroup.access,
        "Members without their own key (and without a sponsor key) may use the anonymous key.",
        "on or off",
        p.parse_bool,
        p.format_bool,
        lambda d: d.allow_anonymous,
    )
    sponsor_key: ClassVar[Setting[str]] = Setting(
        SettingGroup.access,
        "This server's AI Horde key for members without their own; stored encrypted, never shown.",
        "an AI Horde API key the AI Horde accepts (not the anonymous key)",
        p.identity,
        p.identity,
        p.const(""),
        secret=True,
    )
    """Not a plain setting: kept encrypted in its own table (``sponsor.py``); its value here is empty."""
    daily_kudos_member: ClassVar[Setting[int]] = Setting(
        SettingGroup.access,
        "Kudos each member may spend per day (UTC) on the sponsor or anonymous key (0: no limit).",
        p.count(0, MAX_DAILY_KUDOS),
        p.int_range(0, MAX_DAILY_KUDOS),
        str,
        p.const(0),
    )
    daily_kudos_server: ClassVar[Setting[int]] = Setting(
        SettingGroup.access,
        "Kudos the whole server may spend per day (UTC) on the sponsor or anonymous key (0: no limit).",
        p.count(0, MAX_DAILY_KUDOS),
        p.int_range(0, MAX_DAILY_KUDOS),
        str,
        p.const(0),
    )
    cooldown_seconds: ClassVar[Setting[int]] = Setting(
        SettingGroup.rate,
        "Seconds a member waits between generations (0: none).",
        p.count(0, MAX_COOLDOWN_S),
        p.int_range(0, MAX_COOLDOWN_S),
        str,
        p.const(0),
    )
    max_jobs_member: ClassVar[Setting[int]] = Setting(
        SettingGroup.rate,
        "Generations one member may run at once (0: no limit).",
        p.count(0, MAX_CONCURRENT),
        p.int_range(0, MAX_CONCURRENT),
        str,
        p.const(0),
    )
    max_jobs_server: ClassVar[Setting[int]] = Setting(
        SettingGroup.rate,
        "Generations the server may run at once (0: no limit).",
        p.count(0, MAX_CONCURRENT),
        p.int_range(0, MAX_CONCURRENT),
        str,
        p.const(0),
    )
    rerun_emoji: ClassVar[Setting[str]] = Setting(
        SettingGroup.reactions,
        "Reacting with this reruns a generation.",
        "one emoji",
        p.emoji,
        p.identity,
        p.const("🔁"),
    )
    rerun_reactions: ClassVar[Setting[bool]] = Setting(
        SettingGroup.reactions,
        "Whether reacting reruns.",
        "on or off",
        p.parse_bool,
        p.format_bool,
        p.const(True),
    )
    kudos_emoji: ClassVar[Setting[str]] = Setting(
        SettingGroup.reactions,
        "Reacting with this gifts kudos to the author.",
        "one emoji",
        p.emoji,
        p.identity,
        p.const("⭐"),
    )
    kudos_reactions: ClassVar[Setting[bool]] = Setting(
        SettingGroup.reactions,
        "Whether reacting gifts kudos (off by default: it spends members' kudos).",
        "on or off",
        p.parse_bool,
        p.format_bool,
        p.const(False),
    )
    kudos_amount: ClassVar[Setting[int]] = Setting(
        SettingGroup.reactions,
        "Kudos one gifting reaction sends to the author.",
        p.count(1, MAX_GIFT_KUDOS),
        p.int_range(1, MAX_GIFT_KUDOS),
        str,
        p.const(10),
    )
    visibility: ClassVar[Setting[Visibility]] = Setting(
        SettingGroup.visibility,
        "Results public in the channel, or private to the member (per channel too).",
        "one of " + ", ".join(get_args(Visibility)),
        p.choice(get_args(Visibility)),
        p.identity,
        p.const("public"),
        per_channel=True,
    )
    log_channel: ClassVar[Setting[int | None]] = Setting(
        SettingGroup.logging,
        "Where changes of these settings are posted (none: nowhere).",
        "one channel mention or id, or none",
        p.optional_channel,
        p.format_optional_channel,
        p.const(None),
    )


SETTINGS: Final[tuple[Setting[Any], ...]] = tuple(
    declared for declared in vars(ServerSettings).values() if isinstance(declared, Setting)
)
REGISTRY: Final[Mapping[str, Setting[Any]]] = {setting.name: setting for setting in SETTINGS}
SPONSOR_KEY: Final = ServerSettings.sponsor_key.name


def get_setting(name: str) -> Setting[Any]:
    setting = REGISTRY.get(name.strip().lower())
    if setting is None:
        raise UnknownSettingError(f"There is no setting “{name[:60]}”. Use /config show to list them.")
    return setting


def storage_key(name: str, channel_id: int | None) -> str:
    return name if channel_id is None else f"{name}{CHANNEL_SEPARATOR}{channel_id}"


def setting_names(prefix: str = "", *, per_channel: bool = False) -> Iterable[str]:
    lowered = prefix.strip().lower()
    for setting in SETTINGS:
        if lowered in setting.name and (setting.per_channel or not per_channel):
            yield setting.name
