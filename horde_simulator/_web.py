"""What the simulator's route handlers share: JSON answers, bodies and query numbers, plain errors."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from horde_simulator import _errors as err

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Route = tuple[str, str, Handler, str]
"""``(method, path, handler, endpoint name)``: the name is what counters, faults and limits use."""


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


class PlainError(Exception):
    """An error whose body is not the Horde's ``{"message", "rc"}``."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


def origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


async def json_body(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PlainError(400, err.BAD_JSON_BODY) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise err.SchemaError({"": f"{data!r} is not of type 'object'"})
    return data


def query_int(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise err.SchemaError({name: f"invalid literal for int() with base 10: {value!r}"}) from exc


def html_not_found() -> web.Response:
    """What the server answers for a URL it has no route for: Werkzeug's HTML page."""
    return web.Response(status=404, text=err.NOT_FOUND_PAGE, content_type="text/html", charset="utf-8")


async def drop_connection(request: web.Request) -> web.StreamResponse:
    """Send headers and a few bytes of a promised longer body, then hang up."""
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.content_length = 4096
    await response.prepare(request)
    await response.write(b'{"finished": ')
    if request.transport is not None:
        request.transport.close()
    return response


def required_header(request: web.Request, name: str, help_text: str) -> str:
    value = request.headers.get(name)
    if value is None:
        raise err.missing_parameter(name, help_text, "the HTTP headers")
    return value


def as_int(value: Any, name: str, help_text: str) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return int(value)
    try:
        return int(str(value))
    except ValueError as exc:
        raise err.SchemaError(
            {name: f"{help_text} invalid literal for int() with base 10: {value!r}"}
        ) from exc
