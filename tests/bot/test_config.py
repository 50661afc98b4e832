from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bot.config import (
    BotSettings,
    ConfigError,
    GenerationDefaults,
    Settings,
    _FileSettings,
    load_settings,
)
from bot.crypto import KeyRing
from bot.horde.consts import KNOWN_IMAGE_SAMPLERS
from bot.storage import SQLiteURL, parse_database_url

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"
TOKEN = "MTE0NjA3NzY1NDQ5MzI3NDE4.GhT3kx.abcdefghijklmnopqrstuvwxyz0123456789AB"
FERNET_KEY = Fernet.generate_key().decode()

FULL_TOML = """
[bot]
description = "My bot"
owner_ids = [111, 222]
log_level = "debug"
shutdown_deadline_s = 5

[horde]
api_url = "http://127.0.0.1:8080/api"
client_agent = "my-bot:2.0:https://example.com/contact"
request_timeout_s = 12.5
generation_timeout_s = 600
models_cache_ttl_s = 0

[database]
url = "sqlite:///var/bot.db"

[progress]
edit_interval_s = 1.5
bar_width = 12

[defaults]
model = "AlbedoBase XL (SDXL)"
steps = 25
width = 1024
height = 768
sampler = "k_dpmpp_2m"
cfg_scale = 5.5
n = 2
negative_prompt = "blurry"
max_steps = 40
max_pixels = 1048576
max_n = 3
max_prompt_length = 300
max_text_tokens = 200
allow_anonymous = false
nsfw_policy = "off"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, **environ: str) -> Settings:
    return load_settings(write(tmp_path, text), environ=environ)


def config_error(tmp_path: Path, text: str, **environ: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, **environ)
    message = str(info.value)
    assert "\n" not in message
    # Chained exceptions would print the offending input (a secret, maybe) in the traceback.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__
    return message


def test_an_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path, "")
    assert settings.bot.log_level == "INFO"
    assert settings.bot.owner_ids == ()
    assert settings.bot.shutdown_deadline_s == 10.0
    assert settings.horde.api_url == "https://aihorde.net/api/"
    assert settings.horde.generation_timeout_s == 1170
    assert settings.horde.request_timeout_s == 30
    assert settings.horde.models_cache_ttl_s == 60
    assert parse_database_url(settings.database.url) == SQLiteURL(Path("data/bot.sqlite3"))
    assert settings.progress.edit_interval_s == 3.0
    assert settings.progress.bar_width == 20
    defaults = settings.defaults
    assert (defaults.model, defaults.steps, defaults.width, defaults.height) == (
        "stable_diffusion",
        30,
        512,
        512,
    )
    assert defaults.sampler is KNOWN_IMAGE_SAMPLERS.k_euler_a
    assert (defaults.cfg_scale, defaults.n, defaults.negative_prompt) == (7.0, 1, "")
    assert (defaults.max_steps, defaults.max_pixels, defaults.max_n) == (50, 1024 * 1024, 4)
    assert (defaults.max_prompt_length, defaults.max_text_tokens) == (2000, 512)
    assert defaults.allow_anonymous is True
    assert defaults.nsfw_policy == "age_restricted_only"
    assert settings.discord_token is None
    assert settings.secret_keys is None


def test_a_full_file_is_read(tmp_path: Path) -> None:
    settings = load(tmp_path, FULL_TOML)
    assert settings.bot == BotSettings(
        description="My bot", owner_ids=(111, 222), log_level="DEBUG", shutdown_deadline_s=5.0
    )
    assert settings.horde.api_url == "http://127.0.0.1:8080/api/"
    assert settings.horde.client_agent == "my-bot:2.0:https://example.com/contact"
    assert (settings.horde.request_timeout_s, settings.horde.generation_timeout_s) == (12.5, 600)
    assert settings.horde.models_cache_ttl_s == 0
    assert settings.database.url == "sqlite:///var/bot.db"
    assert (settings.progress.edit_interval_s, settings.progress.bar_width) == (1.5, 12)
    assert settings.defaults == GenerationDefaults(
        model="AlbedoBase XL (SDXL)",
        steps=25,
        width=1024,
        height=768,
        sampler=KNOWN_IMAGE_SAMPLERS.k_dpmpp_2m,
        cfg_scale=5.5,
        n=2,
        negative_prompt="blurry",
        max_steps=40,
        max_pixels=1048576,
        max_n=3,
        max_prompt_length=300,
        max_text_tokens=200,
        allow_anonymous=False,
        nsfw_policy="off",
    )


def test_the_example_documents_every_setting_with_its_default(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    example = tomllib.loads(text)
    # TOML has no null: a setting whose default is "not set" is shown as a commented-out example.
    commented = {match[1] for match in re.finditer(r"^# (\w+) = ", text, re.MULTILINE)}
    for section, model in _FileSettings.model_fields.items():
        assert model.annotation is not None
        fields = model.annotation.model_fields
        unset = {name for name, field in fields.items() if field.default is None}
        assert set(example[section]) == set(fields) - unset, section
        assert unset <= commented, section
    assert set(example) == set(_FileSettings.model_fields)
    assert load_settings(EXAMPLE, environ={}) == load(tmp_path, "")


def test_the_examples_commented_out_settings_are_valid(tmp_path: Path) -> None:
    uncommented = re.sub(r"^# (\w+ = )", r"\1", EXAMPLE.read_text(encoding="utf-8"), flags=re.MULTILINE)
    settings = load(tmp_path, uncommented)
    assert (settings.bot.shard_count, settings.bot.shard_ids) == (4, (0, 1))


def test_the_example_comments_every_key() -> None:
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            previous = lines[index - 1]
            # A key is documented by the comment right above it, or shares the one of the key above.
            assert previous.startswith("#") or ("=" in previous and not previous.startswith("#")), line


@pytest.mark.parametrize(
    ("toml", "count", "ids", "sharded"),
    [
        ("", None, None, False),
        ("[bot]\nshard_count = 1", 1, None, True),
        ("[bot]\nshard_count = 4", 4, None, True),
        ("[bot]\nshard_count = 4\nshard_ids = [3, 0]", 4, (3, 0), True),
    ],
)
def test_sharding_settings(
    tmp_path: Path, toml: str, count: int | None, ids: tuple[int, ...] | None, sharded: bool
) -> None:
    bot = load(tmp_path, toml).bot
    assert (bot.shard_count, bot.shard_ids, bot.sharded) == (count, ids, sharded)


def test_settings_cache_ttl(tmp_path: Path) -> None:
    assert load(tmp_path, "").bot.settings_cache_ttl_s == 30.0
    assert load(tmp_path, "[bot]\nsettings_cache_ttl_s = 0").bot.settings_cache_ttl_s == 0


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load(tmp_path, "")
    with pytest.raises(ValidationError):
        settings.bot.log_level = "DEBUG"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        settings.defaults = GenerationDefaults()  # type: ignore[misc]


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('[horde]\napi_url = "ftp://example.com/"', "horde.api_url: must be an http(s) URL"),
        ('[horde]\napi_url = "aihorde.net/api"', "horde.api_url: must be an http(s) URL"),
        ('[horde]\napi_url = "https://user:pw@aihorde.net/api/"', "horde.api_url: must be an http(s) URL"),
        ('[horde]\nclient_agent = "just-a-name"', "horde.client_agent: must look like name:version:contact"),
        ('[horde]\nclient_agent = "bot::me"', "horde.client_agent: must look like name:version:contact"),
        ('[horde]\nclient_agent = "My-Project:v0.0.1:My-Contact"', "horde.client_agent: is the AI Horde's"),
        (
            "[horde]\ngeneration_timeout_s = 1200",
            "horde.generation_timeout_s: Input should be less than or equal",
        ),
        ("[horde]\nrequest_timeout_s = 0", "horde.request_timeout_s: Input should be greater than 0"),
        ('[database]\nurl = "mysql://db/bot"', "database.url: unsupported database scheme 'mysql'"),
        ('[database]\nurl = "sqlite://host/x"', "database.url: a SQLite URL must be"),
        (
            "[progress]\nedit_interval_s = 0.5",
            "progress.edit_interval_s: Input should be greater than or equal to 1",
        ),
        ('[bot]\nlog_level = "LOUD"', "bot.log_level: Input should be 'DEBUG'"),
        ("[bot]\nowner_ids = [1, -5]", "bot.owner_ids: Discord user ids are positive integers"),
        ('[bot]\nowner_ids = [1, "x"]', "bot.owner_ids[1]: Input should be a valid integer"),
        ("[bot]\nshutdown_deadline_s = -1", "bot.shutdown_deadline_s: Input should be greater than 0"),
        ("[bot]\nshard_count = 0", "bot.shard_count: Input should be greater than or equal to 1"),
        ("[bot]\nshard_ids = [0]", "bot: shard_ids needs shard_count (the total number of shards"),
        ("[bot]\nshard_count = 2\nshard_ids = []", "bot: shard_ids must list at least one shard"),
        ("[bot]\nshard_count = 2\nshard_ids = [1, 1]", "bot: shard_ids must not repeat a shard"),
        (
            "[bot]\nshard_count = 2\nshard_ids = [2]",
            "bot: shard_ids must be between 0 and shard_count - 1 (1)",
        ),
        ("[bot]\nshard_count = 2\nshard_ids = [-1]", "bot: shard_ids must be between 0 and shard_count - 1"),
        ('[bot]\nshard_count = "2"', "bot.shard_count: Input should be a valid integer"),
        (
            "[bot]\nsettings_cache_ttl_s = -1",
            "bot.settings_cache_ttl_s: Input should be greater than or equal",
        ),
        ("[defaults]\nsteps = 51", "defaults.steps: must be at most max_steps (50)"),
        ("[defaults]\nmax_steps = 20", "defaults.steps: must be at most max_steps (20)"),
        ("[defaults]\nn = 5", "defaults.n: must be at most max_n (4)"),
        ("[defaults]\nwidth = 500", "defaults.width: must be a multiple of 64 from 64 to 3072"),
        ("[defaults]\nheight = 3136", "defaults.height: must be a multiple of 64 from 64 to 3072"),
        (
            "[defaults]\nwidth = 1024\nheight = 1088",
            "defaults.height: width × height = 1114112 pixels exceeds",
        ),
        ('[defaults]\nsampler = "euler"', "defaults.sampler: must be one of k_lms, k_heun"),
        (
            '[defaults]\nnsfw_policy = "on"',
            "defaults.nsfw_policy: Input should be 'age_restricted_only' or 'off'",
        ),
        ('[defaults]\nsteps = "30"', "defaults.steps: Input should be a valid integer"),
        ("[defaults]\nallow_anonymous = 1", "defaults.allow_anonymous: Input should be a valid boolean"),
        ("[defaults]\ncfg_scale = 101", "defaults.cfg_scale: Input should be less than or equal to 100"),
        (
            "[defaults]\nmax_text_tokens = 8",
            "defaults.max_text_tokens: Input should be greater than or equal",
        ),
        (
            "[defaults]\nmax_text_length = 512",
            "defaults: max_text_length was split into max_prompt_length (characters of a prompt) "
            "and max_text_tokens (tokens /write may write); rename it",
        ),
        ('[defaults]\nmodel = ""', "defaults.model: String should have at least 1 character"),
        ("[defaults]\nstep = 30", "defaults.step: unknown setting"),
        ("[horde]\nurl = 'https://aihorde.net/api/'", "horde.url: unknown setting"),
        ("[webhooks]\nenabled = true", "webhooks: unknown setting"),
        ('log_level = "INFO"', "log_level: unknown setting"),
        ('bot = "yes"', "bot: Input should be a valid dictionary"),
    ],
)
def test_each_bad_setting_is_named_on_one_line(tmp_path: Path, toml: str, expected: str) -> None:
    message = config_error(tmp_path, toml)
    assert message.startswith(f"{tmp_path / 'config.toml'}: {expected}")


def test_several_bad_settings_are_all_named(tmp_path: Path) -> None:
    message = config_error(tmp_path, "[defaults]\nsteps = 99\nn = 9\n[progress]\nbar_width = 0\n")
    assert "progress.bar_width:" in message
    assert "defaults.steps:" in message
    assert "defaults.n:" in message


def test_unreadable_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.toml: file not found"):
        load_settings(tmp_path / "missing.toml", environ={})
    assert "invalid TOML" in config_error(tmp_path, "[bot\nlog_level = 1")
    path = tmp_path / "latin1.toml"
    path.write_bytes('description = "caf\xe9"'.encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_settings(path, environ={})


def test_secrets_come_from_the_environment(tmp_path: Path) -> None:
    settings = load(tmp_path, "", DISCORD_TOKEN=f"  {TOKEN}\n", HORDE_BOT_SECRET_KEYS=f"1:{FERNET_KEY}")
    assert settings.require_token() == TOKEN
    keyring = settings.require_keyring()
    assert isinstance(keyring, KeyRing)
    assert keyring.current_version == 1
    assert set(settings.secret_values()) == {TOKEN, FERNET_KEY}


def test_missing_secrets_are_allowed_until_required(tmp_path: Path) -> None:
    settings = load(tmp_path, "", DISCORD_TOKEN="   ")
    assert settings.secret_values() == ()
    with pytest.raises(ConfigError) as token_error:
        settings.require_token()
    assert str(token_error.value) == "environment variable DISCORD_TOKEN is not set"
    with pytest.raises(ConfigError, match="environment variable HORDE_BOT_SECRET_KEYS is not set"):
        settings.require_keyring()


def test_secrets_never_appear_in_repr_or_errors(tmp_path: Path) -> None:
    settings = load(tmp_path, "", DISCORD_TOKEN=TOKEN, HORDE_BOT_SECRET_KEYS=f"1:{FERNET_KEY}")
    for text in (repr(settings), str(settings), repr(settings.model_dump())):
        assert TOKEN not in text
        assert FERNET_KEY not in text

    bad_keys = config_error(tmp_path, "", HORDE_BOT_SECRET_KEYS=f"1:{FERNET_KEY[:-6]}")
    assert bad_keys == (
        "environment variable HORDE_BOT_SECRET_KEYS: key version 1 is not a valid Fernet key "
        "(32 url-safe base64-encoded bytes)"
    )
    assert FERNET_KEY[:-6] not in bad_keys

    bot_prefix = config_error(tmp_path, "", DISCORD_TOKEN=f"Bot {TOKEN}")
    assert bot_prefix.startswith("environment variable DISCORD_TOKEN contains whitespace")
    assert TOKEN not in bot_prefix

    in_file = config_error(tmp_path, f'discord_token = "{TOKEN}"\n[bot]\ntoken = "{TOKEN}"')
    assert "discord_token: unknown setting" in in_file
    assert "bot.token: unknown setting" in in_file
    assert TOKEN not in in_file


def test_environment_is_read_when_loading_not_at_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "")
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    monkeypatch.delenv("HORDE_BOT_SECRET_KEYS", raising=False)
    assert load_settings(path).require_token() == TOKEN
    monkeypatch.setenv("DISCORD_TOKEN", "another-token")
    assert load_settings(path).require_token() == "another-token"
    assert load_settings(path, environ={}).discord_token is None


@pytest.mark.parametrize(
    ("url", "location"),
    [
        ("sqlite:///relative/bot.db", SQLiteURL(Path("relative/bot.db"))),
        ("sqlite:////srv/bot/bot.db", SQLiteURL(Path("/srv/bot/bot.db"))),
        ("sqlite://:memory:", SQLiteURL(None)),
    ],
)
def test_database_urls(tmp_path: Path, url: str, location: SQLiteURL) -> None:
    settings = load(tmp_path, f'[database]\nurl = "{url}"')
    assert parse_database_url(settings.database.url) == location


@settings(max_examples=150, deadline=None)
@given(
    width=st.integers(0, 3200),
    height=st.integers(0, 3200),
    max_pixels=st.integers(64 * 64, 3072 * 3072),
    steps=st.integers(1, 500),
    max_steps=st.integers(1, 500),
)
def test_defaults_are_accepted_exactly_when_within_their_limits(
    width: int, height: int, max_pixels: int, steps: int, max_steps: int
) -> None:
    def dimension_ok(value: int) -> bool:
        return 64 <= value <= 3072 and value % 64 == 0

    valid = (
        dimension_ok(width) and dimension_ok(height) and width * height <= max_pixels and steps <= max_steps
    )
    data = {
        "width": width,
        "height": height,
        "max_pixels": max_pixels,
        "steps": steps,
        "max_steps": max_steps,
    }
    try:
        defaults = GenerationDefaults.model_validate(data)
    except ValidationError:
        assert not valid
    else:
        assert valid
        assert (defaults.width, defaults.height, defaults.steps) == (width, height, steps)
