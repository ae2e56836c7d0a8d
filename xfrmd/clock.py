"""Time for the kernel model. The model never reads the system clock itself
(docs/architecture.md)."""
from __future__ import annotations

import time


class Clock:
    """Monotonic seconds for timers plus a wall-clock offset for xfrm_lifetime_cur.add_time."""

    _last_wall = 0

    def now(self) -> float:
        raise NotImplementedError

    def wall(self) -> int:
        """Unix seconds, as ``ktime_get_real_seconds`` (used for add_time/use_time)."""
        raise NotImplementedError

    def _shared(self, seconds: int) -> int:
        """``seconds``, as the same int object as the last call's when the second has not
        changed: every SA and policy keeps its add time, and an int of today's seconds is an
        object of 32 bytes of its own (docs/performance.md, memory per entry)."""
        if seconds != self._last_wall:
            self._last_wall = seconds
        return self._last_wall


class SystemClock(Clock):
    """The server's clock; ``advance`` (xfrmd ctl clock advance) shifts it forward."""

    def __init__(self):
        self.offset = 0.0

    def now(self) -> float:
        return time.monotonic() + self.offset

    def wall(self) -> int:
        # _shared, inline: the server reads it for every SA and policy it adds
        seconds = int(time.time() + self.offset)
        if seconds != self._last_wall:
            self._last_wall = seconds
        return self._last_wall

    def wall_precise(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class ManualClock(Clock):
    """A clock that only moves when told: for tests and the sans-IO model."""

    def __init__(self, start: float = 1000.0, wall_start: int = 1_700_000_000):
        self._now = float(start)
        self._wall0 = wall_start
        self._start = float(start)

    def now(self) -> float:
        return self._now

    def wall(self) -> int:
        seconds = int(self._wall0 + (self._now - self._start))
        if seconds != self._last_wall:      # _shared, without the call (every new state)
            self._last_wall = seconds
        return self._last_wall

    def advance(self, seconds: float) -> None:
        self._now += seconds
