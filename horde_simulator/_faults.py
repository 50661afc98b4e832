"""Injected failures: scripted (deterministic, consumed in order) or drawn with a probability.

A fault belongs to an endpoint name (``"generate_check"``, ``"r2_image"``…, or ``"*"`` for
every endpoint) and optionally to one request id.  Scripted faults win over probabilities::

    sim.state.faults.script("generate_check", Fault.http(503, retry_after=1), times=2)
    sim.state.faults.set_probability("generate_status", Fault.http(502, html=True), 0.3)
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

FaultKind = Literal["http", "rate_limit", "drop", "delay", "expire"]
_KINDS: tuple[FaultKind, ...] = ("http", "rate_limit", "drop", "delay", "expire")
ANY_ENDPOINT = "*"


@dataclass(frozen=True)
class Fault:
    """What to do instead of (or before) answering normally.

    - ``http``: answer ``status`` with a JSON ``{"message"}`` body, or a CDN-like HTML page
      when ``html`` is true; ``Retry-After`` when ``retry_after`` is set.
    - ``rate_limit``: the limiter's 429 (``{"message": limit_text}``, ``Retry-After`` and
      ``X-Ratelimit-*`` headers).
    - ``drop``: send the headers and part of the body, then close the connection.
    - ``delay``: read the request, wait ``seconds`` (real time), then process it and answer
      normally, even if the client gave up meanwhile (as the Horde behind its proxy does).
    - ``expire``: expire the request named in the path now, then answer normally (a 404).
    """

    kind: FaultKind
    status: int = 503
    html: bool = False
    retry_after: float | None = None
    seconds: float = 0.0
    limit_text: str = "10 per 1 minute"

    @classmethod
    def http(cls, status: int = 503, *, html: bool = False, retry_after: float | None = None) -> Fault:
        return cls("http", status=status, html=html, retry_after=retry_after)

    @classmethod
    def rate_limit(cls, retry_after: float = 1, limit_text: str = "10 per 1 minute") -> Fault:
        return cls("rate_limit", status=429, retry_after=retry_after, limit_text=limit_text)

    @classmethod
    def drop(cls) -> Fault:
        return cls("drop")

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        return cls("delay", seconds=seconds)

    @classmethod
    def expire(cls) -> Fault:
        return cls("expire")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Fault:
        kind = data.get("kind")
        if kind not in _KINDS:
            raise ValueError(f"fault 'kind' must be one of {list(_KINDS)}")
        status = data.get("status", 429 if kind == "rate_limit" else 503)
        retry_after = data.get("retry_after")
        seconds = data.get("seconds", 0.0)
        if not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError("fault 'status' must be an HTTP status code")
        if retry_after is not None and not _non_negative(retry_after):
            raise ValueError("fault 'retry_after' must be a non-negative number")
        if not _non_negative(seconds):
            raise ValueError("fault 'seconds' must be a non-negative number")
        return cls(
            kind=kind,
            status=status,
            html=bool(data.get("html", False)),
            retry_after=retry_after,
            seconds=float(seconds),
            limit_text=str(data.get("limit_text", "10 per 1 minute")),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "status": self.status,
            "html": self.html,
            "retry_after": self.retry_after,
            "seconds": self.seconds,
            "limit_text": self.limit_text,
        }


def _non_negative(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


@dataclass
class _Scripted:
    endpoint: str
    fault: Fault
    remaining: int
    request_id: str | None


class FaultPlan:
    """Thread-safe list of scripted faults plus per-endpoint probabilities."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripted: list[_Scripted] = []
        self._probabilities: dict[str, tuple[Fault, float]] = {}

    def script(self, endpoint: str, fault: Fault, *, times: int = 1, id: str | None = None) -> None:
        """The next ``times`` calls to ``endpoint`` (about request ``id``, if given) get ``fault``."""
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._scripted.append(_Scripted(endpoint, fault, times, id))

    def set_probability(self, endpoint: str, fault: Fault, probability: float) -> None:
        """Every call to ``endpoint`` gets ``fault`` with this probability (0 removes it)."""
        if not 0.0 <= probability <= 1.0:
            raise ValueError("probability must be between 0 and 1")
        with self._lock:
            if probability == 0.0:
                self._probabilities.pop(endpoint, None)
            else:
                self._probabilities[endpoint] = (fault, probability)

    def clear(self) -> None:
        with self._lock:
            self._scripted.clear()
            self._probabilities.clear()

    def pending(self, endpoint: str | None = None) -> int:
        """How many scripted faults are still to fire (for ``endpoint``, or in total)."""
        with self._lock:
            return sum(s.remaining for s in self._scripted if endpoint in (None, s.endpoint))

    def draw(self, endpoint: str, request_id: str | None, rng: random.Random) -> Fault | None:
        """The fault for this call, if any; consumes one scripted use."""
        with self._lock:
            for entry in self._scripted:
                if entry.endpoint not in (endpoint, ANY_ENDPOINT):
                    continue
                if entry.request_id is not None and entry.request_id != request_id:
                    continue
                entry.remaining -= 1
                if entry.remaining == 0:
                    self._scripted.remove(entry)
                return entry.fault
            for key in (endpoint, ANY_ENDPOINT):
                chance = self._probabilities.get(key)
                if chance is not None and rng.random() < chance[1]:
                    return chance[0]
        return None

    def apply_json(self, data: Mapping[str, Any]) -> None:
        """``{"clear": bool, "script": [{endpoint, times?, id?, kind, ...}],
        "probabilities": [{endpoint, probability, kind, ...}]}``; validated before applying."""
        unknown = set(data) - {"clear", "script", "probabilities"}
        if unknown:
            raise ValueError(f"unknown fault setting(s): {sorted(unknown)}")
        scripts = [_parse_entry(item, "times") for item in _as_list(data.get("script", []))]
        chances = [_parse_entry(item, "probability") for item in _as_list(data.get("probabilities", []))]
        for _, _, probability, _ in chances:
            if not 0.0 <= probability <= 1.0:
                raise ValueError("probability must be between 0 and 1")
        for _, _, times, _ in scripts:
            if times < 1 or times != int(times):
                raise ValueError("'times' must be a positive integer")
        if data.get("clear"):
            self.clear()
        for endpoint, fault, times, request_id in scripts:
            self.script(endpoint, fault, times=int(times), id=request_id)
        for endpoint, fault, probability, _ in chances:
            self.set_probability(endpoint, fault, probability)

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "script": [
                    {"endpoint": s.endpoint, "times": s.remaining, "id": s.request_id, **s.fault.to_json()}
                    for s in self._scripted
                ],
                "probabilities": [
                    {"endpoint": endpoint, "probability": p, **fault.to_json()}
                    for endpoint, (fault, p) in self._probabilities.items()
                ],
            }


def _as_list(value: Any) -> list[Mapping[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(item, Mapping) for item in value):
        raise ValueError("fault lists must be lists of objects")
    return value


def _parse_entry(item: Mapping[str, Any], amount_key: str) -> tuple[str, Fault, float, str | None]:
    endpoint = item.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        raise ValueError("each fault needs an 'endpoint'")
    amount = item.get(amount_key, 1)
    if not isinstance(amount, int | float) or isinstance(amount, bool):
        raise ValueError(f"'{amount_key}' must be a number")
    request_id = item.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ValueError("'id' must be a string")
    body = {k: v for k, v in item.items() if k not in {"endpoint", amount_key, "id"}}
    return endpoint, Fault.from_json(body), float(amount), request_id
