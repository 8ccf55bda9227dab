"""Top-N membership with hysteresis, so that a shuffling ranking does not churn series.

A key enters the exported set after `windows` consecutive windows in the top N and leaves
after `windows` consecutive windows out of it; with `windows=1` this is a plain top N. Every
series a key gets is a new series in Prometheus, so a key that flickers in and out of the top
N costs a new series (and a stale one) each time it comes back; hysteresis turns flicker into
one steady member or none.

    >>> t = TopN(top_n=1, windows=2)
    >>> t.advance({"a": 5.0, "b": 1.0}); sorted(t.members)   # first window: seeded, no wait
    ['a']
    >>> t.advance({"a": 0.0, "b": 3.0}); sorted(t.members)   # b in 1 window, a out 1
    ['a']
    >>> t.advance({"a": 0.0, "b": 3.0}); sorted(t.members)   # b in 2, a out 2
    ['b']
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class TopN(Generic[K]):
    def __init__(self, top_n: int, windows: int):
        self.top_n = top_n
        self.windows = windows
        self.members: set[K] = set()
        self._in: dict[K, int] = {}  # candidates: consecutive windows in the top N
        self._out: dict[K, int] = {}  # members: consecutive windows out of it
        self._seeded = False

    def advance(self, window: Mapping[K, float]) -> None:
        """One window's score per key (keys absent from it no longer exist: they leave at
        once). Only keys with a positive score can be in the top N."""
        ranked = sorted((k for k, v in window.items() if v > 0), key=lambda k: -window[k])
        top = set(ranked[: self.top_n])
        if not self._seeded:
            # With no history yet (a fresh start), waiting K windows would only hide data.
            self._seeded = True
            self.members = top
            return
        self.members &= set(window)
        self._in = {k: self._in.get(k, 0) + 1 for k in top - self.members}
        for k in [k for k, n in self._in.items() if n >= self.windows]:
            self.members.add(k)
            del self._in[k]
        for k in list(self.members):
            if k in top:
                self._out.pop(k, None)
                continue
            self._out[k] = self._out.get(k, 0) + 1
            if self._out[k] >= self.windows:
                self.members.discard(k)
                del self._out[k]
        self._out = {k: n for k, n in self._out.items() if k in self.members}
        # Members waiting out their K windows can outnumber N; never more than twice N.
        if len(self.members) > 2 * self.top_n:
            keep = sorted(self.members, key=lambda k: (self._out.get(k, 0), -window.get(k, 0)))
            self.members = set(keep[: 2 * self.top_n])
