"""The WKV-7 recurrence of RWKV-7, three ways.

Per head, with state S (N x N, rows = value dim, cols = key dim, BlinkDL's layout):

    S_t = S_{t-1} (diag(w_t) + a_t b_t^T) + v_t k_t^T,    y_t = S_t r_t

* `wkv7_reference`: the plain step-by-step scan, the slow twin the others are tested against.
* `wkv7_chunked`: chunk-parallel pure PyTorch (WY/UT form), differentiated by autograd.
* `wkv7_fla`: flash-linear-attention's Triton kernel, imported lazily, CUDA only.
* `wkv7_step`: one token per sequence, the decoding path (its twin is the reference scan with
  T = 1).

All take inputs laid out [B, T, H, N] and `w` as the LOG-decay (log w_t, in (-0.61, 0) for
RWKV-7). The state is [B, H, N, N] and always kept in fp32 (fp64 if the inputs are fp64);
outputs are cast back to the input dtype.

Letters: B batch, T time, H heads, N head size, L chunk length, NC number of chunks.
"""

from __future__ import annotations

import importlib.util
import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp32 for half/bf16/fp32 inputs (the decay products underflow in bf16), fp64 kept."""
    return torch.promote_types(dtype, torch.float32)


def _no_autocast(device: torch.device) -> torch.autocast:
    """Autocast would silently run the matmuls below in bf16; the state must stay fp32."""
    return torch.autocast(device_type=device.type, enabled=False)


def wkv7_reference(
    r: Tensor, w: Tensor, k: Tensor, v: Tensor, a: Tensor, b: Tensor, state: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Step-by-step WKV-7 scan. Inputs [B, T, H, N], `w` = log-decay; state [B, H, N, N].

    Returns (y [B, T, H, N] in r's dtype, final state [B, H, N, N] in fp32, fp64 for fp64)."""
    in_dtype = r.dtype
    bsz, seq, n_head, head = r.shape
    dt = _compute_dtype(in_dtype)
    with _no_autocast(r.device):
        r, w, k, v, a, b = (x.to(dt) for x in (r, w, k, v, a, b))
        s = r.new_zeros(bsz, n_head, head, head) if state is None else state.to(dt)
        decay = torch.exp(w)
        ys = []
        for t in range(seq):
            sa = s @ a[:, t, :, :, None]  # [B,H,N,1] = S_{t-1} a_t
            s = (
                s * decay[:, t, :, None, :]  # scale key columns
                + sa @ b[:, t, :, None, :]  # (S a) b^T
                + v[:, t, :, :, None] @ k[:, t, :, None, :]  # v k^T
            )
            ys.append((s @ r[:, t, :, :, None]).squeeze(-1))  # [B,H,N]
        y = torch.stack(ys, dim=1) if ys else r.new_zeros(bsz, 0, n_head, head)  # [B,T,H,N]
    return y.to(in_dtype), s


def _to_chunks(x: Tensor, n_chunk: int, length: int, dtype: torch.dtype) -> Tensor:
    """[B, T, H, N] -> [NC, B, H, L, N], zero-padded at the end, in one copy per input.

    Chunk-major and contiguous, so every op is batched over (NC, B, H) on dense memory and the
    loop over chunks takes chunk c as a free view. A zero-padded step (log w = 0 means decay 1,
    and zero r, k, v, a, b) leaves the state unchanged."""
    bsz, seq, n_head, head = (int(d) for d in x.shape)
    if torch.onnx.is_in_onnx_export():  # the exporter drops copies into views: pad, reshape
        x = F.pad(x, (0, 0, 0, 0, 0, n_chunk * length - seq))
        x = x.reshape(bsz, n_chunk, length, n_head, head)  # [B,NC,L,H,N]
        return x.permute(1, 0, 3, 2, 4).to(dtype).contiguous()
    full, rest = divmod(seq, length)
    make = x.new_empty if seq == n_chunk * length else x.new_zeros
    out = make((n_chunk, bsz, n_head, length, head), dtype=dtype)
    dst = out.permute(1, 0, 3, 2, 4)  # [B,NC,L,H,N] view of the buffer
    if full:
        dst[:, :full].copy_(x[:, : full * length].reshape(bsz, full, length, n_head, head))
    if rest:
        dst[:, full, :rest].copy_(x[:, full * length :])
    return out


def solve_unit_lower(a: Tensor, rhs: Tensor, doubling: bool = False) -> Tensor:
    """X with (I - a) X = rhs, for `a` [.., L, L] strictly lower triangular.

    ONNX has no triangular solve, so the exported graph uses the doubling form: `a` is
    nilpotent (a^L = 0), hence (I - a)^-1 = I + a + .. + a^(L-1) = (I + a)(I + a^2)(I + a^4)..,
    log2(L) rounds of two small matmuls. The solve is its twin (tests compare them)."""
    if not doubling:
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        return torch.linalg.solve_triangular(eye - a, rhs, upper=False, unitriangular=True)
    x, p = rhs, a
    for _ in range(max(1, math.ceil(math.log2(a.shape[-1])))):
        x = x + p @ x
        p = p @ p
    return x


def wkv7_chunked(
    r: Tensor,
    w: Tensor,
    k: Tensor,
    v: Tensor,
    a: Tensor,
    b: Tensor,
    state: Tensor | None = None,
    chunk_len: int = 16,
) -> tuple[Tensor, Tensor]:
    """Chunk-parallel WKV-7 (same contract as `wkv7_reference`).

    Inside a chunk of L tokens with entering state S0, cumulative log-decays G_t (inclusive) and
    G-_t (exclusive), the vectors u_t = S_{t-1} a_t solve a unit lower-triangular system
    (I - A_ab) U = A~ S0^T + A_ak V, so U = W S0^T + U0 with W, U0 independent of S0. Then
    Y = Q S0^T + Y0 and S_L = S0 M + D, where Q, Y0, M, D are computed for every chunk at once
    (batched over B, H, chunks). Only `y = Q S^T + Y0; S = S M + D` runs in the Python loop over
    chunks. See the project's WKV7 math notes for the derivation.

    Long on purpose: one dense kernel whose tensors follow the derivation step by step.
    """
    in_dtype = r.dtype
    bsz, seq, n_head, head = (int(d) for d in r.shape)
    dt = _compute_dtype(in_dtype)
    length = chunk_len
    n_chunk = max(1, math.ceil(seq / length))
    with _no_autocast(r.device):
        r, w, k, v, a, b = (_to_chunks(x, n_chunk, length, dt) for x in (r, w, k, v, a, b))

        g = w.cumsum(dim=-2)  # G_t, inclusive, [NC,B,H,L,N]
        g_excl = g - w  # G-_t, exclusive
        mid = (length - 1) // 2
        centre = g[..., mid : mid + 1, :]  # [NC,B,H,1,N]
        # Pairwise decays e^{G_t - G_s} are formed as a product of two factors centred on the
        # middle of the chunk, so every exponent is within +-0.61 * L/2 (<= ~20 for L = 64):
        # the masked-out entries (s > t) stay finite and `where` drops them without 0 * inf.
        e_excl = torch.exp(g_excl - centre)
        e_incl = torch.exp(g - centre)
        e_inv = torch.exp(centre - g)
        a_c, r_c, b_c, k_c = a * e_excl, r * e_incl, b * e_inv, k * e_inv

        ones = torch.ones(length, length, dtype=torch.bool, device=r.device)
        strict = torch.tril(ones, diagonal=-1)  # s < t
        incl = torch.tril(ones)  # s <= t
        zero = r.new_zeros(())
        a_ab = torch.where(strict, a_c @ b_c.transpose(-1, -2), zero)  # [NC,B,H,L,L]
        a_ak = torch.where(strict, a_c @ k_c.transpose(-1, -2), zero)
        a_rb = torch.where(incl, r_c @ b_c.transpose(-1, -2), zero)
        a_rk = torch.where(incl, r_c @ k_c.transpose(-1, -2), zero)

        # Decays from the chunk start (A~, R~) and to the chunk end (B^, K^), re-using the
        # centred exponentials: e^{G} = e^{G-c} e^{c}, e^{G_L-G} = e^{c-G} e^{G_L-c}. Every
        # factor is bounded, so the products neither overflow nor lose relative precision.
        e_centre = torch.exp(centre)
        e_end = torch.exp(g[..., -1:, :] - centre)
        a_dec = a_c * e_centre  # a_t e^{G-_t}
        r_dec = r_c * e_centre  # r_t e^{G_t}
        b_tail = b_c * e_end  # b_s e^{G_L - G_s}
        k_tail = k_c * e_end

        rhs = torch.cat([a_dec, a_ak @ v], dim=-1)  # [NC,B,H,L,2N]
        sol = solve_unit_lower(a_ab, rhs, doubling=torch.onnx.is_in_onnx_export())
        w_mat, u0 = sol.split(head, dim=-1)  # W [.., L, N(key)], U0 [.., L, N(value)]

        def flat(t: Tensor) -> Tensor:
            return t.flatten(0, 2)  # [NC,B,H,X,Y] -> [NC*B*H,X,Y] for the fused baddbmm

        def t_(t: Tensor) -> Tensor:
            return t.transpose(-1, -2)

        q = torch.baddbmm(flat(r_dec), flat(a_rb), flat(w_mat))  # R~ + A_rb W, [.., L, N(key)]
        y0 = torch.baddbmm(flat(a_rk @ v), flat(a_rb), flat(u0))  # A_rb U0 + A_rk V
        # M = diag(e^{G_L}) + W^T B^; the diagonal is added in place (matmul's backward does not
        # need its output), which spares materialising an N x N diagonal per chunk.
        m = flat(t_(w_mat) @ b_tail)  # [NC*B*H,N,N]
        diag = flat(e_centre * e_end).squeeze(-2)  # [NC*B*H,N]
        if torch.onnx.is_in_onnx_export():  # the exporter drops writes into views, too
            m = m + diag[:, :, None] * torch.eye(head, dtype=dt, device=m.device)
        else:
            m.diagonal(dim1=-2, dim2=-1).add_(diag)
        d = torch.baddbmm(flat(t_(v) @ k_tail), flat(t_(u0)), flat(b_tail))  # U0^T B^ + V^T K^

        s = r.new_zeros(bsz, n_head, head, head) if state is None else state.to(dt)
        s = s.flatten(0, 1)  # [B*H,N,N]
        ys = []
        # One unbind per tensor (not NC selects) keeps the backward linear in NC.
        per_chunk = (t.view(n_chunk, bsz * n_head, *t.shape[1:]).unbind(0) for t in (q, y0, m, d))
        for q_c, y0_c, m_c, d_c in zip(*per_chunk, strict=True):
            ys.append(torch.baddbmm(y0_c, q_c, s.transpose(-1, -2)))  # Y = Q S^T + Y0
            s = torch.baddbmm(d_c, s, m_c)  # S <- S M + D
        y = torch.stack(ys).view(n_chunk, bsz, n_head, length, head)  # [NC,B,H,L,N]
        y = y.permute(1, 0, 3, 2, 4).reshape(bsz, n_chunk * length, n_head, head)[:, :seq]
        s = s.view(bsz, n_head, head, head)
    return y.to(in_dtype), s


def wkv7_step(
    r: Tensor,
    w: Tensor,
    k: Tensor,
    v: Tensor,
    a: Tensor,
    b: Tensor,
    state: Tensor,
    inplace: bool = False,
) -> tuple[Tensor, Tensor]:
    """One step of the scan for one token per sequence. Inputs [B, H, N] (`w` = log-decay),
    state [B, H, N, N] fp32, overwritten when `inplace` (which spares allocating a new state
    every token). Returns (y [B, H, N] in r's dtype, new state).

    S' = S diag(w) + (S a) b^T + v k^T and y = S' r, arranged so that the state is read by
    one matmul and written once:  [S a | S (w*r)] = S [a | w*r];  y = S (w*r) + [S a | v]
    [b | k]^T r;  S' = S diag(w) + [S a | v] [b | k]^T.

    The read is written [a | w*r]^T S^T, a [2, N] @ [N, N] product per head: PyTorch runs
    S @ [N, 2] as one tiny GEMM per head, which is slower."""
    head, dtype = r.shape[-1], r.dtype
    with _no_autocast(r.device):
        r, k, v, a, b = (t.float() for t in (r, k, v, a, b))  # [B,H,N]
        decay = torch.exp(w.float())  # [B,H,N]
        reads = torch.stack([a, decay * r], dim=-2) @ state.transpose(-1, -2)  # [B,H,2,N]
        sa, swr = reads.unbind(-2)  # S a, S (w*r): [B,H,N] each
        left = torch.stack([sa, v], dim=-1)  # [B,H,N,2] = [S a | v]
        right = torch.stack([b, k], dim=-2)  # [B,H,2,N] = [b | k]^T
        y = swr + (left @ (right @ r.unsqueeze(-1))).squeeze(-1)  # [B,H,N]
        scale = decay.unsqueeze(-2)  # [B,H,1,N]: scales the key columns
        l2, r2 = left.view(-1, head, 2), right.view(-1, 2, head)  # [B*H,N,2], [B*H,2,N]
        if inplace:  # [B,H,N,N] -> [B*H,N,N] views: the rank-2 update lands in the state
            new = state.mul_(scale)
            new.view(-1, head, head).baddbmm_(l2, r2)
        else:  # a new tensor, written by no view (the ONNX export records no view writes)
            new = torch.baddbmm((state * scale).view(-1, head, head), l2, r2).view_as(state)
    return y.to(dtype), new


def fla_available() -> bool:
    """Whether flash-linear-attention is installed (checked without importing it)."""
    return importlib.util.find_spec("fla") is not None


def wkv7_fla(
    r: Tensor, w: Tensor, k: Tensor, v: Tensor, a: Tensor, b: Tensor, state: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """flash-linear-attention's `chunk_rwkv7` (CUDA only) with this module's conventions.

    fla takes the same [B, T, H, N] layout and log-decay, but stores the state as [K, V] (the
    transpose of ours) and must be called with scale=1.0 (some fla entry points default to
    1/sqrt(N))."""
    from fla.ops.rwkv7 import chunk_rwkv7  # lazy: Triton kernels, CUDA only

    initial = None if state is None else state.float().transpose(-1, -2).contiguous()
    y, final = chunk_rwkv7(
        r, w, k, v, a, b, scale=1.0, initial_state=initial, output_final_state=True
    )
    return y.to(r.dtype), final.float().transpose(-1, -2)


def resolve_backend(backend: str, device: torch.device) -> str:
    """ "auto" picks fla on CUDA when installed, else the chunked PyTorch path."""
    if backend == "auto":
        return "fla" if device.type == "cuda" and fla_available() else "chunked"
    if backend == "fla" and not (device.type == "cuda" and fla_available()):
        raise RuntimeError(
            "wkv_backend='fla' needs a CUDA device and flash-linear-attention "
            "(pip install 'pianomuse[cuda]')"
        )
    if backend not in ("chunked", "reference", "fla"):
        raise ValueError(f"unknown WKV backend {backend!r}")
    return backend


def wkv7(
    r: Tensor,
    w: Tensor,
    k: Tensor,
    v: Tensor,
    a: Tensor,
    b: Tensor,
    state: Tensor | None = None,
    backend: str = "auto",
    chunk_len: int = 16,
) -> tuple[Tensor, Tensor]:
    """Dispatch to one WKV-7 implementation (see `resolve_backend`)."""
    name = resolve_backend(backend, r.device)
    if name == "reference":
        return wkv7_reference(r, w, k, v, a, b, state)
    if name == "fla":
        return wkv7_fla(r, w, k, v, a, b, state)
    return wkv7_chunked(r, w, k, v, a, b, state, chunk_len=chunk_len)
