"""The information routes: models, heartbeat, modes, performance, news, workers, styles and the
stored images."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from horde_simulator import _errors as err
from horde_simulator import _serialize as ser
from horde_simulator._records import Kind, SimWorker
from horde_simulator._state import State
from horde_simulator._web import Handler, Route, json_response, query_int


class InfoRoutes:
    def __init__(self, state: State) -> None:
        self.state = state

    def routes(self) -> list[Route]:
        return [
            ("GET", "/api/v2/status/models", self.status_models, "status_models"),
            ("GET", "/api/v2/status/models/{name:.+}", self.status_model, "status_model"),
            ("GET", "/api/v2/status/heartbeat", self.heartbeat, "heartbeat"),
            ("GET", "/api/v2/status/modes", self.status_modes, "status_modes"),
            ("GET", "/api/v2/status/performance", self.performance, "performance"),
            ("GET", "/api/v2/status/news", self.news, "news"),
            ("GET", "/api/v2/workers", self.workers, "workers"),
            ("GET", "/api/v2/workers/name/{name}", self.worker_by_name, "worker_by_name"),
            ("GET", "/api/v2/workers/{worker_id}", self.worker, "worker"),
            ("GET", "/api/v2/styles/image", self._styles("image"), "styles_image"),
            ("GET", "/api/v2/styles/image/{style_id}", self._style_by_id("image"), "style_image"),
            (
                "GET",
                "/api/v2/styles/image_by_name/{name}",
                self._style_by_name("image"),
                "style_image_by_name",
            ),
            ("GET", "/api/v2/styles/text", self._styles("text"), "styles_text"),
            ("GET", "/api/v2/styles/text/{style_id}", self._style_by_id("text"), "style_text"),
            ("GET", "/api/v2/styles/text_by_name/{name}", self._style_by_name("text"), "style_text_by_name"),
            ("GET", "/_sim/r2/{id}", self.r2_image, "r2_image"),
        ]

    async def status_models(self, request: web.Request) -> web.Response:
        query = request.query
        requested_type = query.get("type", "image")
        if requested_type not in ("image", "text"):
            raise err.bad_request("'type' needs to be one of ['image', 'text']")
        kind: Kind = "text" if requested_type == "text" else "image"
        model_state = query.get("model_state", "all")
        if model_state not in ("known", "custom", "all"):
            raise err.bad_request("'model_state' needs to be one of ['known', 'custom', 'all']")
        min_count = query_int(query.get("min_count"), "min_count")
        max_count = query_int(query.get("max_count"), "max_count")
        known = set(
            self.state.knobs.advertised_image_models
            if kind == "image"
            else self.state.knobs.advertised_text_models
        )
        answer = []
        for name in self.state.listed_models(kind):
            if (model_state == "known" and name not in known) or (model_state == "custom" and name in known):
                continue
            stats = ser.model_stats(self.state, kind, name)
            if (min_count is not None and stats["count"] < min_count) or (
                max_count is not None and stats["count"] > max_count
            ):
                continue
            answer.append(stats)
        return json_response(answer)

    async def status_model(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        kinds: tuple[Kind, ...] = ("image", "text")
        found = [
            ser.model_stats(self.state, kind, name)
            for kind in kinds
            if name in self.state.listed_models(kind)
        ]
        return json_response(found[:1])

    async def heartbeat(self, request: web.Request) -> web.Response:
        return json_response(ser.heartbeat(self.state))

    async def status_modes(self, request: web.Request) -> web.Response:
        """Without a moderator key: maintenance and invite-only modes (the latter never on here)."""
        modes = {"maintenance_mode": self.state.knobs.maintenance_mode, "invite_only_mode": False}
        return json_response(modes)

    async def performance(self, request: web.Request) -> web.Response:
        return json_response(ser.performance(self.state))

    async def news(self, request: web.Request) -> web.Response:
        return json_response(list(ser.NEWS))

    async def workers(self, request: web.Request) -> web.Response:
        kind, name = request.query.get("type"), request.query.get("name")
        chosen = [
            w
            for w in self.state.workers
            if (kind is None or w.type == kind) and (name is None or w.name.lower() == name.lower())
        ]
        with self.state.lock:
            return json_response([ser.worker_details(self.state, w) for w in chosen])

    async def worker(self, request: web.Request) -> web.Response:
        worker_id = request.match_info["worker_id"]
        return self._worker_answer(
            next((w for w in self.state.workers if w.id == worker_id), None), worker_id
        )

    async def worker_by_name(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        found = next((w for w in self.state.workers if w.name.lower() == name.lower()), None)
        return self._worker_answer(found, name)

    def _worker_answer(self, worker: SimWorker | None, key: str) -> web.Response:
        if worker is None:
            raise err.worker_not_found(key)
        with self.state.lock:
            return json_response(ser.worker_details(self.state, worker))

    def _styles(self, kind: Kind) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            sort = request.query.get("sort", "popular")
            if sort not in ("popular", "age"):
                raise err.bad_request("'model_state' needs to be one of ['popular', 'age']")
            page = query_int(request.query.get("page"), "page") or 1
            tag, model = request.query.get("tag"), request.query.get("model")
            with self.state.lock:
                chosen = [
                    s
                    for s in self.state.styles
                    if s.kind == kind and s.public and tag in (None, *s.tags) and model in (None, *s.models)
                ]
                if sort == "popular":
                    chosen.sort(key=lambda s: s.use_count, reverse=True)
                else:
                    chosen.sort(key=lambda s: s.created, reverse=True)
                start = max(page - 1, 0) * 25
                return json_response([ser.style(s) for s in chosen[start : start + 25]])

        return handler

    def _style_by_id(self, kind: Kind) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            style_id = request.match_info["style_id"]
            found = next((s for s in self.state.styles if s.id == style_id), None)
            if found is None:
                raise err.thing_not_found(f"{kind} Style", style_id)
            return _style_answer(found.kind, kind, ser.style(found))

        return handler

    def _style_by_name(self, kind: Kind) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            name = request.match_info["name"]
            found = self.state.find_style(None, name)
            if found is None:
                raise err.thing_not_found("Style", name)
            return _style_answer(found.kind, kind, ser.style(found))

        return handler

    async def r2_image(self, request: web.Request) -> web.Response:
        image_id = request.match_info["id"].removesuffix(".webp")
        data = self.state.get_image(image_id)
        if data is None:
            return web.Response(status=404, text="NoSuchKey", content_type="text/plain")
        return web.Response(body=data, content_type="image/webp")


def _style_answer(found_kind: str, wanted: Kind, body: dict[str, Any]) -> web.Response:
    if found_kind != wanted:
        raise err.bad_request(
            f"Style was found but was of the wrong type: {found_kind} != {wanted}", "StyleGetMistmatch"
        )
    return json_response(body)
