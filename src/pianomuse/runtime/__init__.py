"""Inference without torch: the model's exported graphs run by a deployment runtime."""

from pianomuse.runtime.onnx import OnnxEngine, OnnxModel, State

__all__ = ["OnnxEngine", "OnnxModel", "State"]
