"""Torch's vector math made exact from a process's first call on."""

from __future__ import annotations

import torch


def initialise_vector_math() -> None:
    """Make this process's first call into torch's vector math (exp, log, tanh, ...) on one element, so on one
    thread.

    The first such call of a process on a tensor that torch splits over two threads can return values with a
    relative error of 1e-4 in one thread's half (torch 2.13 CPU, two threads: 6 of 16 fresh processes for
    ``torch.exp`` of 16,384 values; every later call is exact, whatever the function). In training that was the
    first step's box outputs, so two runs of the same settings parted from the first step. After this call every
    first call is exact (``tests/test_vector_math.py``)."""
    torch.exp(torch.zeros(1))
