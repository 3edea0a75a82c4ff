"""The WKV-7 recurrence of RWKV-7, three ways.

Per head, with state S (N x N, rows = value dim, cols = key dim, BlinkDL's layout):

    S_t = S_{t-1} (diag(w_t) + a_t b_t^T) + v_t k_t^T,    y_t = S_t r_t

* `wkv7_reference`: the plain step-by-step scan, the slow twin the others are tested against.
* `wkv7_chunked`: chunk-parallel pure PyTorch (WY/UT form), differentiated by autograd.
* `wkv7_fla`: flash-linear-attention's Triton kernel, imported lazily, CUDA only.

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

    Returns (y [B, T, H, N] in r's dtype, final state [B, H, N, N] in fp32)."""
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
    """
    in_dtype = r.dtype
    bsz, seq, n_head, head = r.shape
    dt = _compute_dtype(in_dtype)
    length = chunk_len
    n_chunk = max(1, math.ceil(seq / length))
    pad = n_chunk * length - seq
    with _no_autocast(r.device):
        r, w, k, v, a, b = (x.to(dt) for x in (r, w, k, v, a, b))
        if pad:
            # log w = 0 (decay 1) and zero r/k/v/a/b: the padded steps leave the state unchanged.
            r, w, k, v, a, b = (F.pad(x, (0, 0, 0, 0, 0, pad)) for x in (r, w, k, v, a, b))

        def to_chunks(x: Tensor) -> Tensor:
            # [B, NC*L, H, N] -> [B, H, NC, L, N]
            return x.view(bsz, n_chunk, length, n_head, head).permute(0, 3, 1, 2, 4)

        r, w, k, v, a, b = (to_chunks(x) for x in (r, w, k, v, a, b))

        g = w.cumsum(dim=-2)  # G_t, inclusive, [B,H,NC,L,N]
        g_excl = g - w  # G-_t, exclusive
        g_last = g[..., -1:, :]  # G_L, [B,H,NC,1,N]
        # Pairwise decays e^{G_t - G_s} are formed as a product of two factors centred on the
        # middle of the chunk, so every exponent is within +-0.61 * L/2 (<= ~20 for L = 64):
        # the masked-out entries (s > t) stay finite and `where` drops them without 0 * inf.
        centre = g[..., (length - 1) // 2 : (length - 1) // 2 + 1, :]
        a_c = a * torch.exp(g_excl - centre)
        r_c = r * torch.exp(g - centre)
        inv_g = torch.exp(centre - g)
        b_c = b * inv_g
        k_c = k * inv_g

        ones = torch.ones(length, length, dtype=torch.bool, device=r.device)
        strict = torch.tril(ones, diagonal=-1)  # s < t
        incl = torch.tril(ones)  # s <= t
        zero = r.new_zeros(())
        a_ab = torch.where(strict, a_c @ b_c.transpose(-1, -2), zero)  # [B,H,NC,L,L]
        a_ak = torch.where(strict, a_c @ k_c.transpose(-1, -2), zero)
        a_rb = torch.where(incl, r_c @ b_c.transpose(-1, -2), zero)
        a_rk = torch.where(incl, r_c @ k_c.transpose(-1, -2), zero)

        # Exponents below are <= 0: no centring needed.
        a_dec = a * torch.exp(g_excl)  # A~
        r_dec = r * torch.exp(g)  # R~
        tail = torch.exp(g_last - g)
        b_tail = b * tail  # B^, decay from s to the chunk end
        k_tail = k * tail

        eye = torch.eye(length, dtype=dt, device=r.device)
        rhs = torch.cat([a_dec, a_ak @ v], dim=-1)  # [B,H,NC,L,2N]
        sol = torch.linalg.solve_triangular(eye - a_ab, rhs, upper=False, unitriangular=True)
        w_mat, u0 = sol.split(head, dim=-1)  # W [.., L, N(key)], U0 [.., L, N(value)]

        q = r_dec + a_rb @ w_mat  # [B,H,NC,L,N(key)]
        y0 = a_rb @ u0 + a_rk @ v  # [B,H,NC,L,N(value)]
        m = torch.diag_embed(torch.exp(g_last.squeeze(-2))) + w_mat.transpose(-1, -2) @ b_tail
        d = u0.transpose(-1, -2) @ b_tail + v.transpose(-1, -2) @ k_tail  # [B,H,NC,N,N]

        def per_chunk(x: Tensor) -> tuple[Tensor, ...]:
            # [B,H,NC,X,Y] -> NC tensors [B*H,X,Y]; one unbind (not NC selects) keeps the
            # backward linear in NC.
            return x.permute(2, 0, 1, 3, 4).flatten(1, 2).unbind(0)

        s = r.new_zeros(bsz, n_head, head, head) if state is None else state.to(dt)
        s = s.flatten(0, 1)  # [B*H,N,N]
        ys = []
        for q_c, y0_c, m_c, d_c in zip(per_chunk(q), per_chunk(y0), per_chunk(m), per_chunk(d)):
            ys.append(torch.baddbmm(y0_c, q_c, s.transpose(-1, -2)))  # Y = Q S^T + Y0
            s = torch.baddbmm(d_c, s, m_c)  # S <- S M + D
        y = torch.stack(ys, dim=0)  # [NC,B*H,L,N]
        y = y.view(n_chunk, bsz, n_head, length, head).permute(1, 0, 3, 2, 4)  # [B,NC,L,H,N]
        y = y.reshape(bsz, n_chunk * length, n_head, head)[:, :seq]  # [B,T,H,N]
        s = s.view(bsz, n_head, head, head)
    return y.to(in_dtype), s


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
