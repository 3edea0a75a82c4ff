"""Inference without torch: the model's exported graphs run by a deployment runtime."""

from pianomuse.runtime.onnx import OnnxModel, State

__all__ = ["OnnxModel", "State"]
