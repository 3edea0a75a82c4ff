"""A GPT-2 baseline beside the RWKV-7 model: same data, steps, batch and schedule.

    uv run --extra baseline python benchmarks/baseline_gpt2.py train --data-path PREPARED \\
        --out runs/gpt2 --like runs/default
    uv run --extra baseline python benchmarks/baseline_gpt2.py compare --data-path PREPARED \\
        --gpt2 runs/gpt2 --rwkv runs/default

The bundled model was trained in two stages; its runs' logs are in models/training/, so its
baseline is two runs, the second continuing the first (`--init`):

    B="uv run --extra baseline python benchmarks/baseline_gpt2.py"
    $B train --data-path PREPARED --out runs/gpt2-1 --like models/training/stage1_metrics.jsonl
    $B train --data-path PREPARED --out runs/gpt2-2 --like models/training/stage2_metrics.jsonl \\
        --init runs/gpt2-1
    $B compare --data-path PREPARED --gpt2 runs/gpt2-2 \\
        --rwkv models/training/stage2_metrics.jsonl \\
        --rwkv-model models/pianomuse-small-pop909.safetensors

`train` reads the RWKV run's configuration (`--like`: its metrics.jsonl start record) and
trains a Hugging Face GPT-2 with about the same number of parameters (position embeddings
aside: the baseline gets 4160 positions so it can decode at a 4096-token context) on the same
sample stream (same seed, windows, FIM share), with the same optimizer grouping, warm-up and
cosine schedule. `compare` prints one table: validation bits per token on the same windows,
training tokens/s (from both runs' logs, same machine), and decoding tokens/s after 512 and
4096 tokens of context (GPT-2 with its KV cache, RWKV-7 with its O(1) state).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from pianomuse.data.samples import SampleStream, collate
from pianomuse.data.shards import TokenShards
from pianomuse.model import load_model
from pianomuse.train.evaluate import evaluate, masked_loss_sum
from pianomuse.train.monitor import read_metrics
from pianomuse.train.schedule import lr_factor, make_optimizer

POSITIONS = 4160


def gpt2(vocab: int, target_params: int, n_layer: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    best = None
    for c in range(128, 513, 8):
        cfg = GPT2Config(
            vocab_size=vocab,
            n_positions=POSITIONS,
            n_embd=c,
            n_layer=n_layer,
            n_head=4,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            tie_word_embeddings=False,
            bos_token_id=None,
            eos_token_id=None,
        )
        n = 12 * c * c * n_layer + 2 * vocab * c  # blocks + embedding + head, positions aside
        if best is None or abs(n - target_params) < abs(best[1] - target_params):
            best = (cfg, n)
    return GPT2LMHeadModel(best[0])


class Wrapped(torch.nn.Module):
    """GPT-2 behind the project's `model(idx) -> logits` call."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, idx):
        return self.m(input_ids=idx).logits


def start_record(run: Path) -> dict:
    """The start record of a run: its folder's metrics.jsonl, or a metrics file itself."""
    return next(r for r in read_metrics(metrics_of(run)) if r.get("event") == "start")


def metrics_of(run: Path) -> Path:
    return run if run.is_file() else run / "metrics.jsonl"


def train(args) -> None:
    rec = start_record(args.like)
    cfg = rec["train_config"]
    shards = TokenShards(args.data_path, "train")
    torch.manual_seed(cfg["seed"])
    model = Wrapped(
        gpt2(shards.tokenizer.vocab_size, rec["params"], cfg.get("model", cfg)["n_layer"])
    )
    if args.init is not None:  # a second stage, like `pianomuse train --pretrained-model`
        model.m.load_state_dict(torch.load(args.init / "gpt2.pt", weights_only=True))
    n_params = sum(p.numel() for n, p in model.named_parameters() if "wpe" not in n)
    stream = SampleStream(
        shards,
        cfg["max_seq_len"],
        cfg["objective"],
        cfg["max_transpose"],
        cfg["seed"],
        cfg["fim_rate"],
    )
    opt = make_optimizer(
        model, cfg["lr"], cfg["weight_decay"], (cfg["beta1"], cfg["beta2"]), cfg["adam_eps"]
    )
    total = args.max_steps or rec["total_steps"]
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, cfg["warmup_steps"], total, cfg["min_lr_ratio"])
    )
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "metrics.jsonl", "w") as log:
        log.write(
            json.dumps({"step": 0, "event": "start", "params": n_params, "total_steps": total})
            + "\n"
        )
        B = cfg["batch_size"]
        pos = 0
        for step in range(1, total + 1):
            t0 = time.perf_counter()
            batch = collate([stream.sample_at(pos + b) for b in range(B)], shards.tokenizer.pad_id)
            pos += B
            tokens = batch["mask"].sum()
            loss = masked_loss_sum(model(batch["idx"]), batch["targets"], batch["mask"]) / tokens
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
            opt.step()
            opt.zero_grad(set_to_none=True)
            sched.step()
            dt = time.perf_counter() - t0
            log.write(
                json.dumps({"step": step, "loss": loss.item(), "tokens_per_s": float(tokens) / dt})
                + "\n"
            )
            log.flush()
    torch.save(model.m.state_dict(), args.out / "gpt2.pt")
    (args.out / "config.json").write_text(model.m.config.to_json_string())


@torch.inference_mode()
def decode_speed(step_fn, prefill_fn, context: int, steps: int = 32) -> float:
    state = prefill_fn(context)
    tok = torch.zeros(1, dtype=torch.long)
    step_fn(tok, state)
    t0 = time.perf_counter()
    for _ in range(steps):
        state = step_fn(tok, state)
    return steps / (time.perf_counter() - t0)


def compare(args) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    val = SampleStream(
        TokenShards(args.data_path, "val"), start_record(args.rwkv)["train_config"]["max_seq_len"]
    )
    m = GPT2LMHeadModel(GPT2Config.from_json_file(str(args.gpt2 / "config.json")))
    m.load_state_dict(torch.load(args.gpt2 / "gpt2.pt", weights_only=True))
    g = Wrapped(m).eval()
    r = load_model(args.rwkv_model or args.rwkv / "best.safetensors").eval()
    cpu = torch.device("cpu")
    rows = {}
    for name, model, run in (("RWKV-7", r, args.rwkv), ("GPT-2", g, args.gpt2)):
        ev = evaluate(model, val, 8, args.eval_batches, cpu)
        logs = [x["tokens_per_s"] for x in read_metrics(metrics_of(run)) if "tokens_per_s" in x]
        params = start_record(run)["params"]
        rows[name] = [params, ev["bpt"], sorted(logs)[len(logs) // 2]]

    def rwkv_prefill(n):
        return r.prefill(torch.zeros(1, n, dtype=torch.long))[1]

    def rwkv_step(tok, state):
        return r.step(tok, state, inplace=True)[1]

    def gpt_prefill(n):
        return m(input_ids=torch.zeros(1, n, dtype=torch.long), use_cache=True).past_key_values

    def gpt_step(tok, past):
        return m(input_ids=tok[:, None], past_key_values=past, use_cache=True).past_key_values

    for ctx in (512, 4096):
        rows["RWKV-7"].append(decode_speed(rwkv_step, rwkv_prefill, ctx))
        rows["GPT-2"].append(decode_speed(gpt_step, gpt_prefill, ctx))
    head = (
        "model",
        "params",
        "val bits/token",
        "train tok/s",
        "decode tok/s @512",
        "decode tok/s @4096",
    )
    print(" | ".join(head))
    for name, v in rows.items():
        print(f"{name} | {v[0] / 1e6:.2f}M | {v[1]:.3f} | {v[2]:,.0f} | {v[3]:,.0f} | {v[4]:,.0f}")
    rw, gp = rows["RWKV-7"], rows["GPT-2"]
    ratios = [rw[i] / gp[i] for i in range(1, 5)]
    print("ratio RWKV/GPT-2 | | " + " | ".join(f"{x:.3f}" for x in ratios))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--data-path", type=Path, required=True)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--like", type=Path, required=True, help="RWKV run folder or metrics.jsonl")
    t.add_argument("--init", type=Path, default=None, help="GPT-2 run to continue from")
    t.add_argument("--max-steps", type=int, default=None, help="fewer steps (smoke runs)")
    c = sub.add_parser("compare")
    c.add_argument("--data-path", type=Path, required=True)
    c.add_argument("--gpt2", type=Path, required=True)
    c.add_argument("--rwkv", type=Path, required=True, help="RWKV run folder or metrics.jsonl")
    c.add_argument("--rwkv-model", type=Path, default=None, help="default: RUN/best.safetensors")
    c.add_argument("--eval-batches", type=int, default=8)
    args = ap.parse_args()
    train(args) if args.cmd == "train" else compare(args)


if __name__ == "__main__":
    main()
