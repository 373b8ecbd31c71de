"""A sandbox clock: wall-clock seconds plus an offset that tests move with `advance()`."""

from __future__ import annotations

import time


class SandboxClock:
    """Wall-clock seconds plus an offset that `advance()` moves (status timelines, TTLs)."""

    def __init__(self, start: float | None = None) -> None:
        self._offset = 0.0 if start is None else start - time.time()

    def __call__(self) -> float:
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += seconds
