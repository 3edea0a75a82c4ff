"""The model as ONNX graphs for a deployment runtime (`pianomuse.runtime`): the one-token
step and a prefill of `PREFILL_TOKENS` tokens, exported from `RWKV7.step` and `RWKV7.prefill`,
which stay the definition (the runtime's parity tests compare against them).

Both graphs take and return the state as named tensors, one per layer and kind
(`att_shift_i` [B,C], `wkv_i` [B,H,N,N], `ffn_shift_i` [B,C]), so the runtime needs no
knowledge of the model beyond the names. The step's batch size is free; the prefill reads
one sequence of a fixed length (its chunked scan is unrolled when recorded), so longer
contexts are read window by window and a shorter last window is padded, its padding masked
out of the state (`lengths`).
The chunked scan's triangular solve, which ONNX lacks, is exported in its doubling form
(`pianomuse.model.wkv.solve_unit_lower`).

The legacy TorchScript exporter is used (`dynamo=False`): it records exactly the operations
the traced fast paths run (`pianomuse.model.traced`), and it exports in about a second.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from pianomuse.atomic import write_files_atomic
from pianomuse.generate.engine import check_precision
from pianomuse.model.rwkv7 import RWKV7
from pianomuse.model.state import RWKVState
from pianomuse.model.traced import FlatPrefill, FlatStep
from pianomuse.runtime.onnx import META_FILE, graph_file

PREFILL_TOKENS = 64  # the prefill graph's window: 4 chunks of the chunked scan
OPSET = 18


def state_names(n_layer: int) -> list[str]:
    """The state's input names in graph order (outputs are the same with "new_")."""
    return [f"{kind}_{i}" for kind in ("att_shift", "wkv", "ffn_shift") for i in range(n_layer)]


def _onnx_bytes(
    module: nn.Module, inputs: tuple[Tensor, ...], names: list[str], batch_free: bool
) -> bytes:
    """`module` recorded on `inputs` as ONNX; with `batch_free` every input and output has
    its batch free, else the batch is that of `inputs`."""
    states = state_names(module.n_layer)  # type: ignore[arg-type]
    outputs = ["logits", *(f"new_{n}" for n in states)]
    dynamic = {n: {0: "B"} for n in (*names, *states, *outputs)} if batch_free else None
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns where Python reads a shape (the step's batch check): checks of
        # the input, not data flow.
        warnings.simplefilter("ignore")
        torch.onnx.export(module, inputs, buf, input_names=[*names, *states],
                          output_names=outputs, opset_version=OPSET, dynamo=False,
                          dynamic_axes=dynamic)  # fmt: skip
    return buf.getvalue()


def _int8(graph: bytes) -> bytes:
    """The graph with its weight matmuls in int8 (ONNX Runtime's dynamic quantisation: int8
    weights per tensor, activations quantised on the fly)."""
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root, level = logging.getLogger(), logging.getLogger().level
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(graph)
        # It logs advice to the root logger ("consider pre-processing"), not for our users.
        root.setLevel(logging.ERROR)
        try:
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
        finally:
            root.setLevel(level)
        return dst.read_bytes()


def _optimized(graph: bytes) -> bytes:
    """The graph as ONNX Runtime optimises it at its "extended" level (constant folding, the
    fusions of any CPU, no hardware-specific layout), saved: a session then starts in 0.03 s
    rather than 0.1-0.2 s, and steps measured as fast or faster."""
    import tempfile

    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        opts.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
        return Path(opts.optimized_model_filepath).read_bytes()


def export_onnx(
    model: RWKV7,
    out: Path,
    *,
    source_sha256: str | None = None,
    precisions: tuple[str, ...] = ("fp32", "int8"),
) -> list[Path]:
    """Write into `out` the step and prefill graphs at `precisions` and model.json (the
    config, what the model file says besides its weights, and `source_sha256`: the file's,
    by which the copilot knows the export is of it), all or nothing. Returns the paths."""
    model = model.float().eval()
    cfg = model.config
    state = RWKVState.zeros(cfg, 1)
    flat = (*state.att_shift, *state.wkv, *state.ffn_shift)
    tok = torch.zeros(1, dtype=torch.long)
    idx = torch.zeros(1, PREFILL_TOKENS, dtype=torch.long)
    lengths = torch.full((1,), PREFILL_TOKENS, dtype=torch.long)
    step = _onnx_bytes(FlatStep(model, inplace=False), (tok, *flat), ["tok"], batch_free=True)
    # The chunked scan reads the batch size as a number, so the prefill graph holds one
    # sequence; a context is one sequence, and the runtime reads a batch row by row.
    prefill = _onnx_bytes(FlatPrefill(model), (idx, lengths, *flat), ["idx", "lengths"],
                          batch_free=False)  # fmt: skip
    meta = model.meta
    info = {
        "format": "pianomuse-onnx",
        "model_config": cfg.to_dict(),
        "prefill_tokens": PREFILL_TOKENS,
        "tokenizer_config": meta.tokenizer_config,
        "tokenizer_hash": meta.tokenizer_hash,
        "training": None if meta.training is None else dataclasses.asdict(meta.training),
        "source_sha256": source_sha256,
        "precisions": list(precisions),
    }
    files = {META_FILE: json.dumps(info, indent=1, sort_keys=True).encode()}
    for precision in precisions:
        convert = {"fp32": bytes, "int8": _int8}[check_precision(precision)]
        files[graph_file("step", precision)] = _optimized(convert(step))
        files[graph_file("prefill", precision)] = _optimized(convert(prefill))
    return write_files_atomic(out, files)
