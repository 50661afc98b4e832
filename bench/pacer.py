"""One submission pacer for every process of a benchmark run on this IP (standard library only).

The Horde limits ``generate/async`` per IP (2 a second and 90 a minute for plain users) and both
clients plus the background load share this machine's one IP. The runner serves permits over
loopback TCP; each submission first takes one (``acquire_permit``), first come first served,
so all of them together stay inside *sliding* windows a little stricter than the Horde's fixed
ones: then no window of the Horde's can see more than it allows, whatever its alignment.

A permit also names the key to submit with, taken in turn from one pool of plain users: the
real Horde queues a request by its user's kudos at submission, so users who had spent different
amounts would overtake each other; taken in turn, every user has spent about as much as any
other, and the queue is first come, first served, for both clients and the background alike.
"""

from __future__ import annotations

import asyncio
import socketserver
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

# (calls, seconds): the Horde allows 2 per 1 s and 90 per 60 s. One at a time, 0.75 s apart:
# a submission that reaches the Horde late (a busy client, a loaded machine) must not share a
# one-second window with two others, as two permits granted together could.
WINDOWS: tuple[tuple[int, float], ...] = ((1, 0.75), (80, 61.0))


class Pacer:
    """Hands out permits that keep every window, and keys in turn; thread-safe.

    Callers name who they are (``ours``, ``horde_sdk``, ``background``); waiting callers are
    served in turn across names, first come first served within one, so neither client gets its
    jobs into the Horde's queue ahead of the other by asking faster.
    """

    def __init__(self, keys: tuple[str, ...], windows: tuple[tuple[int, float], ...] = WINDOWS) -> None:
        if not keys or any(not key or any(c.isspace() for c in key) for key in keys):
            raise ValueError("the pacer needs keys without whitespace")
        self.keys = keys
        self._windows = [(calls, period, deque[float]()) for calls, period in windows]
        self._cond = threading.Condition()
        self._waiting: dict[str, deque[list[str]]] = {}
        self._turn: deque[str] = deque()
        self._closed = False
        self.granted = 0
        self._dispatcher = threading.Thread(target=self._dispatch, name="pacer-dispatch", daemon=True)
        self._dispatcher.start()

    def permit(self, caller: str) -> str:
        """Wait for this caller's turn and a free slot; the key to submit with."""
        slot: list[str] = []
        with self._cond:
            if caller not in self._waiting:
                self._waiting[caller] = deque()
                self._turn.append(caller)
            self._waiting[caller].append(slot)
            self._cond.notify_all()
            while not slot and not self._closed:
                self._cond.wait()
        if not slot:
            raise RuntimeError("the pacer was closed")
        return slot[0]

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _next_start(self) -> float:
        start = time.monotonic()
        for calls, period, starts in self._windows:
            if starts:
                start = max(start, starts[-1])
            if len(starts) >= calls:
                start = max(start, starts[-calls] + period)
        return start

    def _dispatch(self) -> None:
        with self._cond:
            while not self._closed:
                if not any(self._waiting.values()):
                    self._cond.wait()
                    continue
                delay = self._next_start() - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                    continue
                while not self._waiting[self._turn[0]]:
                    self._turn.rotate(-1)
                caller = self._turn[0]
                self._turn.rotate(-1)
                start = time.monotonic()
                for calls, _, starts in self._windows:
                    starts.append(start)
                    while len(starts) > calls:
                        starts.popleft()
                self._waiting[caller].popleft().append(self.keys[self.granted % len(self.keys)])
                self.granted += 1
                self._cond.notify_all()


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        word, _, caller = self.rfile.readline().decode().strip().partition(" ")
        if word != "permit":
            return
        key = self.server.pacer.permit(caller or "anonymous")
        self.wfile.write(f"ok {key}\n".encode())


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024  # every lane of both clients may ask at once

    def __init__(self, pacer: Pacer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.pacer = pacer


@contextmanager
def serve_permits(pacer: Pacer) -> Iterator[tuple[str, int]]:
    """Serve ``pacer`` on a loopback port for the duration; yields ``(host, port)``."""
    server = _Server(pacer)
    thread = threading.Thread(target=server.serve_forever, name="pacer", daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield str(host), int(port)
    finally:
        pacer.close()
        server.shutdown()
        server.server_close()


async def acquire_permit(host: str, port: int, caller: str) -> str:
    """Wait for a permit to submit one generation; returns the key to submit it with."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"permit {caller}\n".encode())
        await writer.drain()
        answer = await reader.readline()
    finally:
        writer.close()
    word, _, key = answer.decode().strip().partition(" ")
    if word != "ok" or not key:
        raise RuntimeError(f"the pacer answered {answer!r}")
    return key
