"""Progress reporting for library code: a small protocol that the command line implements with a progress bar.

Library functions never print; they take a ``progress`` (and a ``note`` for one-line messages, see
``backends.ignore_note``) and the CLI passes implementations that write to the terminal.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """A progress bar as library code sees it: one task at a time, started, advanced, closed."""

    def start(self, total: int, label: str) -> None:
        """Begin a task of ``total`` steps described by ``label``."""

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more steps of the current task as done."""

    def close(self) -> None:
        """End the current task."""


class NoProgress:
    """The default ``Progress``: reports nothing."""

    def start(self, total: int, label: str) -> None:
        """Ignore the start of a task."""

    def advance(self, n: int = 1) -> None:
        """Ignore progress."""

    def close(self) -> None:
        """Ignore the end of a task."""


#: The shared no-op ``Progress``, the default of every library function that takes one.
NO_PROGRESS = NoProgress()
