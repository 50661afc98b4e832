"""The aiohttp application: the Horde routes under ``/api``, images under ``/_sim/r2`` and the
``/_sim`` control surface."""

from __future__ import annotations

import asyncio
import http
import logging
import math
import random
import re
from typing import Any

import aiohttp
from aiohttp import web

from bot.horde.consts import ANON_API_KEY
from horde_simulator import _errors as err
from horde_simulator import _forms, _images
from horde_simulator import _kudos as kudos
from horde_simulator import _requests as build
from horde_simulator import _serialize as ser
from horde_simulator._control import ControlRoutes
from horde_simulator._counters import Counters
from horde_simulator._faults import Fault
from horde_simulator._info import InfoRoutes
from horde_simulator._ratelimit import RateLimiter, Verdict
from horde_simulator._records import Form, GenRequest, Interrogation, Kind
from horde_simulator._schema import (
    IMAGE_REQUEST,
    INTERROGATE_REQUEST,
    KNOWN_POST_PROCESSORS,
    TEXT_REQUEST,
    Schema,
    validate,
)
from horde_simulator._state import State
from horde_simulator._teams import TeamRoutes
from horde_simulator._users import transfer_kudos
from horde_simulator._web import (
    Handler,
    PlainError,
    Route,
    as_int,
    drop_connection,
    html_not_found,
    json_body,
    json_response,
    origin,
    required_header,
)
from horde_simulator.config import Limit, SimUser

log = logging.getLogger(__name__)

_SOURCE_IMAGE_MAX_BYTES = 5 * 1024 * 1024
_DROPPED = web.RequestKey("horde_sim_dropped", bool)
_R2_PATH = re.compile(r"/_sim/r2/([^/?#]+?)(?:\.webp)?(?:[?#].*)?$")


class SimulatorApp:
    """Holds the shared pieces and builds the ``web.Application``."""

    def __init__(self, state: State, counters: Counters, limiter: RateLimiter, fault_rng_seed: int) -> None:
        self.state = state
        self.counters = counters
        self.limiter = limiter
        self._fault_rng = random.Random(fault_rng_seed)

    def build(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        api: list[Route] = [
            ("POST", "/api/v2/generate/async", self.generate_async, "generate_async"),
            ("GET", "/api/v2/generate/check/{id}", self.generate_check, "generate_check"),
            ("GET", "/api/v2/generate/status/{id}", self.generate_status, "generate_status"),
            ("DELETE", "/api/v2/generate/status/{id}", self.generate_delete, "generate_delete"),
            ("POST", "/api/v2/generate/text/async", self.text_async, "text_async"),
            ("GET", "/api/v2/generate/text/status/{id}", self.text_status, "text_status"),
            ("DELETE", "/api/v2/generate/text/status/{id}", self.text_delete, "text_delete"),
            ("POST", "/api/v2/interrogate/async", self.interrogate_async, "interrogate_async"),
            ("GET", "/api/v2/interrogate/status/{id}", self.interrogate_status, "interrogate_status"),
            ("DELETE", "/api/v2/interrogate/status/{id}", self.interrogate_delete, "interrogate_delete"),
            ("GET", "/api/v2/find_user", self.find_user, "find_user"),
            ("GET", "/api/v2/users/{user_id}", self.user_details, "user_details"),
            ("POST", "/api/v2/kudos/transfer", self.kudos_transfer, "kudos_transfer"),
        ]
        api += InfoRoutes(self.state).routes()
        api += TeamRoutes(self.state).routes()
        api += ControlRoutes(self.state, self.counters, self.limiter).routes()
        for method, path, handler, name in api:
            app.router.add_route(method, path, handler, name=name)
        return app

    # -- middleware: counting, faults, rate limits, error bodies -----------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route_name = request.match_info.route.name
        if route_name is None and isinstance(request.match_info.http_exception, web.HTTPNotFound):
            return html_not_found()
        if route_name is None or route_name.startswith("sim_"):
            return await self._answer(request, handler)
        request_id = request.match_info.get("id")
        if route_name == "r2_image" and request_id is not None:
            request_id = request_id.removesuffix(".webp")
        self.counters.record_call(route_name, request_id)
        response = await self._process(request, handler, route_name, request_id)
        self.counters.record_status(route_name, 0 if request.get(_DROPPED) else response.status)
        return response

    async def _process(
        self, request: web.Request, handler: Handler, endpoint: str, request_id: str | None
    ) -> web.StreamResponse:
        fault = self.state.faults.draw(endpoint, request_id, self._fault_rng)
        if fault is not None:
            self.counters.record_fault(endpoint)
            answered = await self._apply_fault(request, fault, request_id)
            if answered is not None:
                return answered
        api_key = request.headers.get("apikey")
        verdict = self.limiter.check(
            self.state.knobs.rate_limits,
            endpoint,
            ip=request.remote or "unknown",
            method=request.method,
            path=request.path,
            api_key=api_key,
            anonymous=api_key in (None, ANON_API_KEY),
        )
        if verdict is not None and not verdict.allowed:
            self.counters.record_rate_limited(endpoint, request_id)
            return json_response({"message": verdict.limit.text}, 429, verdict.headers())
        response = await self._answer(request, handler)
        if verdict is not None:
            response.headers.update(verdict.headers())
        return response

    async def _answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except err.HordeError as exc:
            body = exc.body()
            if exc.status == 404:
                body["message"] = err.with_route_hint(exc.message, request.path)
            return json_response(body, exc.status)
        except err.SchemaError as exc:
            return json_response(exc.body(), 400)
        except PlainError as exc:
            return json_response(exc.body, exc.status)
        except web.HTTPNotFound:
            return json_response(err.NOT_FOUND_BODY, 404)
        except web.HTTPMethodNotAllowed:
            return json_response(err.METHOD_NOT_ALLOWED_BODY, 405)

    async def _apply_fault(
        self, request: web.Request, fault: Fault, request_id: str | None
    ) -> web.StreamResponse | None:
        if fault.kind == "delay":
            # The server (its proxy, really) has the whole request before it is slow to answer: a
            # client that gives up meanwhile does not stop it from being processed.
            if request.can_read_body:
                await request.read()
            await asyncio.sleep(fault.seconds)
            return None
        if fault.kind == "expire":
            if request_id is not None:
                self.state.expire(request_id)
            return None
        if fault.kind == "drop":
            request[_DROPPED] = True
            return await drop_connection(request)
        retry_after = fault.retry_after
        if fault.kind == "rate_limit":
            amount = int(fault.limit_text.split(" ", 1)[0]) if fault.limit_text[:1].isdigit() else 1
            wait = retry_after if retry_after is not None else 1.0
            return limiter_response(fault.limit_text, amount, wait)
        headers = {"Retry-After": str(math.ceil(retry_after))} if retry_after is not None else {}
        phrase = http.HTTPStatus(fault.status).phrase
        if fault.html:
            page = (
                f"<html>\r\n<head><title>{fault.status} {phrase}</title></head>\r\n<body>\r\n"
                f"<center><h1>{fault.status} {phrase}</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
                "</body>\r\n</html>\r\n"
            )
            return web.Response(status=fault.status, text=page, content_type="text/html", headers=headers)
        return json_response({"message": phrase}, fault.status, headers)

    # -- image generation ------------------------------------------------------------------------

    async def generate_async(self, request: web.Request) -> web.Response:
        state = self.state
        body = await json_body(request)
        _validate(body, IMAGE_REQUEST)
        api_key = required_header(request, "apikey", "The API Key corresponding to a registered user.")
        user = self._generation_user(request, api_key, body)
        build.apply_style(state, "image", body)
        if body["prompt"] == "":
            raise err.missing_prompt()
        params = build.image_params(body.get("params") or {})
        models = list(body["models"]) if "models" in body else ["stable_diffusion"]
        build.check_workers(state, list(body.get("workers") or []))
        build.check_concurrency(state, user, "image", models, int(params["n"]))
        build.check_image_request(
            body, params, user, request.headers.get("Client-Agent", "unknown:0:unknown")
        )
        per_image, required = build.price_image(state, user, body, params, models)
        if body.get("dry_run"):
            return json_response({"kudos": float(round(required))}, 200)
        build.check_activation(body)
        record = build.new_request(state, "image", user, body, params, models, per_image)
        state.add_request(record)
        state.charge(record, kudos.IMAGE_SUBMIT_TAX)
        answer: dict[str, Any] = {"id": record.id, "kudos": float(round(per_image))}
        if not state.can_serve(record):
            answer["message"] = ser.IMAGE_NO_WORKER_MESSAGE
            answer["warnings"] = [{"code": "NoAvailableWorker", "message": ser.IMAGE_NO_WORKER_MESSAGE}]
        return json_response(answer, 202)

    def _generation_user(self, request: web.Request, api_key: str, body: dict[str, Any]) -> SimUser:
        if self.state.knobs.maintenance_mode:
            raise err.maintenance_mode()
        webhook = body.get("webhook")
        if isinstance(webhook, str) and not webhook.startswith("https://"):
            raise err.bad_request("webhooks need to point to an https endpoint.")
        user = self.state.user_by_key(api_key)
        if user is None:
            raise err.invalid_api_key()
        build.check_proxied_account(body, user)
        if user.trusted or user.education:
            # One generation by a trusted user lifts the caller's IP limits for a day.
            whitelist_for = self.state.knobs.rate_limits.whitelist_seconds
            self.limiter.whitelist(request.remote or "unknown", whitelist_for)
        return user

    async def generate_check(self, request: web.Request) -> web.Response:
        state = self.state
        with state.lock:
            record = self._get(request, "image", "Image Waiting Prompt (Check)")
            answer = state.cached(
                ("check", record.id), state.knobs.check_cache, lambda: ser.check(state, record)
            )
            return json_response(answer)

    async def generate_status(self, request: web.Request) -> web.Response:
        with self.state.lock:
            record = self._get(request, "image", "Image Waiting Prompt (Status)")
            record.retrieved = record.retrieved or record.done
            return json_response(ser.image_status(self.state, record, origin(request)))

    async def generate_delete(self, request: web.Request) -> web.Response:
        with self.state.lock:
            record = self._get(request, "image", "Image Waiting Prompt (Delete)")
            answer = ser.image_status(self.state, record, origin(request))
            self.state.cancel_request(record)
            return json_response(answer)

    def _get(self, request: web.Request, kind: Kind, request_type: str) -> GenRequest:
        request_id = request.match_info["id"]
        record = self.state.get_request(request_id, kind)
        if record is None:
            raise err.request_not_found(request_type, request_id)
        return record

    # -- text generation -------------------------------------------------------------------------

    async def text_async(self, request: web.Request) -> web.Response:
        state = self.state
        body = await json_body(request)
        _validate(body, TEXT_REQUEST)
        api_key = required_header(request, "apikey", "The API Key corresponding to a registered user.")
        if "prompt" not in body:
            raise err.missing_parameter("prompt", "The prompt to generate from.", "the JSON body")
        user = self._generation_user(request, api_key, body)
        build.apply_style(state, "text", body)
        if body["prompt"] == "":
            raise err.missing_prompt()
        params = {**build.TEXT_DEFAULTS, **(body.get("params") or {})}
        models = list(body.get("models") or [])
        build.check_workers(state, list(body.get("workers") or []))
        build.check_concurrency(state, user, "text", models, int(params["n"]))
        build.check_text_request(body, params)
        dry_run = build.price_text(state, user, body, params)
        if body.get("dry_run"):
            return json_response({"kudos": float(round(dry_run))}, 200)
        record = build.new_request(state, "text", user, body, params, models, 0.0)
        state.add_request(record)
        state.charge(record, kudos.TEXT_SUBMIT_TAX)
        # The server never prices a text request for a model its reference does not know.
        answer: dict[str, Any] = {"id": record.id, "kudos": 0.0}
        if not state.can_serve(record):
            answer["message"] = ser.TEXT_NO_WORKER_MESSAGE
        return json_response(answer, 202)

    async def text_status(self, request: web.Request) -> web.Response:
        with self.state.lock:
            record = self._get(request, "text", "Text Waiting Prompt (Status)")
            record.retrieved = record.retrieved or record.done
            return json_response(ser.text_status(self.state, record))

    async def text_delete(self, request: web.Request) -> web.Response:
        with self.state.lock:
            record = self._get(request, "text", "Text Waiting Prompt (Delete)")
            answer = ser.text_status(self.state, record)
            self.state.cancel_request(record)
            return json_response(answer)

    # -- alchemy ---------------------------------------------------------------------------------

    async def interrogate_async(self, request: web.Request) -> web.Response:
        state = self.state
        body = await json_body(request)
        _validate(body, INTERROGATE_REQUEST)
        api_key = required_header(request, "apikey", "A User API key")
        if "source_image" not in body:
            raise err.missing_parameter("source_image", None, "the JSON body")
        if state.knobs.maintenance_mode:
            raise err.maintenance_mode()
        webhook = body.get("webhook")
        if isinstance(webhook, str) and not webhook.startswith("https://"):
            raise err.bad_request("webhooks need to point to an https endpoint.")
        user = state.user_by_key(api_key)
        if user is None:
            raise err.invalid_api_key()
        requested = list(body.get("forms") or [])
        count, limit = _forms.active_forms(state, user) + len(requested), user.concurrency * 10
        if count > limit:
            raise err.too_many_prompts(count, limit)
        source = await self._load_source_image(str(body["source_image"]))
        try:
            width, height = _images.probe_size(source)
            tiles = kudos.image_tiles(width, height)
            if tiles > 255:
                raise err.image_validation_failed(
                    f"Image is too large ({tiles} tiles) and would cause horde alchemists to run out of VRAM "
                    "trying to process it.",
                    "SourceImageResolutionExceeded",
                )
            await asyncio.to_thread(_images.decode, source)
        except ValueError as exc:
            raise err.image_validation_failed() from exc
        forms: list[Form] = []
        for item in requested:
            if any(form.name == item["name"] for form in forms):
                continue
            forms.append(
                Form(
                    id=state.new_id(),
                    name=item["name"],
                    payload=item.get("payload"),
                    kudos=kudos.form_kudos(item["name"], tiles, KNOWN_POST_PROCESSORS),
                )
            )
        now = state.now()
        record = Interrogation(
            id=state.new_id(),
            user=user,
            image=source,
            width=width,
            height=height,
            forms=forms,
            created=now,
            expires_at=now + state.knobs.request_lifetime,
            slow_workers=bool(body.get("slow_workers", True)),
            queued_at=now,
        )
        state.add_interrogation(record)
        return json_response({"id": record.id}, 202)

    async def _load_source_image(self, source: str) -> bytes:
        if not source.startswith(("http://", "https://")):
            return build.decode_base64(source)
        own = _R2_PATH.search(source)
        if own is not None:
            stored = self.state.get_image(own[1])
            if stored is None:
                raise err.image_validation_failed()
            return stored
        try:
            timeout = aiohttp.ClientTimeout(total=10)
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(source) as reply:
                data = await reply.content.read(_SOURCE_IMAGE_MAX_BYTES + 1)
                if reply.status != 200 or len(data) > _SOURCE_IMAGE_MAX_BYTES:
                    raise err.image_validation_failed()
                return data
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise err.image_validation_failed() from exc

    async def interrogate_status(self, request: web.Request) -> web.Response:
        with self.state.lock:
            record = self._get_interrogation(request)
            record.retrieved = record.retrieved or record.final
            return json_response(ser.interrogation_status(record, origin(request)))

    async def interrogate_delete(self, request: web.Request) -> web.Response:
        with self.state.lock:
            record = self._get_interrogation(request)
            _forms.cancel_interrogation(self.state, record)
            return json_response(ser.interrogation_status(record, origin(request)))

    def _get_interrogation(self, request: web.Request) -> Interrogation:
        request_id = request.match_info["id"]
        record = self.state.get_interrogation(request_id)
        if record is None:
            raise err.request_not_found("Interrogation", request_id)
        return record

    # -- users and kudos -------------------------------------------------------------------------

    async def find_user(self, request: web.Request) -> web.Response:
        api_key = request.headers.get("apikey")
        if not api_key:
            raise err.invalid_api_key()
        state = self.state
        user = state.user_by_key(api_key)
        if user is None:
            raise err.unknown_api_key(api_key)
        return json_response(
            state.cached(
                ("find_user", api_key),
                state.knobs.find_user_cache,
                lambda: ser.user_details(state, user, privileged=True),
            )
        )

    async def user_details(self, request: web.Request) -> web.Response:
        state = self.state
        raw_id = request.match_info["user_id"]
        if not raw_id.isdigit():
            raise err.user_not_found(err.USER_ID_HINT)
        privileged = False
        api_key = request.headers.get("apikey")
        if api_key:
            requester = state.user_by_key(api_key)
            if requester is None:
                raise err.invalid_api_key()
            privileged = requester.moderator or str(requester.id) == raw_id
        user = state.users.get(int(raw_id))
        if user is None:
            raise err.user_not_found(raw_id)
        found = user
        lifetime = state.knobs.find_user_cache
        return json_response(
            state.cached(
                ("user", raw_id, privileged),
                lifetime,
                lambda: ser.user_details(state, found, privileged=privileged),
            )
        )

    async def kudos_transfer(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        api_key = required_header(request, "apikey", "The sending user's API key.")
        if "username" not in body:
            raise err.missing_parameter(
                "username", "The user ID which will receive the kudos.", "the JSON body"
            )
        amount = as_int(body.get("amount", 100), "amount", "The amount of kudos to transfer.")
        user = self.state.user_by_key(api_key)
        if user is None:
            raise err.invalid_api_key()
        build.check_proxied_account(body, user)
        if user.is_anon:
            raise err.bad_request(
                "You cannot transfer Kudos from Anonymous, smart-ass.", "KudosTransferFromAnon"
            )
        transferred = transfer_kudos(
            self.state, user, str(body["username"]), amount, request.headers.get("Idempotency-Key")
        )
        return json_response({"transferred": transferred})

    # -- information -----------------------------------------------------------------------------


def limiter_response(text: str, amount: int, reset_in: float) -> web.Response:
    """flask-limiter's 429 for a window that ends in ``reset_in`` seconds: the limit as the
    message, no rc, and its headers (``Retry-After`` rounded, so 0 in the last half second)."""
    verdict = Verdict(False, Limit(amount, reset_in, text), 0, reset_in)
    return json_response({"message": text}, 429, verdict.headers())


def _validate(body: dict[str, Any], schema: Schema) -> None:
    errors = validate(body, schema)
    if errors:
        raise err.SchemaError(errors)
