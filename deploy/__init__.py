"""The middle floor: bundle writing, ONNX import/export, precision conversion and engine builds."""
