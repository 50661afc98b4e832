"""Typed settings: ``config.toml`` for behaviour, environment variables for secrets.

Nothing is read at import time: :func:`load_settings` reads and validates everything at start-up
and raises :class:`ConfigError`, one line naming the faulty setting and never quoting a secret.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from bot.crypto import ENV_VAR as SECRET_KEYS_ENV_VAR
from bot.crypto import KeyRing, KeyRingError
from bot.generation_limits import (
    MAX_CFG_SCALE,
    MAX_N,
    MAX_PIXELS,
    MAX_PROMPT_CHARS,
    MAX_SIDE,
    MAX_STEPS,
    MAX_TEXT_TOKENS,
    MIN_PIXELS,
    MIN_PROMPT_LENGTH,
    MIN_SIDE,
    MIN_TEXT_TOKENS,
    SIDE_STEP,
)
from bot.horde.consts import DEFAULT_BASE_URL, DEFAULT_CLIENT_AGENT, GENERATION_MAX_LIFE, KNOWN_IMAGE_SAMPLERS
from bot.storage.url import parse_database_url

DISCORD_TOKEN_ENV_VAR: Final = "DISCORD_TOKEN"

# The placeholder agent from the Horde's own docs; the server bans it (horde-api.md §0).
_BANNED_CLIENT_AGENT: Final = "my-project:v0.0.1:my-contact"


class ConfigError(Exception):
    """A missing or invalid setting. ``str()`` is one line naming the setting, never a secret value."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class _Section(BaseModel):
    # strict: TOML values are already typed, so "30" for an int is a mistake worth reporting.
    # validate_default: lowering a limit (max_steps = 20) must flag the default it now excludes.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, validate_default=True)


class BotSettings(_Section):
    description: str = "Generate images, text and image analysis with the AI Horde."
    owner_ids: tuple[int, ...] = ()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    shutdown_deadline_s: float = Field(default=10.0, gt=0, le=300)
    # None: one gateway connection, no sharding (a plain commands.Bot; fine below 2,500 servers).
    # Not "ask Discord": every process of a sharded bot must agree on the count, because the
    # jobs journal tags each job with its server's shard under this count.
    shard_count: int | None = Field(default=None, ge=1, le=10_000)
    # The shards this process runs; None: all of shard_count.
    shard_ids: tuple[int, ...] | None = None
    # How long a server's settings may be served from this process's cache. Writes made by this
    # process are seen at once; with PostgreSQL other processes' writes arrive by LISTEN/NOTIFY,
    # so this is only the safety net; SQLite shared by several processes relies on it alone.
    settings_cache_ttl_s: float = Field(default=30.0, ge=0, le=3600)

    @field_validator("owner_ids", "shard_ids", mode="before")
    @classmethod
    def _list_to_tuple(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @model_validator(mode="after")
    def _shards_within_count(self) -> BotSettings:
        if self.shard_ids is None:
            return self
        if self.shard_count is None:
            raise ValueError("shard_ids needs shard_count (the total number of shards of the bot)")
        if not self.shard_ids:
            raise ValueError("shard_ids must list at least one shard (or be left out: all shards)")
        if len(set(self.shard_ids)) != len(self.shard_ids):
            raise ValueError("shard_ids must not repeat a shard")
        if any(not 0 <= shard < self.shard_count for shard in self.shard_ids):
            raise ValueError(f"shard_ids must be between 0 and shard_count - 1 ({self.shard_count - 1})")
        return self

    @property
    def sharded(self) -> bool:
        return self.shard_count is not None

    @field_validator("owner_ids")
    @classmethod
    def _snowflakes(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(owner <= 0 for owner in value):
            raise ValueError("Discord user ids are positive integers")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class HordeSettings(_Section):
    api_url: str = DEFAULT_BASE_URL
    client_agent: str = DEFAULT_CLIENT_AGENT
    request_timeout_s: float = Field(default=30.0, gt=0, le=600)
    generation_timeout_s: float = Field(default=float(GENERATION_MAX_LIFE), gt=0, le=GENERATION_MAX_LIFE)
    no_worker_timeout_s: float = Field(default=120.0, gt=0, le=GENERATION_MAX_LIFE)
    models_cache_ttl_s: float = Field(default=60.0, ge=0, le=86_400)
    # The Horde's generate/async limit per IP (2/s, 90/min; 10/s, 300/min for a whitelisted IP):
    # one budget for every process of the bot, kept in its database (bot/services/jobs/turns.py).
    submits_per_second: int = Field(default=2, ge=1, le=100)
    submits_per_minute: int = Field(default=90, ge=1, le=6_000)

    @property
    def submit_windows(self) -> tuple[tuple[int, float], tuple[int, float]]:
        """The budget's sliding windows, ``(calls, period_s)``."""
        return ((self.submits_per_second, 1.0), (self.submits_per_minute, 60.0))

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        try:
            parts = urlsplit(value.strip())
            valid = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
        except ValueError:
            valid = False
        if not valid or parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("must be an http(s) URL such as https://aihorde.net/api/")
        return parts.geturl() if parts.path.endswith("/") else parts.geturl() + "/"

    @field_validator("client_agent")
    @classmethod
    def _agent_format(cls, value: str) -> str:
        parts = value.split(":", 2)
        if (
            len(parts) != 3
            or any(not part.strip() for part in parts)
            or not value.isprintable()
            or len(value) > 256
        ):
            raise ValueError("must look like name:version:contact, e.g. my-discord-bot:1.0.0:me@example.com")
        if value.lower() == _BANNED_CLIENT_AGENT:
            raise ValueError("is the AI Horde's documentation example, which the server bans; name your bot")
        return value


class DatabaseSettings(_Section):
    url: str = "sqlite:///data/bot.sqlite3"

    @field_validator("url")
    @classmethod
    def _supported_url(cls, value: str) -> str:
        parse_database_url(value)
        return value.strip()


class ProgressSettings(_Section):
    edit_interval_s: float = Field(default=3.0, ge=1.0, le=60)
    bar_width: int = Field(default=20, ge=1, le=100)
    # Every job in a channel shares these; Discord's per-channel message bucket is about 5 per 5 s.
    channel_edits: int = Field(default=5, ge=1, le=50)
    channel_window_s: float = Field(default=5.0, ge=1.0, le=60)


class GenerationDefaults(_Section):
    """Per-guild defaults and limits; server admins may override them later.

    The limits come first: field validators of the values below read them from ``info.data``.
    """

    max_steps: int = Field(default=50, ge=1, le=MAX_STEPS)
    max_pixels: int = Field(default=1024 * 1024, ge=MIN_PIXELS, le=MAX_PIXELS)
    max_n: int = Field(default=4, ge=1, le=MAX_N)
    max_prompt_length: int = Field(default=2000, ge=MIN_PROMPT_LENGTH, le=MAX_PROMPT_CHARS)
    """Characters a member may type as a prompt (with its negative prompt), for every command."""
    max_text_tokens: int = Field(default=512, ge=MIN_TEXT_TOKENS, le=MAX_TEXT_TOKENS)
    """Tokens /write may ask the Horde to write (its ``max_length``)."""
    model: str = Field(default="stable_diffusion", min_length=1)
    steps: int = Field(default=30, ge=1)
    width: int = 512
    height: int = 512
    sampler: KNOWN_IMAGE_SAMPLERS = KNOWN_IMAGE_SAMPLERS.k_euler_a
    cfg_scale: float = Field(default=7.0, ge=0, le=MAX_CFG_SCALE)
    n: int = Field(default=1, ge=1)
    negative_prompt: str = ""
    allow_anonymous: bool = True
    nsfw_policy: Literal["age_restricted_only", "off"] = "age_restricted_only"

    @model_validator(mode="before")
    @classmethod
    def _renamed_settings(cls, data: Any) -> Any:
        # The old name meant characters for images but tokens for /write; say what replaced it
        # instead of a bare "unknown setting".
        if isinstance(data, Mapping) and "max_text_length" in data:
            raise ValueError(
                "max_text_length was split into max_prompt_length (characters of a prompt) "
                "and max_text_tokens (tokens /write may write); rename it"
            )
        return data

    @field_validator("sampler", mode="before")
    @classmethod
    def _sampler_from_str(cls, value: Any) -> Any:
        # Strict mode would demand an enum member; the TOML holds its string value.
        try:
            return KNOWN_IMAGE_SAMPLERS(value) if isinstance(value, str) else value
        except ValueError:
            allowed = ", ".join(KNOWN_IMAGE_SAMPLERS)
            raise ValueError(f"must be one of {allowed}") from None

    @field_validator("steps")
    @classmethod
    def _steps_within_limit(cls, value: int, info: ValidationInfo) -> int:
        return _at_most(value, info, "max_steps")

    @field_validator("n")
    @classmethod
    def _n_within_limit(cls, value: int, info: ValidationInfo) -> int:
        return _at_most(value, info, "max_n")

    @field_validator("width", "height")
    @classmethod
    def _dimension(cls, value: int) -> int:
        if not MIN_SIDE <= value <= MAX_SIDE or value % SIDE_STEP:
            raise ValueError(f"must be a multiple of {SIDE_STEP} from {MIN_SIDE} to {MAX_SIDE}")
        return value

    @field_validator("height")
    @classmethod
    def _area_within_limit(cls, value: int, info: ValidationInfo) -> int:
        width, max_pixels = info.data.get("width"), info.data.get("max_pixels")
        if width is not None and max_pixels is not None and width * value > max_pixels:
            raise ValueError(f"width × height = {width * value} pixels exceeds max_pixels ({max_pixels})")
        return value


def _at_most(value: int, info: ValidationInfo, limit_name: str) -> int:
    limit = info.data.get(limit_name)
    if limit is not None and value > limit:
        raise ValueError(f"must be at most {limit_name} ({limit})")
    return value


class _FileSettings(_Section):
    """What ``config.toml`` may contain: secrets are deliberately absent, so they are rejected there."""

    bot: BotSettings = Field(default_factory=BotSettings)
    horde: HordeSettings = Field(default_factory=HordeSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    progress: ProgressSettings = Field(default_factory=ProgressSettings)
    defaults: GenerationDefaults = Field(default_factory=GenerationDefaults)


class Settings(_FileSettings):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    discord_token: SecretStr | None = Field(default=None, repr=False)
    secret_keys: KeyRing | None = Field(default=None, repr=False)

    def require_token(self) -> str:
        if self.discord_token is None:
            raise ConfigError(f"environment variable {DISCORD_TOKEN_ENV_VAR} is not set")
        return self.discord_token.get_secret_value()

    def require_keyring(self) -> KeyRing:
        if self.secret_keys is None:
            raise ConfigError(
                f"environment variable {SECRET_KEYS_ENV_VAR} is not set; "
                "it needs at least one '<version>:<fernet key>' entry"
            )
        return self.secret_keys

    def secret_values(self) -> tuple[str, ...]:
        """Every secret loaded from the environment, for the log redactor."""
        token = () if self.discord_token is None else (self.discord_token.get_secret_value(),)
        keys = () if self.secret_keys is None else self.secret_keys.secret_material()
        return token + keys


def _describe(error: ErrorDetails) -> str:
    where = ""
    for part in error["loc"]:
        where += f"[{part}]" if isinstance(part, int) else f".{part}" if where else str(part)
    if error["type"] == "extra_forbidden":
        message = "unknown setting"
    elif error["type"] == "missing":
        message = "is required"
    else:
        message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def _env_token(environ: Mapping[str, str]) -> SecretStr | None:
    token = environ.get(DISCORD_TOKEN_ENV_VAR, "").strip()
    if not token:
        return None
    if any(char.isspace() for char in token):
        raise ConfigError(
            f"environment variable {DISCORD_TOKEN_ENV_VAR} contains whitespace; "
            "set only the token itself (no 'Bot ' prefix)"
        )
    return SecretStr(token)


def _env_keyring(environ: Mapping[str, str]) -> KeyRing | None:
    value = environ.get(SECRET_KEYS_ENV_VAR, "")
    if not value.strip():
        return None
    try:
        return KeyRing.from_env_value(value)
    except KeyRingError as exc:
        raise ConfigError(f"environment variable {SECRET_KEYS_ENV_VAR}: {exc.detail}") from None


def load_settings(path: str | Path, *, environ: Mapping[str, str] | None = None) -> Settings:
    """Read ``path`` and the secrets from ``environ`` (default: ``os.environ``).

    The secrets may be absent (see :meth:`Settings.require_token`), but if present they must be valid.
    """
    path = Path(path)
    env = os.environ if environ is None else environ
    try:
        file_settings = _FileSettings.model_validate(_read_toml(path))
    except ValidationError as exc:
        raise ConfigError(f"{path}: " + "; ".join(_describe(error) for error in exc.errors())) from None
    sections = {name: getattr(file_settings, name) for name in _FileSettings.model_fields}
    return Settings(**sections, discord_token=_env_token(env), secret_keys=_env_keyring(env))
