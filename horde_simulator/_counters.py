"""What the simulator received, for tests to assert on.

Endpoint names (stable): ``generate_async``, ``generate_check``, ``generate_status`` (GET),
``generate_delete`` (DELETE), ``text_async``, ``text_status``, ``text_delete``,
``interrogate_async``, ``interrogate_status``, ``interrogate_delete``, ``find_user``,
``user_details``, ``kudos_transfer``, ``status_models``, ``status_model``, ``heartbeat``,
``performance``, ``news``, ``workers``, ``worker``, ``worker_by_name``, ``styles_image``,
``style_image``, ``style_image_by_name``, ``styles_text``, ``style_text``,
``style_text_by_name`` and ``r2_image`` (image downloads from ``/_sim/r2``).

Every call is counted when it arrives, whatever happens to it next (a fault, a 429…).
Status ``0`` means the simulator dropped the connection.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

DELETE_ENDPOINTS = ("generate_delete", "text_delete", "interrogate_delete")


class Counters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()
        self._calls_by_id: Counter[tuple[str, str]] = Counter()
        self._statuses: Counter[tuple[str, int]] = Counter()
        self._rate_limited: Counter[tuple[str, str | None]] = Counter()
        self._faults: Counter[str] = Counter()

    def calls(self, endpoint: str, *, id: str | None = None) -> int:
        """Calls to ``endpoint``, or only those about request ``id``."""
        with self._lock:
            return self._calls[endpoint] if id is None else self._calls_by_id[(endpoint, id)]

    def total(self, endpoint: str) -> int:
        return self.calls(endpoint)

    def status(self, code: int, endpoint: str | None = None) -> int:
        """Responses with HTTP status ``code`` (from ``endpoint``, or from all)."""
        with self._lock:
            return sum(n for (ep, st), n in self._statuses.items() if st == code and endpoint in (None, ep))

    def statuses(self, endpoint: str | None = None) -> dict[int, int]:
        with self._lock:
            out: Counter[int] = Counter()
            for (ep, st), n in self._statuses.items():
                if endpoint in (None, ep):
                    out[st] += n
            return dict(out)

    def rate_limited(self, endpoint: str | None = None, *, id: str | None = None) -> int:
        """Calls the rate limiter rejected (injected ``rate_limit`` faults are not included)."""
        with self._lock:
            return sum(
                n
                for (ep, rid), n in self._rate_limited.items()
                if endpoint in (None, ep) and id in (None, rid)
            )

    def deletes(self, id: str) -> int:
        """DELETEs received for request ``id`` (image, text or alchemy)."""
        with self._lock:
            return sum(self._calls_by_id[(endpoint, id)] for endpoint in DELETE_ENDPOINTS)

    def faults(self, endpoint: str | None = None) -> int:
        """Injected faults that fired."""
        with self._lock:
            return self._faults[endpoint] if endpoint is not None else sum(self._faults.values())

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self._calls_by_id.clear()
            self._statuses.clear()
            self._rate_limited.clear()
            self._faults.clear()

    def snapshot(self) -> dict[str, Any]:
        """Everything as JSON (``GET /_sim/counters``)."""
        with self._lock:
            by_id: dict[str, dict[str, int]] = {}
            for (endpoint, request_id), n in self._calls_by_id.items():
                by_id.setdefault(endpoint, {})[request_id] = n
            statuses: dict[str, dict[str, int]] = {}
            for (endpoint, code), n in self._statuses.items():
                statuses.setdefault(endpoint, {})[str(code)] = n
            limited: dict[str, int] = {}
            for (endpoint, _), n in self._rate_limited.items():
                limited[endpoint] = limited.get(endpoint, 0) + n
            return {
                "calls": dict(self._calls),
                "calls_by_id": by_id,
                "statuses": statuses,
                "rate_limited": limited,
                "faults": dict(self._faults),
            }

    def record_call(self, endpoint: str, request_id: str | None) -> None:
        with self._lock:
            self._calls[endpoint] += 1
            if request_id is not None:
                self._calls_by_id[(endpoint, request_id)] += 1

    def record_status(self, endpoint: str, status: int) -> None:
        with self._lock:
            self._statuses[(endpoint, status)] += 1

    def record_rate_limited(self, endpoint: str, request_id: str | None) -> None:
        with self._lock:
            self._rate_limited[(endpoint, request_id)] += 1

    def record_fault(self, endpoint: str) -> None:
        with self._lock:
            self._faults[endpoint] += 1
