"""Watching a run: metrics.jsonl, a loss.png rewritten at each evaluation, TensorBoard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pianomuse.atomic import atomic_write


class Monitor:
    """Appends metrics to `metrics.jsonl` and redraws `loss.png`; a no-op off the main rank."""

    def __init__(self, out: Path, enabled: bool, tensorboard: bool = False):
        self.out = out
        self.enabled = enabled
        self.path = out / "metrics.jsonl"
        self.tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                from pianomuse.errors import UserError

                raise UserError(
                    "--tensorboard needs the extra: uv sync --extra tensorboard"
                ) from None
            self.tb = SummaryWriter(str(out / "tensorboard"))

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, int | float):
                    self.tb.add_scalar(k, v, record["step"])

    def truncate_after(self, step: int) -> None:
        """On resume, drop lines of steps after the checkpoint (they will be run again)."""
        if not self.enabled or not self.path.exists():
            return
        lines = [ln for ln in self.path.read_text().splitlines() if ln.strip()]
        keep = [ln for ln in lines if json.loads(ln).get("step", 0) <= step]
        self.path.write_text("".join(ln + "\n" for ln in keep))

    def plot(self) -> None:
        if self.enabled:
            plot_losses(self.path, self.out / "loss.png")

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in Path(path).read_text().splitlines() if ln.strip()]


def plot_losses(metrics: Path, png: Path) -> None:
    """Training and validation loss (bits per token) against steps."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics)
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ln2 = 0.6931471805599453
    if train:
        ax.plot(
            *zip(*[(s, v / ln2) for s, v in train], strict=True), label="train", lw=1, alpha=0.8
        )
    if val:
        ax.plot(*zip(*[(s, v / ln2) for s, v in val], strict=True), "o-", label="validation", lw=2)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("bits per token")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        atomic_write(png, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)
