"""HTTP waits on the AI Horde, declared to SimCord as external, so a slow Horde never stalls the world.

SimCord settles after every action: it waits until all of the bot's work is parked on a timer.
A task waiting for an HTTP answer is not parked, so a Horde that answers in 3 s would hold every
browser action for 3 s and then fail it with "bot did not settle", and a wait that began while
SimCord moved its clock in the background would be recorded as a timeout and handed to the next
action. ``Env.external_wait`` is SimCord's public way to say "this task waits for the outside
world": such a task counts as parked. The bot's aiohttp session is built with
:func:`declaring_response_class`, whose responses wrap the two waits of a request in it: for the
answer's status and headers (``start``), and for its body (``read``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from aiohttp.connector import Connection
from simcord import Env, SetupError

T = TypeVar("T")

REASON = "an answer from the AI Horde"


async def declared(env: Env | None, start: Callable[[], Awaitable[T]]) -> T:
    """Await ``start()`` as an external wait of the bot's task; plainly outside the bot's work.

    SimCord refuses the declaration outside the bot's tasks (the playground's own calls, the
    shutdown) and inside another one; ``start()`` is then awaited as usual.
    """
    if env is None:
        return await start()
    begun = False

    async def run() -> T:
        nonlocal begun
        begun = True
        return await start()

    try:
        result: T = await env.external_wait(run(), reason=REASON)
    except SetupError:
        if begun:
            raise
        return await start()
    return result


def declaring_response_class(env: Callable[[], Env | None]) -> type[aiohttp.ClientResponse]:
    """An ``aiohttp.ClientSession(response_class=...)`` whose waits ``env()`` sees as external
    (``env()`` is None until SimCord runs: the session is made before the bot and its Env)."""

    class DeclaringResponse(aiohttp.ClientResponse):
        async def start(self, connection: Connection) -> aiohttp.ClientResponse:
            parent: Any = super().start
            return await declared(env(), lambda: parent(connection))

        async def read(self) -> bytes:
            parent = super().read
            return await declared(env(), parent)

    return DeclaringResponse
