"""A steady, bounded load of GET requests from outside the host (test code)."""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    total: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    bodies: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(n for s, n in self.statuses.items() if s != "200")


class SteadyLoad:
    """GET `path` on `address` at `rate` requests/s until stopped, or at most
    `max_seconds` (and rate * max_seconds requests), whichever comes first."""

    def __init__(
        self, address: str, path: str, rate: float = 20, max_seconds: float = 90, host: str | None = None, port: int = 80
    ) -> None:
        self.address, self.path, self.rate, self.max_seconds, self.port = address, path, rate, max_seconds, port
        self.host = host
        self.result = LoadResult()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def _one(self) -> None:
        conn = http.client.HTTPConnection(self.address, self.port, timeout=10)
        try:
            headers = {"Host": self.host} if self.host else {}
            conn.request("GET", self.path, headers=headers)
            resp = conn.getresponse()
            body = resp.read().decode(errors="replace")
            status = str(resp.status)
        except OSError as exc:
            status, body = f"error:{type(exc).__name__}", ""
        finally:
            conn.close()
        with self._lock:
            self.result.total += 1
            self.result.statuses[status] += 1
            if len(self.result.bodies) < 10000:
                self.result.bodies.append(body)

    def _loop(self) -> None:
        interval = 1.0 / self.rate
        deadline = time.monotonic() + self.max_seconds
        budget = int(self.rate * self.max_seconds)
        next_at = time.monotonic()
        while not self._stop.is_set() and time.monotonic() < deadline and budget > 0:
            t = threading.Thread(target=self._one, daemon=True)
            t.start()
            self._threads.append(t)
            budget -= 1
            next_at += interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def __enter__(self) -> SteadyLoad:
        self._runner = threading.Thread(target=self._loop, daemon=True)
        self._runner.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._runner.join(timeout=15)
        for t in self._threads:
            t.join(timeout=15)
