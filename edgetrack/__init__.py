"""edgetrack: distil Siamese trackers and run them on the edge.

The stages are import packages of their own (``edgetrack.runtime``, ``edgetrack.distill``,
``edgetrack.deploy``); nothing here imports them, so ``import edgetrack`` stays torch-free and cheap.
``edgetrack.open_tracker`` (``runtime.open_tracker``) is loaded on first use.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "open_tracker":
        from edgetrack.runtime.open_tracker import open_tracker

        return open_tracker
    raise AttributeError(f"module 'edgetrack' has no attribute {name!r}")
