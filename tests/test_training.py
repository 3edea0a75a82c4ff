"""Training learns, resumes exactly, masks the context, and survives bad steps."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from conftest import DATA
from model_fixtures import one_thread
from pianomuse.cli import app
from pianomuse.data.samples import SampleStream, collate
from pianomuse.data.shards import TokenShards
from pianomuse.model import RWKV7, RWKV7Config
from pianomuse.train.config import make_config
from pianomuse.train.evaluate import masked_loss_sum
from pianomuse.train.loop import TrainingStopped, train
from pianomuse.train.monitor import read_metrics
from pianomuse.train.schedule import lr_factor, make_optimizer, param_groups


def tiny(vocab: int, seed: int = 0) -> RWKV7:
    torch.manual_seed(seed)
    return RWKV7(RWKV7Config(vocab_size=vocab, n_layer=2, n_embd=64, head_size=32))


def cfg(prepared: Path, out: Path, **kw):
    base = dict(
        data_path=str(prepared),
        output_dir=str(out),
        preset="tiny",
        max_seq_len=64,
        batch_size=2,
        max_steps=6,
        eval_every=3,
        save_every=3,
        eval_batches=1,
        device="cpu",
    )
    base.update(kw)
    return make_config(base)


def test_one_step_changes_every_parameter(tok, song_ids):
    # The official init zeroes the output projections and the first LoRA matrices, so the
    # first steps reach the inside of a block in stages (output -> LoRA -> token-shift mixes);
    # after those, every step reaches every weight.
    model = tiny(tok.vocab_size)
    opt = make_optimizer(model, 1e-3, 0.1, (0.9, 0.99), 1e-8)
    idx = torch.from_numpy(song_ids[:129]).long()[None]

    def step() -> None:
        opt.zero_grad()
        loss = masked_loss_sum(model(idx[:, :-1]), idx[:, 1:], torch.ones(1, 128)) / 128
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    step()
    for n, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {n}"
        assert not torch.equal(p, before[n]), f"{n} did not change"
    assert len(before) > 20


def test_weight_decay_only_on_matrices(tok):
    model = tiny(tok.vocab_size)
    decay, plain = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(p.ndim == 2 for p in decay["params"])
    assert {names[id(p)] for p in decay["params"]} >= {
        "emb.weight",
        "head.weight",
        "blocks.0.att.key.weight",
    }
    assert "blocks.0.att.w0" in {names[id(p)] for p in plain["params"]}


def test_schedule_warms_up_then_decays():
    f = [lr_factor(s, 10, 100, 0.1) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False))
    assert f[-1] == pytest.approx(0.1, abs=1e-3)


def test_tiny_model_overfits_a_real_excerpt(tok, song_ids):
    model = tiny(tok.vocab_size, seed=1)
    opt = make_optimizer(model, 1e-2, 0.0, (0.9, 0.99), 1e-8)
    idx = torch.from_numpy(song_ids[:257]).long()[None]  # 256 tokens of song 001
    losses = []
    for _ in range(150):
        loss = masked_loss_sum(model(idx[:, :-1]), idx[:, 1:], torch.ones(1, 256)) / 256
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if loss < 0.05:
            break
    assert losses[0] > 4.0
    assert min(losses) < 0.1, f"stuck at {min(losses):.3f}"


def test_completion_loss_has_no_gradient_on_the_context(prepared):
    stream = SampleStream(TokenShards(prepared), 128, objective="completion", seed=0)
    tok = stream.shards.tokenizer
    batch = collate([stream.sample(0, i) for i in range(2)], tok.pad_id)
    model = tiny(tok.vocab_size)
    logits = model(batch["idx"])
    logits.retain_grad()
    masked_loss_sum(logits, batch["targets"], batch["mask"]).backward()
    g = logits.grad.abs().sum(-1)  # (B, T)
    ctx = batch["mask"] == 0
    assert ctx.any() and (~ctx).any()
    assert torch.all(g[ctx] == 0)
    assert torch.all(g[~ctx] > 0)
    # The samples really mix both kinds of position (a context is never empty).
    assert batch["mask"].sum() < batch["mask"].numel()


def test_resume_reaches_the_same_weights(prepared, tmp_path):
    straight = tmp_path / "straight"
    train(cfg(prepared, straight))

    class Crash(Exception):
        pass

    def crash_at_3(step: int) -> None:
        if step == 3:
            raise Crash

    broken = tmp_path / "broken"
    with pytest.raises(Crash):
        train(cfg(prepared, broken), on_step=crash_at_3)
    assert torch.load(broken / "last.pt", weights_only=True)["step"] == 3
    train(cfg(prepared, broken, resume=True))
    a, b = load_file(straight / "last.safetensors"), load_file(broken / "last.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    steps = [r["step"] for r in read_metrics(broken / "metrics.jsonl") if "loss" in r]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_non_finite_steps_are_skipped_then_stop_the_run(prepared, tmp_path):
    out = tmp_path / "nan"

    def poison(step: int) -> None:
        if step == 3:  # after step 3's checkpoint: a weight goes NaN, as after an overflow
            model = poison.trainer_model
            with torch.no_grad():
                model.head.weight[0, 0] = math.nan

    from pianomuse.train import loop

    real_init = loop.Trainer.__init__

    def init(self, *a, **kw):
        real_init(self, *a, **kw)
        poison.trainer_model = self.model

    loop.Trainer.__init__ = init
    try:
        with (
            pytest.warns(UserWarning, match="non-finite"),
            pytest.raises(TrainingStopped, match="3 non-finite"),
        ):
            train(cfg(prepared, out, max_steps=20, max_bad_steps=3), on_step=poison)
    finally:
        loop.Trainer.__init__ = real_init
    last = torch.load(out / "last.pt", weights_only=True)
    assert last["step"] == 3
    assert all(torch.isfinite(t).all() for t in last["model"].values())


def test_train_command_writes_run_files_and_validation_falls(tmp_path):
    out = tmp_path / "run"
    r = CliRunner().invoke(
        app,
        [
            "train",
            "--data-path",
            str(DATA),
            "--output-dir",
            str(out),
            "--preset",
            "tiny",
            "--max-steps",
            "30",
            "--eval-every",
            "10",
            "--max-seq-len",
            "128",
            "--device",
            "cpu",
        ],
    )
    assert r.exit_code == 0, r.output
    for f in (
        "metrics.jsonl",
        "loss.png",
        "last.pt",
        "best.pt",
        "last.safetensors",
        "best.safetensors",
    ):
        assert (out / f).stat().st_size > 0, f
    val = [m["val_loss"] for m in read_metrics(out / "metrics.jsonl") if "val_loss" in m]
    assert len(val) == 3 and val[-1] < val[0] - 0.5
    ev = CliRunner().invoke(
        app,
        [
            "eval",
            "--model",
            str(out / "best.safetensors"),
            "--data-path",
            str(out / "data"),
            "--max-seq-len",
            "128",
        ],
    )
    assert ev.exit_code == 0, ev.output
    bpt = float(
        next(ln.split()[1] for ln in ev.output.splitlines() if ln.startswith("bits_per_token"))
    )
    assert bpt == pytest.approx(min(val) / math.log(2), rel=0.05)


def test_bad_options_are_one_line_errors(tmp_path):
    r = CliRunner().invoke(
        app, ["train", "--data-path", str(DATA), "--output-dir", str(tmp_path), "--preset", "huge"]
    )
    assert r.exit_code == 1 and "unknown preset" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(
        app, ["train", "--data-path", str(tmp_path / "none"), "--output-dir", str(tmp_path)]
    )
    assert r.exit_code == 1 and "no such file" in r.output


def _weights_distance(a: Path, b: Path) -> float:
    """L2 distance between two runs' final weights, over every tensor."""
    wa, wb = load_file(a / "last.safetensors"), load_file(b / "last.safetensors")
    return math.sqrt(sum(float((wa[k] - wb[k]).double().pow(2).sum()) for k in wa))


def test_two_process_ddp_equals_one_process(prepared, tmp_path):
    """Two processes of batch 2 train as one process of batch 4. Their first step reads the
    same weights: its loss and gradient norm agree to float32 rounding. After it the runs
    differ by summation order alone, which Adam amplifies where gradients are near zero (to
    ~1e-5 on some CPUs), so the final weights are held to the noise floor of the same
    comparison without DDP: one process accumulating two micro-batches of 2."""
    common = [
        "--data-path",
        str(prepared),
        "--preset",
        "tiny",
        "--max-seq-len",
        "64",
        "--max-steps",
        "3",
        "--eval-every",
        "3",
        "--eval-batches",
        "1",
        "--device",
        "cpu",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--standalone",  # a free rendezvous port, whatever else runs on the machine
        "--log-dir",  # each rank's own output, for the failure message
        str(tmp_path / "ranks"),
        "--redirects",
        "3",
        "-m",
        "pianomuse",
        "train",
        "--output-dir",
        str(ddp),
        "--batch-size",
        "2",
        *common,
    ]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    ranks = "".join(f"\n--- {f.relative_to(tmp_path)}\n{f.read_text()[-1500:]}"
                    for f in sorted((tmp_path / "ranks").rglob("*.log")))  # fmt: skip
    assert p.returncode == 0, p.stderr[-1500:] + ranks
    single, accum = tmp_path / "single", tmp_path / "accum"
    with one_thread():  # as each DDP process runs: the thread count changes summation order
        for out, batch in (
            (single, ["--batch-size", "4"]),
            (accum, ["--batch-size", "2", "--grad-accum", "2"]),
        ):
            r = CliRunner().invoke(app, ["train", "--output-dir", str(out), *batch, *common])
            assert r.exit_code == 0, r.output
    logs = {run: read_metrics(run / "metrics.jsonl") for run in (ddp, single, accum)}
    spread = [m["rank_weight_spread"] for m in logs[ddp] if "rank_weight_spread" in m]
    assert spread == [0.0]  # the two processes hold the same weights
    first = {run: next(m for m in log if m.get("step") == 1) for run, log in logs.items()}
    for key in ("loss", "grad_norm", "tokens_seen"):
        assert first[ddp][key] == pytest.approx(first[single][key], rel=1e-5), key
    floor = _weights_distance(accum, single)
    assert 0 < floor < 1e-3  # rounding noise, far below what 3 steps move the weights
    assert _weights_distance(ddp, single) <= 10 * floor
    moved = load_file(ddp / "last.safetensors")["head.weight"]
    assert not np.allclose(moved.numpy(), 0)


@pytest.mark.parametrize(
    "option, message",
    [
        (["--wkv-backend", "bogus"], "--wkv-backend must be one of"),
        (["--n-embd", "100", "--head-size", "64"], "divisible"),
        (["--device", "bogus"], "--device"),
        (["--pretrained-model", "missing.pth"], "no such file"),
        (["--seed", "99999999999999999999"], "--seed must be in"),
        (["--device", "cuda:99"], "--device cuda:99"),
    ],
)
def test_options_are_checked_before_any_work(tmp_path, option, message):
    out = tmp_path / "run"
    r = CliRunner().invoke(
        app, ["train", "--data-path", str(DATA), "--output-dir", str(out), *option]
    )
    assert r.exit_code == 1 and message in r.output, r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    assert not (out / "data").exists()  # nothing was prepared


def test_compiled_training_is_the_eager_twin(prepared, tmp_path):
    """`--compile` trains the same run: the same losses step by step and the same weights
    after three steps, within float reassociation (torch.compile fuses and reorders)."""
    eager, compiled = tmp_path / "eager", tmp_path / "compiled"
    train(cfg(prepared, eager, max_steps=3, eval_every=3, save_every=3))
    train(cfg(prepared, compiled, max_steps=3, eval_every=3, save_every=3, compile_model=True))
    losses = [
        [r["loss"] for r in read_metrics(run / "metrics.jsonl") if "loss" in r]
        for run in (eager, compiled)
    ]
    assert len(losses[0]) == 3 and np.allclose(losses[0], losses[1], rtol=1e-4)
    a, b = load_file(eager / "last.safetensors"), load_file(compiled / "last.safetensors")
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-3, atol=1e-5), k


def test_compile_without_a_compiler_is_one_line(tmp_path, monkeypatch):
    import pianomuse.train.config as config

    monkeypatch.setattr(config.shutil, "which", lambda name: None)
    out = tmp_path / "run"
    r = CliRunner().invoke(
        app,
        ["train", "--data-path", str(DATA), "--output-dir", str(out), "--compile", "--device",
         "cpu"],
    )  # fmt: skip
    assert r.exit_code == 1 and "--compile on a CPU needs a C++ compiler" in r.output
    assert len(r.output.strip().splitlines()) == 1 and not (out / "data").exists()


def test_each_precision_option_says_what_it_takes():
    """`train --precision` is the training's arithmetic; `complete --precision` the weights
    inference runs on: two options of one name, each with its own help."""
    runner = CliRunner()
    train_help = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output
    complete_help = runner.invoke(app, ["complete", "--help"], env={"COLUMNS": "200"}).output
    assert "fp32 or bf16" in train_help and "int8" not in train_help
    assert "Weights inference runs on a CPU: int8" in complete_help
