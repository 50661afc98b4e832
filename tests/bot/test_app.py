from __future__ import annotations

import asyncio
import json
import logging
import time

import aiohttp
import discord
import pytest
import simcord

from bot.app import EXTENSIONS, HordeBot, bot_intents, create_bot
from bot.config import BotSettings, ConfigError, Settings
from bot.horde import AIHordeAPIAsyncManualClient, ImageGenerateAsyncRequest, ImageGenerateAsyncResponse
from bot.horde.consts import ANON_API_KEY
from bot.logging import REDACTED, SecretRedactor
from bot.storage import JobRecord, JobState, SQLiteStorage, StorageError, open_storage, parse_database_url
from horde_simulator import Knobs, Simulator, SimulatorConfig


@pytest.fixture
def horde_sim_config() -> SimulatorConfig:
    # No workers: a submitted generation stays pending until the bot's session DELETEs it.
    return SimulatorConfig(knobs=Knobs(worker_threads=0))


class CountingStorage(SQLiteStorage):
    def __init__(self, url: str) -> None:
        super().__init__(parse_database_url(url))
        self.connects = 0
        self.closes = 0

    async def connect(self) -> None:
        self.connects += 1
        await super().connect()

    async def close(self) -> None:
        self.closes += 1
        await super().close()


def _with_deadline(settings: Settings, seconds: float) -> Settings:
    bot_settings = BotSettings.model_validate({**settings.bot.model_dump(), "shutdown_deadline_s": seconds})
    return settings.model_copy(update={"bot": bot_settings})


async def _submit_pending_generation(bot: HordeBot) -> str:
    response = await bot.horde_session.submit_request(
        ImageGenerateAsyncRequest(apikey=ANON_API_KEY, prompt="a lighthouse"), ImageGenerateAsyncResponse
    )
    assert isinstance(response, ImageGenerateAsyncResponse)
    assert bot.horde_session.pending == (response.id_,)
    return response.id_


async def test_the_bot_asks_only_for_the_intents_it_uses(settings: Settings) -> None:
    bot = await create_bot(settings)
    try:
        assert bot.intents == discord.Intents(guilds=True, guild_reactions=True) == bot_intents()
        assert not bot.intents.message_content
        assert not bot.intents.members
        assert bot.allowed_mentions is not None
        assert bot.allowed_mentions.to_dict() == {"parse": []}
    finally:
        await bot.close()


async def test_login_connects_storage_and_loads_the_extensions_but_syncs_nothing(settings: Settings) -> None:
    storage = CountingStorage(settings.database.url)
    bot = await create_bot(settings, storage=storage)
    async with simcord.run(bot) as env:
        assert storage.connects == 1
        assert await bot.storage.users.get(1) is None  # connected and migrated
        assert tuple(bot.extensions) == EXTENSIONS
        assert bot.get_cog("Meta") is not None
        assert (await bot.accounts.resolve_key(1)).owner == "anonymous"  # services use the same storage
        assert {command.name for command in bot.tree.get_commands()} >= {"help", "about"}
        assert not [entry for entry in env.http_requests if entry.path.endswith("/commands")]
    await bot.close()


async def test_close_shuts_everything_down_once_and_in_order(
    settings: Settings, horde_sim: Simulator
) -> None:
    storage = CountingStorage(settings.database.url)
    bot = await create_bot(settings, storage=storage)
    seen_by_hook: list[object] = []
    async with simcord.run(bot) as env:
        channel = env.create_guild().create_text_channel("general")
        gen_id = await _submit_pending_generation(bot)

        async def say_goodbye() -> None:
            # Services wind down first, while Discord, the Horde session and storage still work.
            text_channel = bot.get_channel(channel.id)
            assert isinstance(text_channel, discord.TextChannel)
            await text_channel.send("Restarting, back soon.")
            seen_by_hook.extend([bot.horde_session.pending, await bot.storage.users.get(1), bot.is_closed()])

        bot.add_shutdown_hook(say_goodbye)
        await asyncio.gather(bot.close(), bot.close())
        await bot.close()

        assert channel.last_message is not None
        assert channel.last_message.content == "Restarting, back soon."
    assert seen_by_hook == [(gen_id,), None, False]
    assert horde_sim.counters.deletes(gen_id) == 1
    assert bot.horde_session.pending == ()
    assert storage.closes == 1
    with pytest.raises(StorageError, match="not connected"):
        await storage.users.get(1)
    assert bot.http_session.closed
    assert bot.is_closed()


async def test_a_session_passed_in_stays_open(settings: Settings) -> None:
    async with aiohttp.ClientSession() as session:
        bot = await create_bot(settings, http_session=session)
        await bot.close()
        assert bot.is_closed()
        assert not session.closed


@pytest.mark.allow_unhandled_errors
async def test_a_failing_or_slow_shutdown_hook_does_not_stop_the_shutdown(
    settings: Settings, error_logs: list[logging.LogRecord], caplog: pytest.LogCaptureFixture
) -> None:
    storage = CountingStorage(settings.database.url)
    bot = await create_bot(_with_deadline(settings, 0.05), storage=storage)
    ran: list[str] = []

    async def hangs() -> None:
        ran.append("hangs")
        await asyncio.sleep(60)

    async def fails() -> None:
        ran.append("fails")
        raise RuntimeError("service broke")

    bot.add_shutdown_hook(hangs)
    bot.add_shutdown_hook(fails)
    started = time.monotonic()
    await bot.close()

    assert time.monotonic() - started < 2
    assert ran == ["fails", "hangs"]  # last added runs first
    assert storage.closes == 1
    assert [record.getMessage() for record in error_logs] == [f"Shutdown hook {fails!r} failed"]
    assert f"Shutdown hook {hangs!r} did not finish within 0.05s" in caplog.text


async def test_the_settings_secrets_are_registered_for_redaction(settings: Settings) -> None:
    redactor = SecretRedactor()
    bot = await create_bot(settings, redactor=redactor)
    await bot.close()
    assert settings.secret_keys is not None
    [fernet_key] = settings.secret_keys.secret_material()

    masked = redactor.redact(f"token {settings.require_token()} and key {fernet_key}")

    assert masked == f"token {REDACTED} and key {REDACTED}"
    assert repr(redactor) == "SecretRedactor(2 secrets)"
    assert bot.redactor is redactor


async def test_without_encryption_keys_the_bot_cannot_be_built(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="HORDE_BOT_SECRET_KEYS is not set"):
        await create_bot(settings.model_copy(update={"secret_keys": None}))


async def test_logging_in_without_the_gateway_adopts_no_journalled_job(
    settings: Settings, horde_sim: Simulator
) -> None:
    # `python -m bot sync` logs in (which runs setup_hook) while the real bot may be running: it
    # must not follow that bot's jobs, nor cancel them when it exits. Resuming waits for READY.
    request = ImageGenerateAsyncRequest(apikey=ANON_API_KEY, prompt="a lighthouse")
    async with AIHordeAPIAsyncManualClient(base_url=horde_sim.base_url) as client:
        accepted = await client.submit_request(request, ImageGenerateAsyncResponse)
    assert isinstance(accepted, ImageGenerateAsyncResponse)
    async with open_storage(settings.database.url) as storage:
        job = await storage.jobs.create(
            JobRecord(
                kind="image",
                state=JobState.SUBMITTED,
                horde_id=accepted.id_,
                channel_id=1,
                message_id=2,
                user_id=3,
                key_owner="anonymous",
                request_json=json.dumps(request.to_wire().json),
                params_json="{}",
            )
        )
    bot = await create_bot(settings)

    await bot.setup_hook()  # what login() runs; there is no gateway, so no READY
    await asyncio.sleep(0.1)
    await bot.close()

    assert horde_sim.counters.calls("generate_check") == 0
    assert horde_sim.counters.deletes(accepted.id_) == 0
    async with open_storage(settings.database.url) as storage:
        stored = await storage.jobs.get(job.id)
    assert stored is not None
    assert stored.state is JobState.SUBMITTED
