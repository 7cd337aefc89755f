"""How template and search features meet. Pixel-wise (MatMul) correlation exports to every TensorRT version;
depth-wise and up-channel correlation are convolutions whose weights come from the template, which only recent
TensorRT versions import, so students default to pixel-wise (DESIGN.md, "The model families")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pixelwise(z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``z (B, C, h, w)``, ``x (B, C, H, W)`` -> ``(B, h*w, H, W)``: every template pixel's dot product with
    every search pixel, as one batched MatMul."""
    b, c, h, w = x.shape
    corr = torch.matmul(z.reshape(b, c, -1).transpose(1, 2), x.reshape(b, c, h * w))
    return corr.reshape(b, -1, h, w)


def depthwise(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``x (B, C, H, W)`` correlated channel by channel with ``kernel (B, C, h, w)`` -> ``(B, C, H-h+1, W-w+1)``."""
    b, c = kernel.shape[:2]
    out = F.conv2d(x.reshape(1, b * c, x.size(2), x.size(3)), kernel.reshape(b * c, 1, kernel.size(2), kernel.size(3)), groups=b * c)
    return out.reshape(b, c, out.size(2), out.size(3))


def upchannel(x: torch.Tensor, kernel: torch.Tensor, out_channels: int) -> torch.Tensor:
    """SiamRPN's correlation: ``kernel (B, out*C, h, w)`` is read as ``out`` filters over ``x (B, C, H, W)``."""
    b, c = x.shape[:2]
    weight = kernel.reshape(b * out_channels, c, kernel.size(2), kernel.size(3))
    out = F.conv2d(x.reshape(1, b * c, x.size(2), x.size(3)), weight, groups=b)
    return out.reshape(b, out_channels, out.size(2), out.size(3))


class KernelXCorr(nn.Module):
    """Search features ``x (B, C, H, W)`` correlated with ``kernels`` template kernels given as ``(B, kernels*C, k, k)``
    (kernel ``j`` in channels ``[j*C:(j+1)*C]``) -> ``(B, kernels, H-k+1, W-k+1)``: SiamRPN's up-channel
    correlation, and SiamFC's at one kernel.

    With ``matmul`` no convolution takes its weights from the template, so it exports to every TensorRT version:
    every kernel pixel meets every search pixel in one MatMul (``correlation.pixelwise``), and a constant 0/1
    convolution adds up, for each output cell, the k*k products that line up. Otherwise it is the references' form,
    ``correlation.upchannel``. Both have no parameters, so a trained model can switch between them.
    """

    def __init__(self, kernels: int, kernel_size: int, matmul: bool):
        super().__init__()
        self.kernels = kernels
        self.matmul = matmul
        if matmul:
            taps = kernel_size * kernel_size
            # shift_sum[j, p*k + q, p, q] = 1: output j takes the product of its kernel's pixel (p, q) at offset (p, q).
            eye = torch.eye(taps).reshape(1, taps, kernel_size, kernel_size)
            # A constant of the architecture, not a weight: kept out of the state_dict, so both forms load the same one.
            self.register_buffer("shift_sum", eye.repeat(kernels, 1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        if not self.matmul:
            return upchannel(x, kernel, self.kernels)
        b, c = x.shape[:2]
        bank = kernel.reshape(b, self.kernels, c, -1).transpose(1, 2)
        return F.conv2d(pixelwise(bank, x), self.shift_sum, groups=self.kernels)
