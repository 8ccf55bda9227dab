"""A one-line progress bar for `pgvigil run-job` on a terminal.

Progress lines and the bar share the screen: a line clears the bar, is printed, and the bar
is drawn again below it on the next update.
"""

from __future__ import annotations

from typing import TextIO

WIDTH = 30


class TerminalProgress:
    def __init__(self, stream: TextIO):
        self.stream = stream
        self._drawn = False

    def line(self, text: str) -> None:
        self._clear()
        self.stream.write(text + "\n")
        self.stream.flush()

    def bar(self, what: str, done: int, total: int) -> None:
        share = done / total if total > 0 else 1.0
        filled = round(WIDTH * min(share, 1.0))
        self._clear()
        self.stream.write(
            f"{what} [{'#' * filled}{'.' * (WIDTH - filled)}] {share:4.0%} {done}/~{total} rows"
        )
        self.stream.flush()
        self._drawn = True

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\033[K")
            self._drawn = False
