"""The memory estimator against the tensor peak PyTorch measures for a real CPU step."""

from __future__ import annotations

import json

import pytest
import torch
from torch.profiler import ProfilerActivity, profile
from typer.testing import CliRunner

from pianomuse.cli import app
from pianomuse.model import RWKV7, RWKV7Config
from pianomuse.model.memory import estimate_memory
from pianomuse.tokenizer import Tokenizer
from pianomuse.train.evaluate import masked_loss_sum
from pianomuse.train.schedule import make_optimizer


def live_peak(fn, tmp_path) -> int:
    """Peak bytes of live CPU tensors while `fn` runs (PyTorch's own memory timeline: what
    `torch.cuda.max_memory_allocated` is on a GPU, not the allocator's cached pages)."""
    with profile(
        activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True
    ) as prof:
        fn()
    out = tmp_path / "timeline.json"
    with pytest.warns(FutureWarning):  # deprecated in favour of a CUDA-only API
        prof.export_memory_timeline(str(out), device="cpu")
    _, sizes = json.loads(out.read_text())
    return max(sum(s) for s in sizes)


@pytest.mark.parametrize(
    "layers, width, head, batch, seq, chunk, training",
    [
        (2, 256, 64, 4, 1024, 32, True),
        (3, 128, 32, 4, 512, 16, True),
        (4, 256, 64, 4, 1024, 64, False),
    ],
)
def test_estimate_within_a_quarter_of_the_measured_peak(
    tmp_path, layers, width, head, batch, seq, chunk, training
):
    config = RWKV7Config(391, layers, width, head_size=head, chunk_len=chunk)
    gen = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 391, (batch, seq), generator=gen)
    mask = torch.ones(batch, seq)

    def train_steps() -> None:  # two steps: the second holds AdamW's moments as well
        model = RWKV7(config)
        opt = make_optimizer(model, 1e-3, 0.1, (0.9, 0.99), 1e-8)
        for _ in range(2):
            (masked_loss_sum(model(idx), idx, mask) / mask.sum()).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

    def prefill() -> None:
        model = RWKV7(config)
        with torch.inference_mode():
            model.prefill(idx)

    measured = live_peak(train_steps if training else prefill, tmp_path)
    est = estimate_memory(config, batch, seq, training=training)
    assert 0.75 * measured <= est.total <= 1.25 * measured, (est.total, measured)
    if training:  # the parts that are exact by construction
        p = config.n_params()
        assert (est.params, est.grads, est.optimizer) == (4 * p, 4 * p, 8 * p)
        assert est.activations > 10 * est.params  # a long window: activations dominate


def test_estimate_grows_as_it_should():
    c = RWKV7Config(391, 6, 256, head_size=64)
    a, b = estimate_memory(c, 8, 1024), estimate_memory(c, 16, 1024)
    assert b.activations == pytest.approx(2 * a.activations, rel=1e-6)
    assert b.params == a.params and b.state == 2 * a.state
    assert estimate_memory(c, 8, 1024, training=False).total < a.total / 4
    assert estimate_memory(c, 8, 1024, precision="bf16").activations < a.activations
    with pytest.raises(ValueError):
        estimate_memory(c, 8, 1024, precision="fp8")


def test_estimate_memory_command(trained_model):
    r = CliRunner().invoke(app, ["estimate-memory", "--preset", "small"])
    assert r.exit_code == 0, r.output
    small = RWKV7Config(Tokenizer.latest().vocab_size, 6, 256, head_size=64).n_params()
    assert f"{small / 1e6:.2f} M parameters, batch 8 x 1024 tokens" in r.output.replace("\n", " ")
    total = next(ln for ln in r.output.splitlines() if "total" in ln)
    assert 2500 < float(total.split("│")[2].replace(",", "")) < 4000
    r = CliRunner().invoke(app, ["estimate-memory", "--model", str(trained_model), "--inference"])
    assert r.exit_code == 0 and "inference prefill: 2 x 64" in r.output
    r = CliRunner().invoke(app, ["estimate-memory", "--preset", "tiny", "--n-layer", "0"])
    assert r.exit_code == 1 and "--n-layer" in r.output and "Traceback" not in r.output
