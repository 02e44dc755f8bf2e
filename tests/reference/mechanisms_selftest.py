"""mechanisms_selftest.py: the selftest of spec sections 3 and 4 (mechanisms_ref.py), run by
`infini_ref.py selftest` after the Infini checks. run(ref, check) gets the infini_ref module (the
decoder, configs, checkpoints) and infini_ref's check(name, ok, detail) function.

The independent implementations here share nothing with mechanisms_ref.py but the section 1
building blocks (linear, rms_norm, the MLP): all heads at once (GQA by repeat_interleave), RoPE at
absolute stream positions (no rebasing) written with rotate_half, masks written as explicit double
loops from the words of the spec's section 3 table, and TransformerFAM block by block as in the
paper's algorithm (one sequence [F_l ; block] per layer and block) instead of layer by layer.
"""
import contextlib
import io
import math
import os
import tempfile

import torch
import torch.nn.functional as F

import mechanisms_ref as mech
from mechanisms_ref import linear, rms_norm

EQUAL = 1e-12  # float64: two summation orders of O(1) values over a few dozen terms


def maxdiff(a, b):
    return (a - b).abs().max().item() if a.numel() else 0.0


def grads_diff(ga, gb):
    return max(maxdiff(a, b) for a, b in zip(ga, gb))


# ----------------------------------------------------------------------------------------------
# Independent whole-sequence model.

def rot(x, pos, theta):
    """x [B,H,n,d] at absolute positions pos [n]: x cos + rotate_half(x) sin."""
    d = x.shape[-1]
    inv = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    ang = pos.to(torch.float64)[:, None] * inv[None, :]
    cos, sin = torch.cat([ang.cos(), ang.cos()], -1), torch.cat([ang.sin(), ang.sin()], -1)
    return x * cos + torch.cat([-x[..., d // 2:], x[..., :d // 2]], -1) * sin


def dense_attention(cfg, q, qpos, k, v, kpos, allowed):
    """q [B,n,H*d], k, v [B,m,Hkv*d] raw projections; allowed [n,m] -> [B,n,H*d]."""
    B, n, m = q.shape[0], q.shape[1], k.shape[1]
    H, G, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    q = rot(q.view(B, n, H, d).transpose(1, 2), qpos, cfg.rope_theta)
    k = rot(k.view(B, m, G, d).transpose(1, 2), kpos, cfg.rope_theta).repeat_interleave(H // G, dim=1)
    v = v.view(B, m, G, d).transpose(1, 2).repeat_interleave(H // G, dim=1)
    s = (q @ k.transpose(-1, -2)) / math.sqrt(d)
    return (torch.softmax(s.masked_fill(~allowed, float("-inf")), -1) @ v).transpose(1, 2).reshape(B, n, H * d)


def qkv(p, l, cfg, h):
    pre = f"model.layers.{l}."
    x = rms_norm(h, p[pre + "input_layernorm.weight"], cfg.rms_norm_eps)
    return [linear(x, p[pre + f"self_attn.{w}_proj.weight"]) for w in "qkv"]


def dense_stack(p, cfg, h, pos, allowed):
    """h [B,T,D] through every layer with one mask [T,T] -> (h out, [h entering layer l])."""
    entering = []
    for l in range(cfg.num_hidden_layers):
        entering.append(h)
        q, k, v = qkv(p, l, cfg, h)
        a = dense_attention(cfg, q, pos, k, v, pos, allowed)
        h = mech.mlp_residual(p, l, cfg, h + linear(a, p[f"model.layers.{l}.self_attn.o_proj.weight"]))
    return h, entering


def lm_head(p, cfg, h):
    w = p["model.embed_tokens.weight"] if cfg.tie_word_embeddings else p["lm_head.weight"]
    return linear(rms_norm(h, p["model.norm.weight"], cfg.rms_norm_eps), w)


def table_mask(typ, T, N, window=0, memory_blocks=0):
    """[T,T] the section 3 table, one pair at a time: may token i attend to token j?"""
    A = torch.zeros(T, T, dtype=torch.bool)
    for i in range(T):
        for j in range(i + 1):  # every type is causal and includes the token itself
            A[i, j] = {"full": True, "sliding": i - j < window, "xl": i // N - j // N <= 1,
                       "bswa": i // N - j // N <= memory_blocks}[typ]
    return A


def dense_model(p, cfg, ids):
    T = ids.shape[1]
    typ = "bswa" if cfg.attention_type == "fam" else cfg.attention_type
    mask = table_mask(typ, T, cfg.segment_length, cfg.window, cfg.memory_blocks)
    h, _ = dense_stack(p, cfg, p["model.embed_tokens.weight"][ids], torch.arange(T), mask)
    return lm_head(p, cfg, h)


def fam_blockwise(p, cfg, ids):
    """TransformerFAM as the paper's algorithm: for each block tau, for each layer l, one sequence
    [F_l ; block rows] at positions [tau*N - fl .. tau*N - 1 ; tau*N ..], keys [previous
    memory_blocks blocks of layer l ; that sequence]; FAM rows see FAM + block, block rows see
    memory + FAM + their block causally; the FAM rows leaving layer l are layer l's F_l next block."""
    B, T = ids.shape
    N, fl, mb, L = cfg.segment_length, cfg.fam_length, cfg.memory_blocks, cfg.num_hidden_layers
    fam0 = p["model.fam_embeddings"][None].expand(B, -1, -1)
    _, Fs = dense_stack(p, cfg, fam0, torch.arange(-fl, 0), torch.ones(fl, fl, dtype=torch.bool))
    memory = [[] for _ in range(L)]  # per layer: (k, v, positions) of each earlier block
    logits = []
    for tau in range(0, (T + N - 1) // N):
        h = p["model.embed_tokens.weight"][ids[:, tau * N:(tau + 1) * N]]
        n = h.shape[1]
        pos = torch.cat([torch.arange(tau * N - fl, tau * N), torch.arange(tau * N, tau * N + n)])
        for l in range(L):
            seq = torch.cat([Fs[l], h], 1)  # [B, fl+n, D]
            q, k, v = qkv(p, l, cfg, seq)
            old = memory[l][-mb:]
            mk = torch.cat([m[0] for m in old] + [k], 1)
            mv = torch.cat([m[1] for m in old] + [v], 1)
            mpos = torch.cat([m[2] for m in old] + [pos])
            M = mk.shape[1] - (fl + n)
            allowed = torch.zeros(fl + n, M + fl + n, dtype=torch.bool)
            allowed[:fl, M:] = True                                   # FAM rows: FAM + whole block
            allowed[fl:, :M + fl] = True                              # block rows: memory + FAM
            allowed[fl:, M + fl:] = torch.ones(n, n, dtype=torch.bool).tril()  # + own block causally
            a = dense_attention(cfg, q, pos, mk, mv, mpos, allowed)
            seq = mech.mlp_residual(p, l, cfg, seq + linear(a, p[f"model.layers.{l}.self_attn.o_proj.weight"]))
            memory[l].append((k[:, fl:], v[:, fl:], pos[fl:]))
            Fs[l], h = seq[:, :fl], seq[:, fl:]
        logits.append(lm_head(p, cfg, h))
    return torch.cat(logits, 1)


# ----------------------------------------------------------------------------------------------

def run(ref, check):
    torch.manual_seed(1)

    def config(typ, **kw):
        kw.setdefault("segment_length", 3)
        return ref.tiny_config("delta", False, attention_type=typ, gate_init=0.0, **kw)

    SETTINGS = {"full": {}, "sliding": {"window": 4}, "xl": {}, "bswa": {"memory_blocks": 2},
                "fam": {"memory_blocks": 1, "fam_length": 2}}

    def params(cfg, seed):
        return {k: v.requires_grad_(True) for k, v in ref.random_params(cfg, seed).items()}

    def grads(p, logits, ids):
        return torch.autograd.grad(ref.lm_loss(logits, ids), list(p.values()), retain_graph=True)

    def stream(p, cfg, ids, sizes, start=0, detach_between=False):
        state = ref.initial_state(cfg, ids.shape[0], torch.float64, p, start)
        out, s = [], 0
        for n in sizes:
            lg, state = ref.forward_segment(p, cfg, ids[:, s:s + n], state)
            if detach_between:
                state = [dict(st, k=st["k"].detach(), v=st["v"].detach()) for st in state]
            out.append(lg)
            s += n
        return torch.cat(out, 1), state

    # (g) each type against the independent dense model: one [T,T] mask from the section 3 table
    for typ in ("full", "sliding", "xl", "bswa"):
        cfg = config(typ, **SETTINGS[typ])
        p = params(cfg, 31)
        ids = torch.randint(0, cfg.vocab_size, (2, 15))
        lg, _ = ref.forward(p, cfg, ids[:, :-1])
        dense = dense_model(p, cfg, ids[:, :-1])
        d_grad = 0.0 if typ == "xl" else grads_diff(grads(p, lg, ids[:, 1:]), grads(p, dense, ids[:, 1:]))
        check(f"{typ} == independent dense model (section 3 table mask)", maxdiff(lg, dense) < EQUAL and d_grad < EQUAL,
              f"logits {maxdiff(lg, dense):.3g}" + ("" if typ == "xl" else f", grads {d_grad:.3g}"))

    # (h) fam == the paper's block-by-block algorithm, and its initial state == the FAM prompt
    # through an independent bidirectional stack
    for mb, fl, L in ((1, 2, 2), (2, 3, 2), (1, 1, 3)):
        cfg = config("fam", memory_blocks=mb, fam_length=fl, segment_length=4, num_hidden_layers=L)
        p = params(cfg, 37)
        ids = torch.randint(0, cfg.vocab_size, (2, 19))  # 4 full blocks and a partial one
        lg, _ = ref.forward(p, cfg, ids[:, :-1])
        bw = fam_blockwise(p, cfg, ids[:, :-1])
        d_val, d_grad = maxdiff(lg, bw), grads_diff(grads(p, lg, ids[:, 1:]), grads(p, bw, ids[:, 1:]))
        check(f"fam == block-by-block algorithm mb={mb} fl={fl} L={L}", d_val < EQUAL and d_grad < EQUAL,
              f"logits {d_val:.3g}, grads {d_grad:.3g}")
    cfg = config("fam", memory_blocks=1, fam_length=3, segment_length=4, num_hidden_layers=3)
    p = params(cfg, 39)
    _, entering = dense_stack(p, cfg, p["model.fam_embeddings"][None], torch.arange(-cfg.fam_length, 0),
                              torch.ones(cfg.fam_length, cfg.fam_length, dtype=torch.bool))
    ours = mech.fam_initial_rows(p, cfg, 1)
    d_init = max(maxdiff(a, b) for a, b in zip(ours, entering))
    check("fam initial state == fam_embeddings through a bidirectional stack", d_init < EQUAL, f"{d_init:.3g}")

    # (i) gradcheck (fast mode, every parameter incl. fam_embeddings); xl only within one segment,
    # and across segments it must fail: finite differences see the path xl's gradient stops
    for typ in ("full", "sliding", "xl", "bswa", "fam"):
        cfg = config(typ, vocab_size=5, hidden_size=4, intermediate_size=4, **SETTINGS[typ])
        p = ref.random_params(cfg, 41)
        for T in ((3, 8) if typ == "xl" else (8,)):
            ids = torch.randint(0, cfg.vocab_size, (2, T + 1))
            names = list(p)

            def fn(*ts):
                return ref.lm_loss(ref.forward(dict(zip(names, ts)), cfg, ids[:, :-1])[0], ids[:, 1:])
            ok = torch.autograd.gradcheck(fn, tuple(p[n].clone().requires_grad_(True) for n in names), eps=1e-6,
                                          atol=1e-7, rtol=1e-5, fast_mode=True, raise_exception=False)
            if typ == "xl" and T > 3:
                check("xl gradcheck across segments fails (the stop-gradient is active)", not ok)
            else:
                check(f"gradcheck {typ} T={T}", ok)

    # (j) streaming == one pass: chunks of one segment, of several segments, token by token and
    # ragged chunks that start mid-segment; logits, final state and gradients
    for typ, kw in SETTINGS.items():
        cfg = config(typ, **kw)
        p = params(cfg, 43)
        ids = torch.randint(0, cfg.vocab_size, (2, 14))
        whole, st_whole = ref.forward(p, cfg, ids[:, :-1])
        g_whole = grads(p, whole, ids[:, 1:])
        tw = ref.state_tensors(cfg, st_whole)
        for name, sizes in (("segments", [3, 3, 3, 3, 1]), ("3-segment chunks", [9, 4]),
                            ("tokens", [1] * 13), ("ragged", [2, 4, 1, 5, 1])):
            lg, st = stream(p, cfg, ids[:, :-1], sizes)
            ts = ref.state_tensors(cfg, st)
            d_val = max([maxdiff(lg, whole)] + [maxdiff(ts[k], tw[k]) for k in tw])
            d_grad = grads_diff(grads(p, lg, ids[:, 1:]), g_whole)
            same_shape = all(ts[k].shape == tw[k].shape for k in tw)
            check(f"streaming == one pass {typ} ({name})", same_shape and d_val < EQUAL and d_grad < EQUAL,
                  f"values {d_val:.3g}, grads {d_grad:.3g}")
        rows = tw["state.k"].shape[2]
        want = {"full": 13, "sliding": kw.get("window", 0) - 1, "xl": 4, "bswa": 7, "fam": 4}[typ]
        check(f"{typ} cache after 13 tokens holds {want} rows", rows == want, f"({rows})")

    # (k) equivalences of issue 6
    T = 13
    ids = torch.randint(0, 7, (2, T + 1))
    base = config("full")
    p = params(base, 47)
    full, _ = ref.forward(p, base, ids[:, :-1])
    g_full = grads(p, full, ids[:, 1:])
    for typ, kw, what in (("bswa", {"memory_blocks": 4}, "bswa memory_blocks 4 (covers 13 tokens)"),
                          ("bswa", {"memory_blocks": 9}, "bswa memory_blocks 9"),
                          ("sliding", {"window": 13}, "sliding window 13 (= stream)"),
                          ("sliding", {"window": 40}, "sliding window 40")):
        cfg = config(typ, **kw)
        lg, _ = ref.forward(p, cfg, ids[:, :-1])
        lg_s, _ = stream(p, cfg, ids[:, :-1], [3, 3, 3, 3, 1])
        d = max(maxdiff(lg, full), maxdiff(lg_s, full), grads_diff(grads(p, lg, ids[:, 1:]), g_full))
        check(f"{what} == full", d < EQUAL, f"{d:.3g}")
    not_covering = maxdiff(ref.forward(p, config("bswa", memory_blocks=2), ids[:, :-1])[0], full)
    check("bswa memory_blocks 2 != full (13 tokens, 5 blocks)", not_covering > 1e-6, f"{not_covering:.3g}")

    for mb in (1, 2):
        cb, cf = config("bswa", memory_blocks=mb), config("fam", memory_blocks=mb, fam_length=0)
        pf = {**p, "model.fam_embeddings": torch.zeros(0, cb.hidden_size, dtype=torch.float64, requires_grad=True)}
        lb, _ = ref.forward(p, cb, ids[:, :-1])
        lf, _ = ref.forward(pf, cf, ids[:, :-1])
        lfs, _ = stream(pf, cf, ids[:, :-1], [3, 3, 3, 3, 1])
        gb, gf = grads(p, lb, ids[:, 1:]), grads(pf, lf, ids[:, 1:])[:len(p)]
        d = max(maxdiff(lb, lf), maxdiff(lb, lfs), grads_diff(gb, gf))
        check(f"fam fam_length 0 == bswa memory_blocks {mb}", d < EQUAL, f"{d:.3g}")

    cx, cb = config("xl"), config("bswa", memory_blocks=1)
    lx, _ = ref.forward(p, cx, ids[:, :-1])
    lb, _ = ref.forward(p, cb, ids[:, :-1])
    gx, gb = grads(p, lx, ids[:, 1:]), grads(p, lb, ids[:, 1:])
    check("xl forward == bswa memory_blocks 1", maxdiff(lx, lb) < EQUAL, f"{maxdiff(lx, lb):.3g}")
    check("xl gradients != bswa memory_blocks 1 gradients", grads_diff(gx, gb) > 1e-4, f"{grads_diff(gx, gb):.3g}")
    # bswa streamed one segment at a time with its cache detached between segments: the path through
    # the cached K/V is cut, everything else kept -> exactly xl's gradient
    lcut, _ = stream(p, cb, ids[:, :-1], [3, 3, 3, 3, 1], detach_between=True)
    d = max(maxdiff(lcut, lx), grads_diff(grads(p, lcut, ids[:, 1:]), gx))
    check("xl gradients == bswa with the cached K/V path cut", d < EQUAL, f"{d:.3g}")

    # (l) receptive fields: perturb token j; the logits at t must change exactly when j can reach t.
    # One layer: the table itself; L layers: L hops of it. Unchanged means bit-identical (a masked
    # key gets weight exp(-inf) = 0 exactly).
    def reach(typ, kw, L, N, t, j):
        if j > t:
            return False
        return {"full": True, "fam": True, "sliding": t - j <= L * (kw.get("window", 0) - 1),
                "xl": t // N - j // N <= L, "bswa": t // N - j // N <= L * kw.get("memory_blocks", 0)}[typ]

    T = 12
    for typ, kw in (("full", {}), ("sliding", {"window": 3}), ("xl", {}), ("bswa", {"memory_blocks": 1}),
                    ("fam", {"memory_blocks": 1, "fam_length": 2})):
        for L in (1, 2):
            cfg = config(typ, num_hidden_layers=L, **kw)
            pr = ref.random_params(cfg, 53)
            ids = torch.randint(0, cfg.vocab_size, (1, T))
            with torch.no_grad():
                base_lg = ref.forward(pr, cfg, ids)[0][0]
                bad = []
                for j in range(T):
                    pert = ids.clone()
                    pert[0, j] = (pert[0, j] + 1) % cfg.vocab_size
                    diff = (ref.forward(pr, cfg, pert)[0][0] - base_lg).abs().amax(-1)  # [T]
                    for t in range(T):
                        want = reach(typ, kw, L, 3, t, j)
                        if (want and not diff[t] > 1e-9) or (not want and diff[t] != 0.0):
                            bad.append((j, t, diff[t].item()))
            check(f"receptive field {typ} L={L} (all {T}x{T} token pairs)", not bad, f"wrong pairs {bad[:3]}")

    # (m) FAM feedback over >= 3 blocks with memory_blocks 1: block 0 reaches blocks 3 and 4 (one
    # layer, so no stacking of windows); bswa on the same weights does not
    ids = torch.randint(0, 7, (1, 15))
    pert = ids.clone()
    pert[0, 1] = (pert[0, 1] + 3) % 7
    cf, cb = config("fam", num_hidden_layers=1, memory_blocks=1, fam_length=2), config("bswa", num_hidden_layers=1,
                                                                                     memory_blocks=1)
    pf = ref.random_params(cf, 59)
    pb = {k: v for k, v in pf.items() if k != "model.fam_embeddings"}
    with torch.no_grad():
        df = (ref.forward(pf, cf, ids)[0] - ref.forward(pf, cf, pert)[0]).abs()
        db = (ref.forward(pb, cb, ids)[0] - ref.forward(pb, cb, pert)[0]).abs()
    check("fam: perturbing block 0 changes blocks 3 and 4 (memory_blocks 1)",
          df[0, 9:].amax(-1).min().item() > 1e-6 and db[0, 6:].max().item() == 0.0,
          f"fam min change {df[0, 9:].amax(-1).min().item():.3g}, bswa {db[0, 6:].max().item():.3g}")

    # (n) rebasing: with the same recent context a segment's logits do not depend on how many tokens
    # came before (windowed types) nor on where the stream starts (every type, also 999,999 tokens
    # later); without rebasing only rounding changes
    S = 999_999  # a multiple of N = 3
    for typ, kw in (("sliding", {"window": 3}), ("xl", {}), ("bswa", {"memory_blocks": 1}), ("full", {}),
                    ("fam", {"memory_blocks": 1, "fam_length": 2})):
        cfg = config(typ, **kw)
        pr = ref.random_params(cfg, 61)
        x = torch.randint(0, 7, (1, 9))  # 3 blocks: the last block's whole receptive field at L = 2
        prefix = torch.randint(0, 7, (1, 12))
        long_ids = torch.cat([prefix, x], 1)
        with torch.no_grad():
            a = stream(pr, cfg, x, [3] * 3)[0][:, -3:]
            b = stream(pr, cfg, long_ids, [3] * 7)[0][:, -3:]
            c = stream(pr, cfg, long_ids, [3] * 7, start=S)[0][:, -3:]
            c1 = ref.forward(pr, cfg, long_ids, ref.initial_state(cfg, 1, torch.float64, pr, S))[0][:, -3:]
            mech.REBASE = False
            try:
                c_raw = stream(pr, cfg, long_ids, [3] * 7, start=S)[0][:, -3:]
            finally:
                mech.REBASE = True
        windowed = typ in ("sliding", "xl", "bswa")
        ok = maxdiff(b, c) == 0.0 and maxdiff(b, c1) < EQUAL and (not windowed or maxdiff(a, b) < EQUAL)
        raw = maxdiff(b, c_raw)
        check(f"rebasing {typ}: last segment after 0 / 12 / {S}+12 earlier tokens", ok,
              (f"0 vs 12: {maxdiff(a, b):.3g}, " if windowed else "") + f"12 vs {S}+12: {maxdiff(b, c):.3g}")
        check(f"no rebasing {typ}: stream start {S} changes rounding only", 0 < raw < 1e-7, f"{raw:.3g}")

    # (o) stream_nll == per-token CE of one pass; batch == loop of streams; make-case round trip
    for typ, kw in SETTINGS.items():
        cfg = config(typ, **kw)
        pr = ref.random_params(cfg, 67)
        ids = torch.randint(0, cfg.vocab_size, (3, 11))
        with torch.no_grad():
            whole, st = ref.forward(pr, cfg, ids)
            nll = ref.stream_nll(pr, cfg, ids[1])
            ce = F.cross_entropy(whole[1, :-1], ids[1, 1:], reduction="none")
            ts = ref.state_tensors(cfg, st)
            d_batch = 0.0
            for b in range(3):
                lb, sb = ref.forward(pr, cfg, ids[b:b + 1])
                tb = ref.state_tensors(cfg, sb)
                d_batch = max([d_batch, maxdiff(lb, whole[b:b + 1])] + [maxdiff(tb[k], ts[k][b:b + 1]) for k in ts])
        check(f"stream_nll == per-token CE {typ}", maxdiff(nll, ce) < EQUAL, f"{maxdiff(nll, ce):.3g}")
        check(f"batch == loop of streams {typ}", d_batch < EQUAL, f"{d_batch:.3g}")

    with tempfile.TemporaryDirectory() as tmp:
        for typ, flags in (("sliding", ["--window", "5"]), ("xl", []), ("bswa", ["--memory-blocks", "2"]),
                           ("full", []), ("fam", ["--memory-blocks", "1", "--fam-length", "3"])):
            out = os.path.join(tmp, typ)
            with contextlib.redirect_stdout(io.StringIO()):  # its JSON line
                ref.main(["make-case", "--out", out, "--seed", "3", "--batch", "2", "--seq-len", "19", "--type", typ,
                          "--layers", "2", "--hidden", "16", "--ffn", "24", "--vocab", "32"] + flags)
            cfg, pr = ref.load_checkpoint(out)
            case, _ = ref.read_safetensors(os.path.join(out, "reference.safetensors"))
            tok = torch.from_numpy(ref.read_safetensors(os.path.join(out, "tokens.safetensors"))[0]["tokens"]).long()
            with torch.no_grad():
                lg, st = ref.forward(pr, cfg, tok[:, :-1])
            want = {"sliding": 4, "xl": 11, "bswa": 19, "full": 19, "fam": 11}[typ]  # rows kept after 19 tokens
            names = set(case)
            expected = ({"logits", "loss", "state.k", "state.v"} | {"grad." + k for k in pr}
                        | ({"state.fam", "fam.initial"} if typ == "fam" else set()))
            ok = (cfg.attention_type == typ and names == expected and case["state.k"].shape == (2, 2, want, 2, 8)
                  and maxdiff(lg, torch.from_numpy(case["logits"])) == 0.0
                  and ("self_attn.memory_gate" not in " ".join(pr)) and (typ != "fam" or (
                      case["state.fam"].shape == (2, 2, 3, 16) and case["fam.initial"].shape == (2, 3, 16))))
            check(f"make-case --type {typ}: files, shapes, logits reload", ok, f"cache rows {case['state.k'].shape[2]}")
