"""`pianomuse train`: the training loop, single process or data parallel under torchrun.

The global batch of an optimizer step is `batch_size x world x grad_accum` windows, taken in
order from a stream that depends only on (seed, epoch): rank r reads its own slice, so the
ranks together see exactly what one process with the whole batch would see. The loss is
normalised by the token count of the whole global batch, which makes N processes and one
process compute the same gradient.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from pianomuse import distributed
from pianomuse.allocator import keep_freed_memory
from pianomuse.data.prepare import resolve_data
from pianomuse.data.samples import SampleStream, collate
from pianomuse.data.shards import TokenShards
from pianomuse.errors import UserError
from pianomuse.model import RWKV7, TrainingSummary
from pianomuse.model.checkpoint import load_checkpoint, reinit_vocab, save_model
from pianomuse.train.config import TrainConfig
from pianomuse.train.evaluate import autocast, evaluate, masked_loss_sum
from pianomuse.train.monitor import Monitor
from pianomuse.train.schedule import lr_factor, make_optimizer
from pianomuse.train.state import load_training_state, rng_state, save_atomic, set_rng_state


class TrainingStopped(UserError):
    """The run cannot go on (e.g. too many non-finite steps); the last good checkpoint stays."""


def build_model(cfg: TrainConfig, vocab_size: int) -> RWKV7:
    """A fresh model with the official init, or a pretrained one with its vocabulary fitted."""
    torch.manual_seed(cfg.seed)
    if cfg.pretrained_model:
        model = load_checkpoint(cfg.pretrained_model).model
        if model.config.vocab_size != vocab_size:
            reinit_vocab(model, vocab_size)
        return model
    return RWKV7(cfg.model.with_vocab(vocab_size))


class Trainer:
    """One training run; `run()` trains to the end, resuming first if asked to."""

    def __init__(
        self,
        cfg: TrainConfig,
        d: distributed.Dist,
        on_step: Callable[[int], None] | None = None,
    ):
        self.cfg = cfg
        self.on_step = on_step
        self.d = d
        self.out = Path(cfg.output_dir)
        if self.d.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        distributed.barrier(self.d)
        data = resolve_data(cfg.data_path, self.out / "data", build=self.d.is_main)
        distributed.barrier(self.d)
        train_shards = TokenShards(data, "train")
        if len(train_shards) == 0:
            raise UserError(f"{data}: no training songs")
        self.tok = train_shards.tokenizer
        try:
            self.stream = SampleStream(
                train_shards,
                cfg.max_seq_len,
                cfg.objective,
                cfg.max_transpose,
                cfg.seed,
                cfg.fim_rate,
                part_rate=cfg.part_rate,
                plain_rate=cfg.plain_rate,
            )
        except ValueError as e:
            raise UserError(str(e)) from None
        val_shards = TokenShards(data, "val")
        # Validation always scores every token of fixed windows, whatever the objective.
        self.val = SampleStream(val_shards, cfg.max_seq_len) if len(val_shards) else None
        self.model = build_model(cfg, self.tok.vocab_size).to(self.d.device)
        distributed.broadcast_parameters(self.model, self.d)
        # torch.compile fuses the element-wise work of the mixes and the recurrence. It only
        # runs the training forward; validation and checkpoints use the model itself.
        self.forward = torch.compile(self.model) if cfg.compile_model else self.model
        self.opt = make_optimizer(
            self.model, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2), cfg.adam_eps
        )
        self.global_batch = cfg.batch_size * self.d.world * cfg.grad_accum
        self.per_epoch = len(self.stream.items(0))  # windows of epoch 0, for progress reports
        self.total_steps = cfg.max_steps or max(
            1, math.ceil(cfg.epochs * self.per_epoch / self.global_batch)
        )
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt,
            lambda s: lr_factor(s, cfg.warmup_steps, self.total_steps, cfg.min_lr_ratio),
        )
        self.step = 0
        self.position = 0  # samples consumed, over all epochs
        self.tokens_seen = 0.0  # loss-carrying tokens consumed
        self.best = math.inf
        self.monitor = Monitor(self.out, self.d.is_main, cfg.tensorboard)

    # ----- data --------------------------------------------------------------------------
    def micro_batches(self) -> list[dict[str, torch.Tensor]]:
        """This rank's micro-batches of the current step (its slice of the global batch)."""
        cfg, d = self.cfg, self.d
        out = []
        for m in range(cfg.grad_accum):
            base = self.position + (m * d.world + d.rank) * cfg.batch_size
            samples = [self.stream.sample_at(base + b) for b in range(cfg.batch_size)]
            # A compiled forward gets one shape: windows padded to the full length.
            length = cfg.max_seq_len if cfg.compile_model else None
            batch = collate(samples, self.tok.pad_id, length=length)
            out.append({k: v.to(d.device) for k, v in batch.items()})
        return out

    # ----- checkpoints -------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "step": self.step,
            "position": self.position,
            "tokens_seen": self.tokens_seen,
            "best": self.best,
            "rng": rng_state(),
            "train_config": self.cfg.to_dict(),
            "model_config": self.model.config.to_dict(),
            "tokenizer_config": self.tok.config(),
            "tokenizer_hash": self.tok.hash,
        }

    def summary(self) -> TrainingSummary:
        """What the model file records of this run (the copilot reads its window length)."""
        cfg = self.cfg
        return TrainingSummary(
            max_seq_len=cfg.max_seq_len,
            steps=self.step,
            tokens_seen=self.tokens_seen,
            data_fingerprint=str(self.stream.shards.manifest.get("inputs_fingerprint", "")),
            tokenizer_hash=self.tok.hash,
            objective=cfg.objective,
            fim_rate=cfg.fim_rate,
        )

    def save(self, name: str) -> None:
        if not self.d.is_main:
            return
        save_atomic(self.state(), self.out / f"{name}.pt")
        path = self.out / f"{name}.safetensors"
        save_model(self.model, path, self.tok.config(), self.tok.hash, self.summary())

    def resume(self) -> None:
        path = self.out / "last.pt"
        if not path.exists():
            raise UserError(f"--resume: no checkpoint at {path}")
        st = load_training_state(path)
        self.tok.check_hash(st.get("tokenizer_hash", ""), what="the checkpoint to resume")
        theirs, ours = st.get("model_config"), self.model.config.to_dict()
        # The shape must match; how the WKV is computed (chunk_len, wkv_backend) may change.
        shape = [k for k in ours if k not in ("chunk_len", "wkv_backend")]
        diff = [k for k in shape if not isinstance(theirs, dict) or theirs.get(k) != ours[k]]
        if diff:
            raise UserError(
                f"--resume: {path} holds another model ({', '.join(diff)} differ); resume with "
                "the options (--preset ...) the run started with"
            )
        try:
            self.model.load_state_dict(st["model"])
            self.opt.load_state_dict(st["optimizer"])
            self.sched.load_state_dict(st["scheduler"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise UserError(
                f"--resume: {path} does not fit this run ({type(e).__name__})"
            ) from None
        self.step, self.position, self.best = st["step"], st["position"], st["best"]
        self.tokens_seen = st["tokens_seen"]
        set_rng_state(st["rng"])
        self.monitor.truncate_after(self.step)

    # ----- one step ----------------------------------------------------------------------
    def train_step(self) -> dict[str, Any]:
        cfg, d = self.cfg, self.d
        batches = self.micro_batches()
        local_tokens = sum(b["mask"].sum() for b in batches)
        tokens = distributed.all_sum(local_tokens.detach(), d).clamp_min(1.0)
        loss_sum = torch.zeros((), device=d.device)
        for b in batches:
            with autocast(d.device, cfg.precision):
                logits = self.forward(b["idx"])
            part = masked_loss_sum(logits, b["targets"], b["mask"])
            # Divided by the global batch's token count: summed over the micro-batches here
            # and over the processes below, the gradient is that of the global mean loss.
            (part / tokens).backward()
            loss_sum += part.detach()
        distributed.sum_gradients(self.model, d)
        loss = float(distributed.all_sum(loss_sum, d) / tokens)
        clip = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
        gnorm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip))
        ok = math.isfinite(loss) and math.isfinite(gnorm)  # equal on all ranks: grads are summed
        if ok:
            self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.sched.step()
        self.position += self.global_batch
        self.tokens_seen += float(tokens)
        return {"loss": loss, "grad_norm": gnorm, "tokens": float(tokens), "ok": ok}

    def validate(self) -> dict[str, float] | None:
        if self.val is None:
            return None
        return evaluate(
            self.model,
            self.val,
            self.cfg.batch_size,
            self.cfg.eval_batches,
            self.d.device,
            self.cfg.precision,
        )

    def _bad_step(self, bad: int) -> int:
        """A non-finite step was skipped (`bad` in a row): warn, and stop after too many."""
        warnings.warn(
            f"step {self.step}: non-finite loss or gradient, step skipped ({bad} in a row)",
            stacklevel=2,
        )
        if bad >= self.cfg.max_bad_steps:
            raise TrainingStopped(
                f"stopped after {bad} non-finite steps in a row at step {self.step}; "
                f"the last good checkpoint is kept in {self.out}"
            )
        return bad

    def _checkpoints(self, last_val: dict[str, float] | None) -> dict[str, float] | None:
        """Validate, keep the best and the last checkpoint, when the step asks; returns the
        latest validation."""
        cfg = self.cfg
        final = self.step == self.total_steps
        if self.step % cfg.eval_every == 0 or final:
            last_val = self.validate()
            if last_val is not None:
                self.monitor.log(
                    {
                        "step": self.step,
                        "val_loss": last_val["loss"],
                        "val_ppl": last_val["ppl"],
                        "val_bpt": last_val["bpt"],
                    }
                )
                if last_val["loss"] < self.best:
                    self.best = last_val["loss"]
                    self.save("best")
            self.monitor.plot()
            spread = distributed.weight_spread(self.model, self.d)
            if self.d.enabled:
                self.monitor.log({"step": self.step, "rank_weight_spread": spread})
        if self.step % cfg.save_every == 0 or final:
            if self.val is None:
                self.save("best")  # without validation songs the latest is the best
            self.save("last")
        return last_val

    # ----- the run -----------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Train to `total_steps`; returns a summary (final losses, steps, throughput)."""
        cfg = self.cfg
        if cfg.resume:
            self.resume()
        elif self.d.is_main:
            (self.out / "metrics.jsonl").unlink(missing_ok=True)
            self.monitor.log(
                {
                    "step": 0,
                    "event": "start",
                    "total_steps": self.total_steps,
                    "params": sum(p.numel() for p in self.model.parameters()),
                    "world": self.d.world,
                    "train_config": cfg.to_dict(),
                }
            )
        self.model.train()
        bad = 0
        last_val = None
        t0 = time.perf_counter()
        seen = 0.0
        with progress_bar(self.d.is_main, self.total_steps, self.step) as bar:
            while self.step < self.total_steps:
                t_step = time.perf_counter()
                r = self.train_step()
                self.step += 1
                seen += r["tokens"]
                dt = time.perf_counter() - t_step
                lr = self.sched.get_last_lr()[0]
                bad = 0 if r["ok"] else self._bad_step(bad + 1)
                if bad:
                    continue
                tps = r["tokens"] / max(dt, 1e-9)
                if self.step % cfg.log_every == 0:
                    self.monitor.log(
                        {
                            "step": self.step,
                            "loss": r["loss"],
                            "lr": lr,
                            "grad_norm": r["grad_norm"],
                            "tokens_per_s": tps,
                            "tokens_seen": self.tokens_seen,
                            "epoch": self.position / self.per_epoch,
                        }
                    )
                bar.update(self.step, r["loss"], tps, lr)
                last_val = self._checkpoints(last_val)
                if self.on_step is not None:
                    self.on_step(self.step)
        self.monitor.close()
        wall = time.perf_counter() - t0
        return {
            "steps": self.step,
            "val": last_val,
            "best_val_loss": self.best,
            "tokens_per_s": seen / max(wall, 1e-9),
        }


def train(cfg: TrainConfig, on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run `cfg` to the end (the function behind `pianomuse train`). On a CPU, the process
    keeps the memory that a step frees for the next step (`allocator`)."""
    d = distributed.setup(cfg.device)
    if d.device.type == "cpu":
        keep_freed_memory()
    try:
        out = Trainer(cfg, d, on_step).run()
        # The ranks leave together. One that tore its group down while the other was still
        # saving the last checkpoint aborted under load ("terminate called without an active
        # exception", once in three loaded test runs): gloo's threads met a closed peer.
        distributed.barrier(d)
        return out
    finally:
        distributed.teardown(d)


class progress_bar:  # noqa: N801 - used as a context manager like `open`
    """A rich progress bar with loss, tokens/s and learning rate, on the main rank only."""

    def __init__(self, enabled: bool, total: int, start: int):
        self.enabled = enabled
        self.total, self.start = total, start

    def __enter__(self) -> progress_bar:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.p = Progress(
                TextColumn("train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(),
            )
            self.p.start()
            self.task = self.p.add_task("train", total=self.total, completed=self.start, info="")
        return self

    def update(self, step: int, loss: float, tps: float, lr: float) -> None:
        if self.enabled:
            info = f"loss {loss:.4f}  {tps:,.0f} tok/s  lr {lr:.2e}"
            self.p.update(self.task, completed=step, info=info)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.p.stop()
