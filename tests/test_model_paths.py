"""The three execution paths of RWKV7 agree, the state behaves, every weight is trainable."""

import io

import pytest
import torch
import torch.nn.functional as F

from model_fixtures import (
    assert_traced_step_follows,
    one_thread,
    random_model,
    rel_err,
    tiny_config,
)
from pianomuse.model import (
    RWKV7,
    RWKV7Config,
    RWKVState,
    load_checkpoint,
    load_model,
    save_model,
    save_official,
)

TOL = 1e-4


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def model():
    return random_model(tiny_config()).eval()


@pytest.fixture(scope="module")
def idx():
    return torch.randint(0, 40, (2, 37), generator=torch.Generator().manual_seed(0))


def step_through(model, idx, state):
    logits = []
    for t in range(idx.shape[1]):
        out, state = model.step(idx[:, t], state)
        logits.append(out)
    return torch.stack(logits, dim=1), state


def assert_states_close(got: RWKVState, want: RWKVState, tol=TOL):
    assert all(s.dtype == torch.float32 for s in got.wkv)
    got, want = got.state_dict(), want.state_dict()
    for name in ("att_shift", "wkv", "ffn_shift"):
        assert rel_err(got[name], want[name]) <= tol, name


@torch.no_grad()
def test_forward_prefill_split_and_step_agree(model, idx):
    logits = model(idx)
    assert logits.shape == (2, 37, 40)
    pre, state = model.prefill(idx)
    assert rel_err(pre, logits) < TOL

    first, mid = model.prefill(idx[:, :20])
    rest, state_split = model.prefill(idx[:, 20:], mid)
    assert rel_err(torch.cat([first, rest], dim=1), logits) < TOL
    assert_states_close(state_split, state)

    stepped, state_step = step_through(model, idx, RWKVState.zeros(model.config, 2))
    assert rel_err(stepped, logits) < TOL
    assert_states_close(state_step, state)

    # prefill then step: the usual generation pattern
    _, mid = model.prefill(idx[:, :30])
    tail, state_mixed = step_through(model, idx[:, 30:], mid)
    assert rel_err(tail, logits[:, 30:]) < TOL
    assert_states_close(state_mixed, state)


@torch.no_grad()
def test_inplace_step_matches_and_only_touches_its_state(model, idx):
    _, mid = model.prefill(idx[:, :30])
    before = mid.clone()
    fresh, fresh_state = model.step(idx[:, 30], mid)
    assert_states_close(mid, before, tol=0)  # the default leaves its input alone
    inplace, same = model.step(idx[:, 30], mid, inplace=True)
    assert same is mid
    assert torch.equal(inplace, fresh)
    for name in ("att_shift", "wkv", "ffn_shift"):
        assert torch.equal(mid.state_dict()[name], fresh_state.state_dict()[name])
        assert not torch.equal(mid.state_dict()[name], before.state_dict()[name])


def test_step_gradients_match_forward(idx):
    model = random_model(tiny_config(), seed=2)
    model(idx[:, :6]).sum().backward()
    want = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    stepped, _ = step_through(model, idx[:, :6], RWKVState.zeros(model.config, 2))
    stepped.sum().backward()
    got = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert got.keys() == want.keys() and len(got) > 40
    for name, grad in got.items():
        assert rel_err(grad, want[name]) < 1e-4, name


@torch.no_grad()
def test_reference_backend_is_the_slow_twin(model, idx):
    config = RWKV7Config(**{**model.config.to_dict(), "wkv_backend": "reference"})
    slow = RWKV7(config, init_weights=False).eval()
    slow.load_state_dict(model.state_dict())
    assert rel_err(model(idx), slow(idx)) < TOL
    chunk64 = RWKV7(RWKV7Config(**{**model.config.to_dict(), "chunk_len": 64}), False).eval()
    chunk64.load_state_dict(model.state_dict())
    assert rel_err(chunk64(idx), slow(idx)) < TOL


@torch.no_grad()
def test_state_clone_expand_select_and_save(model, idx):
    _, state = model.prefill(idx[:1, :25])
    copy = state.clone()
    model.step(idx[:1, 25], copy)
    copy.wkv[1].add_(1.0)
    assert not torch.equal(copy.wkv[1], state.wkv[1])

    many = state.expand(3)
    assert many.batch_size == 3 and many.state_dict()["wkv"].shape == (2, 3, 2, 32, 32)
    one, _ = model.step(idx[:1, 25], state)
    three, _ = model.step(idx[:1, 25].repeat(3), many)
    assert rel_err(three, one.expand(3, -1)) < 1e-5  # batched vs single matmul rounding
    assert torch.equal(many.select([2]).state_dict()["wkv"], state.state_dict()["wkv"])

    buf = io.BytesIO()
    torch.save(state.state_dict(), buf)
    buf.seek(0)
    loaded = RWKVState.from_state_dict(torch.load(buf, weights_only=True)).to("cpu")
    again, _ = model.step(idx[:1, 25], loaded)
    assert torch.equal(again, one)
    with pytest.raises(ValueError):
        RWKVState.from_state_dict({"att_shift": state.att_shift, "wkv": state.wkv})


def official_names(config: RWKV7Config) -> dict[str, tuple]:
    c, h, n, v = config.n_embd, config.n_head, config.head_size, config.vocab_size
    f = config.dim_ffn
    ranks = dict(w=config.decay_lora, a=config.aaa_lora, v=config.mv_lora, g=config.gate_lora)
    names = {"emb.weight": (v, c), "head.weight": (v, c), "ln_out.weight": (c,)}
    names["ln_out.bias"] = (c,)
    for i in range(config.n_layer):
        p = f"blocks.{i}."
        if i == 0:
            names.update({p + "ln0.weight": (c,), p + "ln0.bias": (c,)})
        for ln in ("ln1", "ln2", "att.ln_x"):
            names.update({p + ln + ".weight": (c,), p + ln + ".bias": (c,)})
        vectors = ["x_r", "x_w", "x_k", "x_v", "x_a", "x_g", "w0", "a0", "k_k", "k_a"]
        for vec in vectors + (["v0"] if i > 0 else []):  # no value residual in layer 0
            names[p + "att." + vec] = (1, 1, c)
        for letter, rank in ranks.items():
            if letter != "v" or i > 0:
                names[p + f"att.{letter}1"] = (c, rank)
                names[p + f"att.{letter}2"] = (rank, c)
        names[p + "att.r_k"] = (h, n)
        for lin in ("receptance", "key", "value", "output"):
            names[p + f"att.{lin}.weight"] = (c, c)
        names.update({p + "ffn.x_k": (1, 1, c), p + "ffn.key.weight": (f, c)})
        names[p + "ffn.value.weight"] = (c, f)
        if config.deep_embed:
            names[p + "ffn.enn.weight"] = (v, c)
    return names


@pytest.mark.parametrize("deep_embed", [False, True])
def test_every_weight_is_an_official_parameter(deep_embed):
    config = tiny_config(deep_embed=deep_embed)
    model = RWKV7(config)
    params = dict(model.named_parameters())
    expected = official_names(config)
    assert set(params) == set(expected)
    assert set(model.state_dict()) == set(expected)  # no hidden buffers
    for name, p in params.items():
        assert isinstance(p, torch.nn.Parameter) and p.requires_grad
        assert tuple(p.shape) == expected[name], name
    assert sum(p.numel() for p in params.values()) == config.n_params()
    assert model.blocks[1].att.ln_x.eps == 64e-5


def test_official_init_recipe():
    config = RWKV7Config(vocab_size=300, n_layer=4, n_embd=128, head_size=64)
    model = RWKV7(config)

    def ranks(cfg):
        return cfg.decay_lora, cfg.aaa_lora, cfg.mv_lora, cfg.gate_lora

    assert ranks(config) == (32, 32, 32, 32)
    assert ranks(RWKV7Config(vocab_size=10, n_layer=1, n_embd=1024)) == (64, 64, 32, 160)
    assert ranks(RWKV7Config(vocab_size=10, n_layer=1, n_embd=4096)) == (128, 128, 96, 480)
    att0, att3 = model.blocks[0].att, model.blocks[3].att
    assert att0.x_r[0, 0, 0] == 1.0  # x_r = 1 - (i/C)^(0.2 * (1 - layer/n_layer))
    assert att0.x_r[0, 0, 1].item() == pytest.approx(1 - (1 / 128) ** 0.2)
    assert att3.x_r[0, 0, 1].item() == pytest.approx(1 - (1 / 128) ** (0.2 * 0.25))
    assert torch.all(att3.x_r <= att0.x_r)  # deeper layers take less of the previous token
    assert not hasattr(att0, "v1") and att3.v1.abs().max() == 0
    for att in (att0, att3):
        for name in ("w1", "a1", "g1"):
            assert getattr(att, name).abs().max() == 0
        w2 = att.w2.detach()
        assert torch.allclose(w2 @ w2.T, 0.01 * torch.eye(w2.shape[0]), atol=1e-5)
        assert att.output.weight.abs().max() == 0
        assert torch.allclose(att.k_a, torch.full_like(att.k_a, 1.02))
        assert torch.allclose(att.r_k, torch.full_like(att.r_k, -0.04))
    # w0 ramps from ~-6 (fast decay) to ~+0.5 (slow) across channels, zigzag inside heads.
    assert att0.w0[0, 0, 0] < -7 and att0.w0[0, 0, -1] > 2
    assert model.blocks[0].ffn.value.weight.abs().max() == 0
    assert model.emb.weight.abs().max() <= 1e-4
    head = model.head.weight.detach()
    gain = 0.5 * (300 / 128) ** 0.5
    assert torch.allclose(head.T @ head, gain**2 * torch.eye(128), atol=1e-4)
    assert torch.allclose(model.blocks[1].att.ln_x.weight, torch.full((128,), 0.5**0.7))


def test_training_step_reaches_every_weight(idx):
    model = random_model(tiny_config())
    logits = model(idx[:, :-1])
    loss = F.cross_entropy(logits.reshape(-1, 40), idx[:, 1:].reshape(-1))
    loss.backward()
    for name, p in model.named_parameters():  # no unused parameter (DDP requires this)
        assert p.grad is not None and p.grad.abs().max() > 0, name


def test_official_init_learns(idx):
    torch.manual_seed(0)
    model = RWKV7(tiny_config())
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    x, y = idx[:, :-1], idx[:, 1:]
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(model(x).reshape(-1, 40), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.5


def test_bf16_autocast_forward_backward_close_to_fp32(model, idx):
    train_model = random_model(tiny_config())
    ref = train_model(idx)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = train_model(idx)
        _, state = train_model.prefill(idx)
    assert all(s.dtype == torch.float32 for s in state.wkv)
    assert rel_err(logits.float(), ref.detach()) < 5e-2
    logits.float().logsumexp(-1).mean().backward()
    grads = [p.grad for p in train_model.parameters() if p.grad is not None]
    assert len(grads) > 0 and all(torch.isfinite(g).all() for g in grads)


def test_deep_embed_trains_saves_and_loads(tmp_path, idx):
    config = tiny_config(deep_embed=True)
    model = random_model(config)
    enn = model.blocks[1].ffn.enn.weight
    before = enn.detach().clone()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    for _ in range(2):
        loss = F.cross_entropy(model(idx[:, :-1]).reshape(-1, 40), idx[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    changed = (enn.detach() != before).any(dim=1)
    assert changed[idx[:, :-1].unique()].all() and not changed.all()  # only seen tokens move
    model.eval()
    with torch.no_grad():
        want = model(idx)
        stepped, _ = step_through(model, idx, RWKVState.zeros(config, 2))
    assert rel_err(stepped, want) < TOL

    save_model(model, tmp_path / "m.safetensors", {"vocab": 40}, "abc123")
    ckpt = load_checkpoint(tmp_path / "m.safetensors")
    assert ckpt.model.config == config
    assert ckpt.tokenizer_config == {"vocab": 40} and ckpt.tokenizer_hash == "abc123"
    save_official(model, tmp_path / "m.pth")
    official = load_model(tmp_path / "m.pth")
    assert official.config.deep_embed
    with torch.no_grad():
        assert torch.equal(ckpt.model.eval()(idx), want)
        assert torch.equal(official.eval()(idx), want)


def test_config_validation_and_round_trip():
    config = tiny_config(ffn_mult=3.5, chunk_len=32)
    assert RWKV7Config.from_dict(config.to_dict()) == config
    assert config.dim_ffn == 224
    for bad in (dict(n_embd=60), dict(head_size=0), dict(chunk_len=65), dict(wkv_backend="x")):
        with pytest.raises(ValueError):
            tiny_config(**bad)
    with pytest.raises(ValueError, match="unknown"):
        RWKV7Config.from_dict({**config.to_dict(), "typo": 1})


@pytest.mark.parametrize("deep_embed", [False, True])
@torch.no_grad()
def test_padded_prefill_is_each_rows_own_prefill(deep_embed):
    """A right-padded batch (`lengths`) leaves every row in the state of a prefill of its
    own tokens, from any state, with that prefill's last logits: the padding never reaches
    the state. `last_only` gives the last row of the full logits; bad lengths are refused."""
    model = random_model(tiny_config(deep_embed=deep_embed)).eval()
    g = torch.Generator().manual_seed(5)
    _, start = model.prefill(torch.randint(0, 40, (3, 9), generator=g))
    idx = torch.randint(0, 40, (3, 45), generator=g)
    lengths = torch.tensor([45, 33, 1])  # all of it, across a chunk boundary, one token
    got, state = model.prefill(idx, start, lengths=lengths, last_only=True)
    assert got.shape == (3, 40)
    for b, n in enumerate(lengths.tolist()):
        want, want_st = model.prefill(idx[b : b + 1, :n], start.select([b]))
        assert rel_err(got[b], want[0, -1]) < 1e-5
        assert_states_close(state.select([b]), want_st, tol=1e-5)
    full, full_st = model.prefill(idx, start)
    last, last_st = model.prefill(idx, start, last_only=True)
    assert rel_err(last, full[:, -1]) < 1e-5
    assert_states_close(last_st, full_st, tol=0.0)
    for bad in ([45, 0, 3], [46, 1, 1], [4, 4]):
        with pytest.raises(ValueError, match="lengths"):
            model.prefill(idx, lengths=torch.tensor(bad))


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_traced_bar_prefill_is_the_eager_prefills_twin(precision):
    """`fast_prefill` (graphs of padded lengths) gives the eager prefill's last logits and
    state for lengths at, inside and past a bucket, past the traced ones (the eager twin
    runs), from a state it leaves as it was and from none; it takes the batch it was made
    for only."""
    from pianomuse.model.quant import inference_model
    from pianomuse.model.traced import PREFILL_BUCKET, PREFILL_TRACED_MAX, fast_prefill

    model = random_model(tiny_config()).eval()
    runner = inference_model(model, precision)
    g = torch.Generator().manual_seed(6)
    prefill = fast_prefill(model, precision)
    graphs = [v[1] for k, v in model.__dict__["_inference_cache"].items() if "prefill" in k]
    assert len(graphs) == PREFILL_TRACED_MAX // PREFILL_BUCKET
    assert {f.__name__ for f in graphs} == {"prefill"}  # traced, not the eager fallback
    with torch.inference_mode():
        _, start = model.prefill(torch.randint(0, 40, (1, 12), generator=g))
        kept = start.clone()
        for n in (1, PREFILL_BUCKET, PREFILL_BUCKET + 1, 45, PREFILL_TRACED_MAX + 3):
            idx = torch.randint(0, 40, (1, n), generator=g)
            for st in (start, None):
                got, got_st = prefill(idx, st)
                want, want_st = runner.prefill(idx, st)
                assert got.shape == (1, 40)
                assert rel_err(got, want[:, -1]) < 1e-5
                assert_states_close(got_st, want_st, tol=1e-5)
        assert_states_close(start, kept, tol=0.0)
        with pytest.raises(ValueError, match="rows"):
            prefill(torch.zeros(2, 5, dtype=torch.long), None)


@pytest.mark.parametrize("deep_embed", [False, True])
def test_traced_step_is_the_eager_steps_twin(deep_embed):
    """The TorchScript graph of the one-token step (recorded at batch 1) gives the eager
    step's logits and state, token after token, at batch 1 and at batch 8; like the eager
    step with `inplace=True` it overwrites the state it is given and returns it, and
    recording it leaves the state it was recorded on as it was."""
    from pianomuse.model.traced import trace_step

    model = random_model(tiny_config(deep_embed=deep_embed)).eval()
    g = torch.Generator().manual_seed(3)
    with torch.inference_mode():
        _, state = model.prefill(torch.randint(0, 40, (1, 20), generator=g))
        recorded_on = state.clone()
        traced = trace_step(model, state)
        for a, b in zip(state.wkv, recorded_on.wkv, strict=True):
            assert torch.equal(a, b)
        assert_traced_step_follows(model, traced, state, g, batches=(1, 8), steps=6, tol=1e-6)


def test_decoding_falls_back_to_the_eager_step(model, monkeypatch):
    """If a model cannot be traced, decoding takes the eager step (same tokens)."""
    import pianomuse.model.traced as traced
    from pianomuse.generate.decode import continue_tokens
    from pianomuse.generate.sampling import Sampling
    from pianomuse.model.engine import TorchEngine

    ctx = torch.randint(0, 40, (30,), generator=torch.Generator().manual_seed(1)).numpy()

    def run():
        model.__dict__.pop("_inference_cache", None)
        (c,), _ = continue_tokens(
            TorchEngine(model),
            ctx,
            candidates=1,
            sampling=Sampling(seed=4),
            bar_id=1,
            max_new_tokens=40,
        )
        return c.ids.tolist()

    fast = run()

    def refuse(*args):
        raise RuntimeError("cannot trace")

    monkeypatch.setattr(traced, "trace_step", refuse)
    assert run() == fast and len(fast) == 40
    steps = model.__dict__["_inference_cache"]
    assert steps["step_int8"][1].__name__ == "eager"  # the eager twin ran


def test_fused_relu_square_is_its_plain_twin():
    """The FFN's relu^2 with its one-line backward gives autograd's values and gradients
    (zeros and negatives included), in fp32 and under bf16 autocast's dtype."""
    from pianomuse.model.rwkv7 import relu_square, relu_square_reference

    g = torch.Generator().manual_seed(5)
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(3, 7, 16, generator=g).to(dtype)
        x[0, 0, :4] = 0.0
        grad = torch.randn(3, 7, 16, generator=g).to(dtype)
        a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        ya, yb = relu_square(a), relu_square_reference(b)
        ya.backward(grad)
        yb.backward(grad)
        assert ya.grad_fn is not None and type(ya.grad_fn).__name__ == "_ReluSquareBackward"
        assert torch.equal(ya, yb) and ya.dtype == dtype
        assert torch.allclose(a.grad, b.grad, rtol=1e-2 if dtype == torch.bfloat16 else 1e-6)
        assert (a.grad[x <= 0] == 0).all()
