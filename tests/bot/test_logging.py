from __future__ import annotations

import io
import logging
import re
import shutil
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot import logging as bot_logging
from bot.logging import REDACTED, SecretRedactor, setup_logging

pytest_plugins = ["pytester"]

DISCORD_TOKEN = "MTA5ODc2NTQzMjEwOTg3NjU0Mw.GaBcDe.abcdefghijklmnopqrstuvwxyz0123456789AB"
OTHER_TOKEN_SHAPE = "OTk5OTk5OTk5OTk5OTk5OTk5OQ.Gxyzab.ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zz"
FERNET_KEY = "q3Zb6CGlqbcqL4zJ1mJt5m0bOwRQ2RWpO5sS0nF0x5A="
HORDE_KEY = "sim-alice-key-00000001"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """The root logger, temporarily writing through setup_logging's handler into a buffer."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    buffer = io.StringIO()
    try:
        yield buffer
    finally:
        for handler in list(root.handlers):
            if handler not in saved_handlers:
                root.removeHandler(handler)
        root.setLevel(saved_level)


def _log_everywhere(secret: str) -> None:
    """Put ``secret`` in a message, in its arguments and in an exception, from third-party loggers."""
    logging.getLogger("discord.http").warning("token is %s", secret)
    logging.getLogger("aiohttp.client").warning(f"inline {secret}")
    try:
        raise RuntimeError(f"failed with {secret}")
    except RuntimeError:
        logging.getLogger("discord.client").exception("Ignoring exception")


@pytest.mark.allow_unhandled_errors
@pytest.mark.parametrize("secret", [DISCORD_TOKEN, FERNET_KEY, HORDE_KEY])
def test_registered_secrets_never_reach_the_output(
    stream: io.StringIO, secret: str, error_logs: list[logging.LogRecord]
) -> None:
    setup_logging("DEBUG", redactor=SecretRedactor((secret,)), stream=stream)

    _log_everywhere(secret)

    output = stream.getvalue()
    assert secret not in output
    assert output.count(REDACTED) == 3
    assert "RuntimeError: failed with <redacted>" in output  # the traceback itself is kept
    assert [record.name for record in error_logs] == ["discord.client"]


def test_a_secret_registered_at_runtime_is_masked_from_then_on(stream: io.StringIO) -> None:
    redactor = setup_logging("INFO", stream=stream)
    logging.getLogger("bot").info("before %s", HORDE_KEY)

    redactor.register_secret(HORDE_KEY)
    logging.getLogger("bot").info("after %s", HORDE_KEY)

    before, after = stream.getvalue().splitlines()
    assert before.endswith(f"before {HORDE_KEY}")
    assert after.endswith(f"after {REDACTED}")


def test_anything_shaped_like_a_discord_token_is_masked_without_registration(stream: io.StringIO) -> None:
    setup_logging("INFO", stream=stream)

    logging.getLogger("discord.gateway").info("connecting with %s", OTHER_TOKEN_SHAPE)

    assert OTHER_TOKEN_SHAPE not in stream.getvalue()
    assert f"connecting with {REDACTED}" in stream.getvalue()


def test_a_secret_containing_another_is_masked_whole(stream: io.StringIO) -> None:
    keys_value = f"2:{FERNET_KEY},1:{FERNET_KEY[::-1]}"
    setup_logging("INFO", redactor=SecretRedactor((FERNET_KEY, keys_value)), stream=stream)

    logging.getLogger("bot").info("keys=%s", keys_value)

    assert stream.getvalue().rstrip().endswith(f"keys={REDACTED}")


def member_keys(count: int) -> list[str]:
    """Keys shaped like the Horde's: 22 characters of letters, digits, - and _ (and shared-key UUIDs)."""
    keys = [f"memberkey-{index:012d}" for index in range(count - 1)]
    return [*keys, str(uuid.UUID(int=count))]


def test_every_members_key_is_masked_at_a_hundred_thousand_members() -> None:
    keys = member_keys(100_000)
    redactor = SecretRedactor((DISCORD_TOKEN, FERNET_KEY))
    for key in keys:
        redactor.register_secret(key)

    line = (
        f"POST /v2/generate/async apikey={keys[0]} then {keys[-1]}: {{'apikey': '{keys[54_321]}'}} "
        f"glued:x{keys[99_998]}y, encoded %3D{keys[7]} token {DISCORD_TOKEN} key {FERNET_KEY} "
        "and memberkey-000000100000 is nobody's"
    )
    masked = redactor.redact(line)

    for secret in (keys[0], keys[-1], keys[54_321], keys[99_998], keys[7], DISCORD_TOKEN, FERNET_KEY):
        assert secret not in masked
    assert masked == (
        f"POST /v2/generate/async apikey={REDACTED} then {REDACTED}: {{'apikey': '{REDACTED}'}} "
        f"glued:x{REDACTED}y, encoded %3D{REDACTED} token {REDACTED} key {REDACTED} "
        "and memberkey-000000100000 is nobody's"
    )
    assert repr(redactor) == "SecretRedactor(100002 secrets)"


def test_a_members_login_compiles_no_pattern(monkeypatch: pytest.MonkeyPatch) -> None:
    # The redactor used to rebuild one regex of every key at each login: 320 ms at 10,000 members.
    redactor = SecretRedactor((DISCORD_TOKEN, HORDE_KEY))
    compiled: list[str] = []
    real_compile = re.compile

    def counting(pattern: str, flags: int = 0) -> re.Pattern[str]:
        compiled.append(pattern)
        return real_compile(pattern, flags)

    monkeypatch.setattr(bot_logging.re, "compile", counting)
    for key in member_keys(2_000):
        redactor.register_secret(key)
    assert len(compiled) <= 1  # at most once, for the UUID's new length
    assert redactor.redact(f"logged in with {HORDE_KEY}") == f"logged in with {REDACTED}"


def test_short_values_are_not_treated_as_secrets() -> None:
    redactor = SecretRedactor(("abc", "  "))

    assert redactor.redact("abc and some text") == "abc and some text"
    assert repr(redactor) == "SecretRedactor(0 secrets)"


def test_setup_logging_again_replaces_its_handler(stream: io.StringIO) -> None:
    other = io.StringIO()
    setup_logging("INFO", stream=other)
    setup_logging("WARNING", stream=stream)

    logging.getLogger("bot").warning("once")
    logging.getLogger("bot").info("filtered out")

    assert other.getvalue() == ""
    assert stream.getvalue().count("once") == 1
    assert "filtered out" not in stream.getvalue()
    assert logging.getLogger().level == logging.WARNING


# The inner run's logged exceptions reach this test's own guard too.
@pytest.mark.allow_unhandled_errors
def test_the_fixtures_fail_a_test_in_which_an_exception_went_unhandled(pytester: pytest.Pytester) -> None:
    """The two nets of tests/conftest.py (``error_logs`` and ``simcord_env``), in a pytest of its own."""
    shutil.copy(Path(__file__).parents[1] / "conftest.py", pytester.path / "conftest.py")
    (pytester.path / "test_inner.py").write_text(
        textwrap.dedent(
            """
            import asyncio
            import logging

            import discord
            import pytest
            from discord import app_commands
            from discord.ext import commands

            def log_a_bug():
                try:
                    1 / 0
                except ZeroDivisionError:
                    logging.getLogger("discord.client").exception("Ignoring exception in on_ready")

            def test_unmarked():
                log_a_bug()

            @pytest.mark.allow_unhandled_errors
            def test_marked(error_logs):
                log_a_bug()
                assert [record.name for record in error_logs] == ["discord.client"]

            def test_a_warning_is_fine():
                logging.getLogger("bot").warning("just a warning")

            class Spawner(commands.Cog):
                def __init__(self):
                    self.tasks = set()

                @app_commands.command(description="starts a background task")
                async def spawn(self, interaction: discord.Interaction) -> None:
                    self.tasks.add(asyncio.get_running_loop().create_task(self.boom()))
                    await interaction.response.send_message("started")

                async def boom(self):
                    raise LookupError("lost in the background")

            async def test_a_background_task_that_dies(server):
                await server.bot.add_cog(Spawner())
                await server.bot.tree.sync()
                result = await server.alice.slash(server.channel, "spawn")
                assert result.response.content == "started"
            """
        ),
        encoding="utf-8",
    )
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")

    run = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    output = run.stdout.str()

    # The calls pass; the nets then fail the two tests at teardown.
    run.assert_outcomes(passed=4, errors=2)
    assert "ERROR at teardown of test_unmarked" in output
    assert "unhandled exception(s) logged during the test" in output
    assert "ZeroDivisionError" in output
    assert "ERROR at teardown of test_a_background_task_that_dies" in output
    assert "the bot raised unhandled error(s) during the test" in output
    assert "LookupError: lost in the background" in output
