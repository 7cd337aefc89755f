"""``python -m edgetrack.cli``: the ``edgetrack`` command, as torchrun, the demo and the tests start it."""

from __future__ import annotations

from edgetrack.cli import main

if __name__ == "__main__":
    main()
