"""The ``/_sim`` control surface: counters, reset, knobs and faults, users, expiry, the ledger."""

from __future__ import annotations

from aiohttp import web

from horde_simulator._counters import Counters
from horde_simulator._ratelimit import RateLimiter
from horde_simulator._state import State
from horde_simulator._web import PlainError, Route, json_body, json_response
from horde_simulator.config import SimUser


class ControlRoutes:
    def __init__(self, state: State, counters: Counters, limiter: RateLimiter) -> None:
        self.state = state
        self.counters = counters
        self.limiter = limiter

    def routes(self) -> list[Route]:
        return [
            ("GET", "/_sim/counters", self.sim_counters, "sim_counters"),
            ("POST", "/_sim/reset", self.sim_reset, "sim_reset"),
            ("GET", "/_sim/config", self.sim_get_config, "sim_get_config"),
            ("POST", "/_sim/config", self.sim_config, "sim_config"),
            ("POST", "/_sim/users", self.sim_users, "sim_users"),
            ("POST", "/_sim/expire", self.sim_expire, "sim_expire"),
            ("GET", "/_sim/requests", self.sim_requests, "sim_requests"),
        ]

    async def sim_counters(self, request: web.Request) -> web.Response:
        return json_response(self.counters.snapshot())

    async def sim_reset(self, request: web.Request) -> web.Response:
        options = await json_body(request) if request.can_read_body else {}
        if options.get("counters", True):
            self.counters.reset()
        if options.get("rate_limits", True):
            self.limiter.reset()
        if options.get("faults", True):
            self.state.faults.clear()
        if options.get("requests", False):
            with self.state.lock:
                self.state.requests.clear()
                self.state.interrogations.clear()
        return json_response({"reset": True})

    async def sim_get_config(self, request: web.Request) -> web.Response:
        return json_response({"knobs": self.state.knobs.to_json(), "faults": self.state.faults.to_json()})

    async def sim_config(self, request: web.Request) -> web.Response:
        patch = await json_body(request)
        faults = patch.pop("faults", None)
        try:
            if faults is not None:
                if not isinstance(faults, dict):
                    raise ValueError("'faults' must be an object")
                self.state.faults.apply_json(faults)
            with self.state.lock:
                self.state.knobs.apply_patch(patch)
        except ValueError as exc:
            raise PlainError(400, {"message": str(exc)}) from exc
        self.state.changed()
        return await self.sim_get_config(request)

    async def sim_users(self, request: web.Request) -> web.Response:
        data = await json_body(request)
        try:
            user = SimUser.from_json(data, default_id=self.state.next_user_id())
            self.state.add_user(user)
        except ValueError as exc:
            raise PlainError(400, {"message": str(exc)}) from exc
        return json_response({"username": user.username, "id": user.id}, 201)

    async def sim_expire(self, request: web.Request) -> web.Response:
        data = await json_body(request)
        request_id = data.get("id")
        if not isinstance(request_id, str) or not self.state.expire(request_id):
            raise PlainError(404, {"message": f"no request with id {request_id!r}"})
        return json_response({"expired": request_id})

    async def sim_requests(self, request: web.Request) -> web.Response:
        """Every request accepted since start (``kind`` image, text or alchemy; expired ones too),
        with its ``created`` and ``finished_at`` times and ``now``, all on the simulator's clock
        (``time.monotonic`` unless configured otherwise); ``end`` (open, finished, faulted,
        cancelled, expired), whether its final status was ``retrieved``, and ``orphans``: the ids
        still open or finished but never collected."""
        with self.state.lock:
            ledger = self.state.ledger()
            orphans = sorted(self.state.orphans())
            records = {request_id: entry.to_json() for request_id, entry in ledger.items()}
            return json_response({"now": self.state.now(), "requests": records, "orphans": orphans})
