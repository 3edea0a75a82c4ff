"""The copilot's model: its file, the engine that runs it, and the PyTorch model where one
is needed (a style, scoring), loaded only then.

`Weights.open` chooses the engine once (`pianomuse.modelfiles.wants_onnx`): ONNX Runtime where
the file's export lies beside it, else PyTorch. Copies of a copilot (`with_style`) share one
`Weights`, so nothing is loaded twice.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pianomuse.errors import UserError
from pianomuse.generate.engine import Engine
from pianomuse.modelfiles import check_runtime, file_sha, open_onnx, torch_model, wants_onnx

if TYPE_CHECKING:
    from pianomuse.model import RWKV7
    from pianomuse.style import Style


class Weights:
    """One model file (or model in memory) at one precision, on `device` (PyTorch's; None:
    where the model is) and `threads` CPU threads (None: ONNX Runtime 1, PyTorch its own)."""

    def __init__(
        self,
        model: RWKV7 | str | os.PathLike,
        *,
        precision: str,
        runtime: str,
        device: Any,
        threads: int | None,
        styled: bool,
    ) -> None:
        self.precision, self.device, self.threads = precision, device, threads
        self.path: Path | None = None
        self._torch: RWKV7 | None = None
        if isinstance(model, (str, os.PathLike)):
            self.path = Path(model)
            sha = file_sha(self.path)
            self.info: dict[str, Any] = {"model": self.path.name, "model_sha256": sha}
            where = str(device or "cpu")
            if wants_onnx(self.path, runtime=runtime, precision=precision, device=where,
                          sha=sha, styled=styled):  # fmt: skip
                self.engine = open_onnx(self.path, precision=precision, threads=threads or 1,
                                        cuda=where == "auto")  # fmt: skip
                return
        else:
            if check_runtime(runtime) == "onnx":
                raise UserError("a model in memory runs on PyTorch: --runtime torch or auto")
            self.info = {"model": "in-memory"}
            self._torch = model
        self.engine = self.torch_engine(self.torch_model())

    def torch_model(self) -> RWKV7:
        """The PyTorch model as loaded, before any style (loaded on first use)."""
        if self._torch is None:
            assert self.path is not None
            self._torch = torch_model(self.path)
        model = self._torch
        if self.threads is not None:
            import torch

            torch.set_num_threads(self.threads)
        if self.device is not None:
            from pianomuse.devices import resolve_device

            model.to(resolve_device(self.device) if isinstance(self.device, str) else self.device)
        return model.eval()

    def torch_engine(self, model: RWKV7, start: Any = None, key: str = "") -> Engine:
        from pianomuse.model.engine import TorchEngine

        return TorchEngine(model, self.precision, start, key)

    def styled(self, style: Style) -> Engine:
        """The engine of the model in `style` (PyTorch: a style changes the weights or the
        start state)."""
        base = self.torch_model()
        style.check(base, self.info.get("model_sha256"))
        model = style.apply(base).to(next(base.parameters()).device).eval()
        # Kept prefills are found by this key: the style's content, so that two styles never
        # share one (an object's id can come back after it is freed).
        return self.torch_engine(model, style.start(1), f"-style-{style.digest}")
