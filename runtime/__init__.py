"""The ground floor: geometry, tracking loop, bundle reader, backends, datasets and metrics.

numpy + OpenCV + ONNX Runtime only (TensorRT when present). Nothing in this package may import torch.
"""
