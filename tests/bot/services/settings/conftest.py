"""The fixtures of the settings tests: a real SQLite file, and the simulator behind the Horde client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.config import GenerationDefaults
from bot.crypto import KeyRing
from bot.horde import AIHordeAPIAsyncClientSession, AIHordeAPIAsyncSimpleClient
from bot.services.settings.service import GuildSettingsService
from bot.storage import SQLiteStorage, SQLiteURL
from horde_simulator import Simulator


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[SQLiteStorage]:
    async with SQLiteStorage(SQLiteURL(tmp_path / "bot.sqlite3")) as opened:
        yield opened


@pytest.fixture
async def horde(horde_sim: Simulator) -> AsyncIterator[AIHordeAPIAsyncSimpleClient]:
    async with aiohttp.ClientSession() as http:
        session = AIHordeAPIAsyncClientSession(http, base_url=horde_sim.base_url)
        async with session:
            yield AIHordeAPIAsyncSimpleClient(horde_client_session=session, aiohttp_session=http)


@pytest.fixture
def service(
    storage: SQLiteStorage, keyring: KeyRing, horde: AIHordeAPIAsyncSimpleClient
) -> GuildSettingsService:
    return GuildSettingsService(storage, GenerationDefaults(), keyring=keyring, horde=horde)
