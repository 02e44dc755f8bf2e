"""mechanisms_ref.py: the building blocks of the decoder (spec section 1) and the softmax-attention
mechanisms of sections 3 and 4 of /work/shared/spec/memory-mechanisms.md (`full`, `sliding`, `xl`,
`bswa`, `fam`), in float64 PyTorch with autograd. infini_ref.py (the entry point, with Infini-
attention, the decoder loop, checkpoints and the commands) imports this file and registers the
mechanisms in its ATTENTION / INITIAL_STATE tables; this file imports nothing from it.

How every type here is computed. A call gets a chunk of the stream: `n` rows at stream positions
pos .. pos+n-1 (any n >= 1, any pos: a whole training sequence, one segment, or one token). The
layer's state holds the raw (pre-RoPE) K/V of the earlier rows that a later query can still see,
oldest first, at positions pos-r .. pos-1. The keys of the call are [cache ; chunk] (plus, for
`fam`, the FAM rows). Query position t sees key position j when

    oldest_visible(t) <= j <= t
      full      oldest_visible(t) = -infinity           every earlier token and itself
      sliding   oldest_visible(t) = t - window + 1      the last `window` tokens, itself included
      xl        oldest_visible(t) = (blk(t) - 1) * N    own segment causally + the previous one
      bswa, fam oldest_visible(t) = (blk(t) - memory_blocks) * N
    blk(t) = floor(t / N): blocks are cut at multiples of N from stream position 0.

`xl` stops the gradient through the K/V of the previous segment: for a (query, key) pair with
blk(key) < blk(query) the score and the value use K.detach() / V.detach(); pairs inside one
segment keep their gradient (so a segment streamed token by token still trains as in one pass).
`bswa` never stops gradients inside a call (nor across calls: the cache keeps the autograd graph).

After a call the cache keeps the rows j >= oldest_visible(pos + n): oldest_visible never decreases,
so no later query can see a dropped row. So one call over a whole stream (one [T, T] mask) and many
calls over its pieces compute the same numbers (checked in the selftest).

Rebasing (spec section 3): RoPE positions are stream positions, but each call subtracts one common
base, the oldest position among its keys and queries (REBASE below), before the angles are taken.
RoPE scores depend only on position differences, so this changes rounding only; with it the angles
stay small however long the stream. With REBASE = False the selftest measures that only rounding
changes (about 1e-10 in float64 at position 10^6).

TransformerFAM (section 4) on top of `bswa`: layer l carries F_l [B, fam_length, D], the
residual-stream rows entering layer l at the current block. For each block tau the call touches:
  - block rows of tau attend to [cache ; chunk] as for bswa, plus the K/V of rms_norm(F_l(tau)) at
    RoPE positions tau*N - fam_length .. tau*N - 1;
  - when block tau is complete (its N-th row is in this call), F_l(tau+1) = layer l applied to the
    rows F_l(tau): input_layernorm, attention of the FAM queries over [FAM keys of F_l(tau) ; the
    N rows of block tau at this layer] with no mask at all, residual, post_attention_layernorm, MLP,
    residual. The FAM update is done at once when the block completes (eagerly), so the state after
    a call always holds F_l for the block that contains position pos + n.
  - initial state: F_0(0) = model.fam_embeddings; F_{l+1}(0) = layer l applied to F_l(0) alone (no
    block rows, no mask among FAM rows, RoPE positions -fam_length .. -1 as for tau = 0).
"""
import math

import torch
import torch.nn.functional as F

REBASE = True  # subtract the oldest position of each call before RoPE; False only in the selftest

# ----------------------------------------------------------------------------------------------
# Section 1 building blocks, shared with infini_ref.py.


def linear(x, w):  # w [out, in], y = x W^T
    return x @ w.t()


def rms_norm(x, w, eps):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope_tables_at(pos, d, theta, dtype):
    """pos: 1-D tensor of positions -> cos, sin [len(pos), d/2] of angle pos * theta^(-2i/d)."""
    i = torch.arange(d // 2, dtype=dtype)
    inv = torch.tensor(theta, dtype=dtype) ** (-2.0 * i / d)  # [d/2]
    angle = pos.to(dtype)[:, None] * inv[None, :]  # [n, d/2]
    return torch.cos(angle), torch.sin(angle)


def rope_tables(n, d, theta, dtype):
    """cos, sin [n, d/2] for positions 0..n-1."""
    return rope_tables_at(torch.arange(n, dtype=dtype), d, theta, dtype)


def rope(x, cos, sin):
    """x [..., n, d], HF rotate_half: [x1 cos - x2 sin | x2 cos + x1 sin], index i in both halves."""
    d = x.shape[-1]
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def mlp_residual(p, l, cfg, h):
    """h [..., D] -> h + W_down(silu(W_gate m) * (W_up m)), m = RMSNorm(h; w_post_l)."""
    pre = f"model.layers.{l}."
    m = rms_norm(h, p[pre + "post_attention_layernorm.weight"], cfg.rms_norm_eps)
    return h + linear(F.silu(linear(m, p[pre + "mlp.gate_proj.weight"])) * linear(m, p[pre + "mlp.up_proj.weight"]),
                      p[pre + "mlp.down_proj.weight"])


def project(p, l, cfg, x):
    """x [B,n,D] (normed) -> raw Q [B,n,H,d], K, V [B,n,Hkv,d]."""
    B, n, _ = x.shape
    H, G, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    pre = f"model.layers.{l}.self_attn."
    return (linear(x, p[pre + "q_proj.weight"]).view(B, n, H, d),
            linear(x, p[pre + "k_proj.weight"]).view(B, n, G, d),
            linear(x, p[pre + "v_proj.weight"]).view(B, n, G, d))


def attend(cfg, q, tq, k, v, tk, visible, stop=None):
    """Softmax attention of raw q [B,n,H,d] at positions tq [n] over raw k, v [B,m,Hkv,d] at
    positions tk [m]. visible [n,m] bool; stop [n,m] bool or None: pairs whose key/value gradient is
    stopped. RoPE at (position - base), scale 1/sqrt(d). -> heads concatenated [B,n,H*d]."""
    H, G, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    base = int(min(tq.min(), tk.min())) if REBASE and tq.numel() and tk.numel() else 0
    cos_q, sin_q = rope_tables_at(tq - base, d, cfg.rope_theta, q.dtype)
    cos_k, sin_k = rope_tables_at(tk - base, d, cfg.rope_theta, q.dtype)
    stopped = stop is not None and bool(stop.any())
    heads = []
    for h in range(H):
        g = h // (H // G)
        qh, kh, vh = rope(q[:, :, h], cos_q, sin_q), rope(k[:, :, g], cos_k, sin_k), v[:, :, g]  # [B,*,d]
        scores = qh @ kh.transpose(-1, -2) / math.sqrt(d)  # [B,n,m]
        if stopped:
            scores = torch.where(stop, qh @ kh.detach().transpose(-1, -2) / math.sqrt(d), scores)
        probs = torch.softmax(scores.masked_fill(~visible, float("-inf")), dim=-1)
        if stopped:
            s = stop.to(probs.dtype)
            heads.append((probs * (1.0 - s)) @ vh + (probs * s) @ vh.detach())
        else:
            heads.append(probs @ vh)
    return torch.cat(heads, dim=-1)


# ----------------------------------------------------------------------------------------------
# Section 3: which keys a query sees.

NO_LOWER_BOUND = -(2 ** 62)


def blk(t, N):
    return torch.div(t, N, rounding_mode="floor")


def oldest_visible(cfg, t):
    """t: int64 tensor of query positions -> the oldest key position each may attend to."""
    typ, N = cfg.attention_type, cfg.segment_length
    if typ == "full":
        return torch.full_like(t, NO_LOWER_BOUND)
    if typ == "sliding":
        return t - cfg.window + 1
    if typ == "xl":
        return (blk(t, N) - 1) * N
    if typ in ("bswa", "fam"):
        return (blk(t, N) - cfg.memory_blocks) * N
    raise ValueError(f"attention.type {typ!r} has no key window")


def visible_mask(cfg, tq, tk):
    """[n,m] bool: query position tq[i] sees key position tk[j]."""
    return (tk[None, :] <= tq[:, None]) & (tk[None, :] >= oldest_visible(cfg, tq)[:, None])


def stop_mask(cfg, tq, tk):
    """[n,m] bool for xl (keys of earlier segments: gradient stopped), None for the others."""
    if cfg.attention_type != "xl":
        return None
    N = cfg.segment_length
    return blk(tk, N)[None, :] < blk(tq, N)[:, None]


# ----------------------------------------------------------------------------------------------
# Layer state and the one attention function of every type here.

def kv_layer_state(cfg, B, dtype, start):
    """Empty cache of a stream whose first token has stream position `start`."""
    G, d = cfg.num_key_value_heads, cfg.head_dim
    if cfg.attention_type in ("xl", "bswa", "fam") and start % cfg.segment_length:
        raise ValueError(f"a {cfg.attention_type} stream must start on a block boundary (start {start})")
    return {"pos": start,                                     # stream position of the next row
            "k": torch.zeros(B, 0, G, d, dtype=dtype),        # [B, r, Hkv, d] raw K of rows pos-r .. pos-1
            "v": torch.zeros(B, 0, G, d, dtype=dtype),        # [B, r, Hkv, d] raw V
            "fam": None}                                      # fam: F_l [B, fam_length, D] for block blk(pos)


def fam_positions(cfg, tau):
    """RoPE positions of the FAM rows used at block tau: tau*N - fam_length .. tau*N - 1."""
    return tau * cfg.segment_length - cfg.fam_length + torch.arange(cfg.fam_length)


def fam_update(p, l, cfg, F_rows, tau, block_k, block_v):
    """Layer l on the FAM rows of block tau. F_rows [B,fl,D] enter layer l; block_k, block_v
    [B,nb,Hkv,d] raw K/V of the block's rows at this layer (nb = N, or 0 for the initial pass).
    FAM queries see every FAM row and every block row (no mask). -> the rows leaving layer l."""
    pre = f"model.layers.{l}."
    x = rms_norm(F_rows, p[pre + "input_layernorm.weight"], cfg.rms_norm_eps)
    Q, K, V = project(p, l, cfg, x)
    tf = fam_positions(cfg, tau)
    tk = torch.cat([tf, tau * cfg.segment_length + torch.arange(block_k.shape[1])])
    everything = torch.ones(tf.numel(), tk.numel(), dtype=torch.bool)
    a = attend(cfg, Q, tf, torch.cat([K, block_k], 1), torch.cat([V, block_v], 1), tk, everything)
    return mlp_residual(p, l, cfg, F_rows + linear(a, p[pre + "self_attn.o_proj.weight"]))


def fam_initial_rows(p, cfg, B):
    """[F_0(0), ..., F_{L-1}(0)], each [B,fl,D]: model.fam_embeddings run through the stack once,
    FAM rows attending only to each other (positions as for tau = 0)."""
    G, d = cfg.num_key_value_heads, cfg.head_dim
    F_rows = p["model.fam_embeddings"].expand(B, -1, -1)
    empty = torch.zeros(B, 0, G, d, dtype=F_rows.dtype)
    rows = []
    for l in range(cfg.num_hidden_layers):
        rows.append(F_rows)
        F_rows = fam_update(p, l, cfg, F_rows, 0, empty, empty)
    return rows


def initial_kv_state(p, cfg, B, dtype, start=0):
    """The stream state of every layer for full/sliding/xl/bswa/fam (fam: needs the weights p)."""
    state = [kv_layer_state(cfg, B, dtype, start) for _ in range(cfg.num_hidden_layers)]
    if cfg.attention_type == "fam":
        if p is None:
            raise ValueError("the initial state of a fam model needs the weights (model.fam_embeddings)")
        for s, F_rows in zip(state, fam_initial_rows(p, cfg, B)):
            s["fam"] = F_rows
    return state


def kv_attention(p, l, cfg, x, st):
    """x [B,n,D] (after input_layernorm): a chunk at stream positions st["pos"] .. +n-1, any n >= 1.
    -> (output [B,n,D], new layer state). full, sliding, xl, bswa and fam."""
    B, n, _ = x.shape
    N, pos = cfg.segment_length, st["pos"]
    Q, K, V = project(p, l, cfg, x)
    r = st["k"].shape[1]
    keys, values = torch.cat([st["k"], K], 1), torch.cat([st["v"], V], 1)  # [B, r+n, Hkv, d]
    tq, tk = pos + torch.arange(n), pos - r + torch.arange(r + n)
    vis, stop = visible_mask(cfg, tq, tk), stop_mask(cfg, tq, tk)
    new_fam = None
    if cfg.attention_type == "fam":
        # one set of FAM keys per block the chunk touches, seen only by that block's rows
        F_rows, fk, fv, ft, fvis = st["fam"], [], [], [], []
        for tau in range(pos // N, (pos + n - 1) // N + 1):
            _, Kf, Vf = project(p, l, cfg, rms_norm(F_rows, p[f"model.layers.{l}.input_layernorm.weight"],
                                                    cfg.rms_norm_eps))
            fk.append(Kf), fv.append(Vf), ft.append(fam_positions(cfg, tau))
            fvis.append((blk(tq, N) == tau)[:, None].expand(n, cfg.fam_length))
            if (tau + 1) * N <= pos + n:  # block tau complete: within-layer feedback for tau + 1
                i0 = tau * N - (pos - r)  # its first row in [cache ; chunk]
                F_rows = fam_update(p, l, cfg, F_rows, tau, keys[:, i0:i0 + N], values[:, i0:i0 + N])
        new_fam = F_rows
        all_k, all_v = torch.cat([keys] + fk, 1), torch.cat([values] + fv, 1)
        all_t, all_vis = torch.cat([tk] + ft), torch.cat([vis] + fvis, 1)
    else:
        all_k, all_v, all_t, all_vis = keys, values, tk, vis
    out = linear(attend(cfg, Q, tq, all_k, all_v, all_t, all_vis, stop_pad(stop, all_vis)),
                 p[f"model.layers.{l}.self_attn.o_proj.weight"])
    # keep the rows a later query can still see (oldest_visible never decreases)
    first = int(oldest_visible(cfg, torch.tensor([pos + n]))[0])
    keep = max(0, min(r + n, first - (pos - r)))
    return out, {"pos": pos + n, "k": keys[:, keep:], "v": values[:, keep:], "fam": new_fam}


def stop_pad(stop, vis):
    """Widen the stop mask [n,m] to the columns of vis [n,m'] (FAM keys are never stopped)."""
    if stop is None:
        return None
    return torch.cat([stop, torch.zeros(vis.shape[0], vis.shape[1] - stop.shape[1], dtype=torch.bool)], 1)


KV_TYPES = ("full", "sliding", "xl", "bswa", "fam")
