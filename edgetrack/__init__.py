"""edgetrack: distil Siamese trackers and run them on the edge.

The stages are import packages of their own (``edgetrack.runtime``, ``edgetrack.distill``,
``edgetrack.deploy``); nothing here imports them, so ``import edgetrack`` stays torch-free and cheap.
"""

__version__ = "0.1.0"
