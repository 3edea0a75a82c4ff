"""The chunk-parallel WKV-7 against the step-by-step scan (values, state, gradients)."""

import math

import pytest
import torch
import torch.nn.functional as F

from model_fixtures import one_thread
from pianomuse.model.wkv import resolve_backend, wkv7, wkv7_chunked, wkv7_reference, wkv7_step

MAX_LOG_DECAY = -math.exp(-0.5)  # the most extreme RWKV-7 log-decay, -0.6065


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with one_thread():
        yield


def rwkv7_inputs(bsz, seq, n_head, head, seed=0, extreme_decay=False):
    """Random inputs shaped like the model's: a = -kk, b = kk * alpha with kk unit per head."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen)

    shape = (bsz, seq, n_head, head)
    r, k, v = randn(*shape), randn(*shape), randn(*shape)
    if extreme_decay:
        w = torch.full(shape, MAX_LOG_DECAY * 0.99999)
    else:
        w = MAX_LOG_DECAY * torch.sigmoid(2 * randn(*shape))
    kk = F.normalize(randn(*shape), dim=-1)
    alpha = torch.sigmoid(randn(*shape))
    state = 0.5 * randn(bsz, n_head, head, head)
    return [r, w, k, v, -kk, kk * alpha], state


def rel_err(got, want):
    return ((got - want).abs().max() / want.abs().max().clamp_min(1e-30)).item()


def run_with_grads(fn, inputs, state, seed=1):
    """Outputs, final state and the gradients of every input for a random upstream gradient."""
    leaves = [x.clone().requires_grad_(True) for x in inputs]
    s0 = state.clone().requires_grad_(True)
    y, s = fn(*leaves, s0)
    gen = torch.Generator().manual_seed(seed)
    loss = (y * torch.randn(y.shape, generator=gen)).sum()
    loss = loss + (s * torch.randn(s.shape, generator=gen)).sum()
    loss.backward()
    return y.detach(), s.detach(), [x.grad for x in leaves] + [s0.grad]


@pytest.mark.parametrize("seq", [1, 15, 16, 17, 100])
def test_chunked_matches_reference_values_state_and_grads(seq):
    inputs, state = rwkv7_inputs(2, seq, 2, 32, seed=seq)
    y_ref, s_ref, g_ref = run_with_grads(wkv7_reference, inputs, state)
    y, s, g = run_with_grads(lambda *a: wkv7_chunked(*a, chunk_len=16), inputs, state)
    assert y.shape == y_ref.shape == (2, seq, 2, 32)
    assert rel_err(y, y_ref) < 1e-4
    assert rel_err(s, s_ref) < 1e-4
    for name, got, want in zip(["r", "w", "k", "v", "a", "b", "state"], g, g_ref, strict=True):
        assert got is not None and want is not None, name
        assert rel_err(got, want) < 1e-4, name


@pytest.mark.parametrize("chunk_len", [1, 8, 32, 64])
def test_chunk_lengths_agree(chunk_len):
    inputs, state = rwkv7_inputs(1, 70, 2, 16, seed=7)
    y_ref, s_ref = wkv7_reference(*inputs, state)
    y, s = wkv7_chunked(*inputs, state, chunk_len=chunk_len)
    assert rel_err(y, y_ref) < 1e-4
    assert rel_err(s, s_ref) < 1e-4


def test_padded_steps_leave_state_unchanged():
    inputs, state = rwkv7_inputs(2, 17, 2, 32, seed=3)
    _, s_real = wkv7_reference(*inputs, state)
    # Append 15 steps of log w = 0 and zero r/k/v/a/b, as the chunked path pads internally.
    padded = [torch.cat([x, torch.zeros(2, 15, 2, 32)], dim=1) for x in inputs]
    y_pad_ref, s_pad_ref = wkv7_reference(*padded, state)
    y_pad, s_pad = wkv7_chunked(*padded, state, chunk_len=16)
    assert torch.equal(s_pad_ref, s_real)
    assert rel_err(s_pad, s_real) < 1e-5
    assert y_pad_ref[:, 17:].abs().max() == 0
    assert y_pad[:, 17:].abs().max() == 0
    empty = [x[:, :0] for x in inputs]
    y_none, s_none = wkv7_chunked(*empty, state)
    assert y_none.shape == (2, 0, 2, 32) and torch.equal(s_none, state)


def test_extreme_decay_chunk_64_stays_finite_and_correct():
    inputs, state = rwkv7_inputs(1, 192, 2, 64, seed=5, extreme_decay=True)
    y_ref, s_ref, g_ref = run_with_grads(wkv7_reference, inputs, state)
    y, s, g = run_with_grads(lambda *a: wkv7_chunked(*a, chunk_len=64), inputs, state)
    assert torch.isfinite(y).all() and torch.isfinite(s).all()
    assert all(torch.isfinite(x).all() for x in g)
    assert rel_err(y, y_ref) < 1e-4
    assert rel_err(s, s_ref) < 1e-4
    for got, want in zip(g, g_ref, strict=True):
        assert rel_err(got, want) < 1e-4


def test_zero_initial_state_and_dtypes():
    inputs, _ = rwkv7_inputs(1, 20, 1, 16, seed=9)
    y_ref, s_ref = wkv7_reference(*inputs)
    y, s = wkv7_chunked(*[x.bfloat16() for x in inputs])
    assert y.dtype == torch.bfloat16 and s.dtype == torch.float32
    assert rel_err(y.float(), y_ref) < 3e-2  # bf16 rounding of the inputs only
    assert rel_err(s, s_ref) < 3e-2
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y_ac, s_ac = wkv7_chunked(*inputs)
    assert y_ac.dtype == torch.float32 and rel_err(y_ac, y_ref) < 1e-5  # autocast is off inside
    assert s_ac.dtype == torch.float32


def test_dispatcher():
    inputs, state = rwkv7_inputs(1, 5, 1, 8, seed=11)
    assert resolve_backend("auto", torch.device("cpu")) == "chunked"
    y_ref, _ = wkv7_reference(*inputs, state)
    y, _ = wkv7(*inputs, state, backend="reference")
    assert torch.equal(y, y_ref)
    y, _ = wkv7(*inputs, state, backend="chunked", chunk_len=4)
    assert rel_err(y, y_ref) < 1e-5
    with pytest.raises(RuntimeError, match="CUDA"):
        wkv7(*inputs, state, backend="fla")


@pytest.mark.parametrize("inplace", [False, True])
def test_step_matches_reference_over_many_tokens(inplace):
    # The decoding path against its twin: the plain scan, token after token; gradients too
    # (the copy path) since the step is differentiable when it does not write in place.
    inputs, state = rwkv7_inputs(3, 20, 2, 32, seed=5)
    y_ref, s_ref = wkv7_reference(*inputs, state)
    s = state.clone()
    ys = []
    for t in range(20):
        y, s = wkv7_step(*(x[:, t] for x in inputs), s, inplace=inplace)
        ys.append(y)
    assert rel_err(torch.stack(ys, dim=1), y_ref) < 1e-5
    assert rel_err(s, s_ref) < 1e-5
    if not inplace:

        def one_step(r, w, k, v, a, b, s0):  # [B,1,H,N] in and out, like the scan
            y, s1 = wkv7_step(*(x[:, 0] for x in (r, w, k, v, a, b)), s0)
            return y[:, None], s1

        one = [x[:, :1] for x in inputs]
        _, _, g_ref = run_with_grads(wkv7_reference, one, state)
        _, _, g = run_with_grads(one_step, one, state)
        for got, want in zip(g, g_ref, strict=True):
            assert rel_err(got, want) < 1e-5


def test_the_exported_doubling_solve_equals_the_triangular_solve():
    """The chunked scan's solve in the form ONNX can hold (products of powers of the strictly
    lower triangular matrix) against the triangular solve, forward and gradients, at chunk
    lengths that are and are not powers of two."""
    from pianomuse.model.wkv import solve_unit_lower

    g = torch.Generator().manual_seed(0)
    for length in (16, 12, 64):
        a = (torch.randn(3, length, length, generator=g, dtype=torch.float64) * 0.3).tril(-1)
        rhs = torch.randn(3, length, 8, generator=g, dtype=torch.float64)
        outs = []
        for doubling in (False, True):
            a_, rhs_ = a.clone().requires_grad_(), rhs.clone().requires_grad_()
            x = solve_unit_lower(a_, rhs_, doubling=doubling)
            x.pow(2).sum().backward()
            outs.append((x.detach(), a_.grad.tril(-1), rhs_.grad))
        for want, got in zip(*outs, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
