#!/usr/bin/python3
"""infini_ref.py: the PyTorch reference implementation of the numerical contract in
/work/shared/spec/memory-mechanisms.md: section 1 (the Llama-style decoder), section 2
(Infini-attention, here), sections 3 and 4 (full, sliding, xl, bswa, fam: in mechanisms_ref.py,
registered below) and section 5 (the checkpoint directory).

The C++ tests treat what this file computes as ground truth. It is written straight from the spec
so that someone can check it against the spec line by line. It loops in Python over segments,
layers, query heads and kv-head memories, with no parallel/prefix-sum form. It is slow and is not
meant to be fast. Run it with Debian's interpreter (torch 1.13 CPU, numpy), since the `python3` on
PATH has no torch:

  /usr/bin/python3 tests/reference/infini_ref.py make-case --out DIR --seed 1 --batch 2 --seq-len 20
          [--type infini|full|sliding|xl|bswa|fam --window W --memory-blocks K --fam-length F]
      writes DIR/config.json, DIR/model.safetensors (F32 random weights),
      DIR/tokens.safetensors ("tokens" I32 [B, T+1]: inputs tokens[:, :T], targets tokens[:, 1:])
      and DIR/reference.safetensors, all float64: "logits" [B,T,V], "loss" [1], "grad.<P>" for
      every parameter P, and the stream state after the sequence: infini "state.M" [B,L,Hkv,d,d]
      and "state.z" [B,L,Hkv,d]; the other types "state.k", "state.v" [B,L,r,Hkv,d] (the raw K/V
      cache, positions T-r .. T-1), fam also "state.fam" [B,L,fam_length,D] and "fam.initial"
      [L,fam_length,D]. The C++ test loads the same checkpoint and tokens, then compares.
  /usr/bin/python3 tests/reference/infini_ref.py ppl --model DIR --input FILE --per-token OUT
      byte tokenizer, streamed one segment at a time with the state carried (batch 1); writes the
      NLL (nats) of every predicted token, one per line as %.17g, and prints a JSON summary.
  /usr/bin/python3 tests/reference/infini_ref.py selftest
      gradcheck, streaming == whole sequence, gates=-40 == plain local attention, batch == loop of
      streams, closed-form linear memory, safetensors round trips; then the section 3-4 checks of
      mechanisms_selftest.py (streaming, equivalences, receptive fields, FAM, rebasing).

A new mechanism takes one `<type>_attention(p, l, cfg, x, layer_state)` and an initial-state
function, registered in ATTENTION and INITIAL_STATE.
"""
import argparse
import json
import math
import os
import struct
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

import mechanisms_ref as mech
from mechanisms_ref import linear, rms_norm, rope, rope_tables  # noqa: F401 (section 1, shared)

MEMORY_EPS = 1e-6  # the eps in max(s(q) . z, eps), spec section 2

# ----------------------------------------------------------------------------------------------
# safetensors: 8-byte LE u64 header length N, N bytes of JSON header, raw little-endian data.

_NP_OF = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
          "I8": "i1", "U8": "u1", "BOOL": "?"}
_NAME_OF = {np.dtype(v).str: k for k, v in _NP_OF.items()}  # "<f8" -> "F64"


def read_safetensors(path):
    """-> ({name: numpy array in native byte order}, metadata dict). BF16 is widened to float32."""
    with open(path, "rb") as f:
        buf = f.read()
    if len(buf) < 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", buf[:8])
    if 8 + n > len(buf):
        raise ValueError(f"{path}: header length {n} runs past the end of the file ({len(buf)} bytes)")
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    data = memoryview(buf)[8 + n:]
    meta = header.pop("__metadata__", None) or {}
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        shape, dt = tuple(info["shape"]), info["dtype"]
        if not 0 <= begin <= end <= len(data):
            raise ValueError(f"{path}: tensor {name}: data_offsets {begin},{end} outside the data section")
        raw = data[begin:end]
        if dt == "BF16":  # bf16 is the top half of an f32
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif dt in _NP_OF:
            arr = np.frombuffer(raw, dtype=_NP_OF[dt])
        else:
            raise ValueError(f"{path}: tensor {name}: dtype {dt} not supported")
        if arr.size != int(np.prod(shape, dtype=np.int64)):
            raise ValueError(f"{path}: tensor {name}: {end - begin} bytes do not hold {dt} {list(shape)}")
        out[name] = arr.astype(arr.dtype.newbyteorder("="), copy=True).reshape(shape)
    return out, meta


def write_safetensors(path, tensors, metadata=None):
    """tensors: {name: numpy array or torch tensor}, written sorted by name, contiguous."""
    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        a = tensors[name]
        if isinstance(a, torch.Tensor):
            a = a.detach().cpu().numpy()
        a = np.ascontiguousarray(a)
        dt = _NAME_OF[a.dtype.newbyteorder("<").str]
        raw = a.astype(np.dtype(_NP_OF[dt]), copy=False).tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for c in chunks:
            f.write(c)


# ----------------------------------------------------------------------------------------------
# Config (what the model is), weights (a dict name -> tensor), stream state (separate).

@dataclass
class Config:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    rms_norm_eps: float
    rope_theta: float
    tie_word_embeddings: bool
    attention_type: str
    segment_length: int
    memory_update: str
    gate_init: float
    window: int = 0         # sliding: tokens attended, itself included
    memory_blocks: int = 0  # bswa, fam: previous blocks attended
    fam_length: int = 0     # fam: feedback-memory rows

    @staticmethod
    def from_dict(c):
        a = c.get("attention")
        if a is None:
            raise ValueError("config.json has no 'attention' block; the reference needs "
                             "attention.type, attention.segment_length (and the type's fields)")
        # required keys per type, as src/model/config.cpp requires them (infini: memory_update too,
        # which the reference has always required)
        required = {"infini": ["memory_update"], "sliding": ["window"], "bswa": ["memory_blocks"],
                    "fam": ["memory_blocks", "fam_length"]}
        for key in ["type", "segment_length"] + required.get(a.get("type"), []):
            if key not in a:
                raise ValueError(f"config.json: attention.{key} missing (no default in the spec)")
        cfg = Config(
            vocab_size=int(c["vocab_size"]), hidden_size=int(c["hidden_size"]),
            num_hidden_layers=int(c["num_hidden_layers"]),
            num_attention_heads=int(c["num_attention_heads"]),
            num_key_value_heads=int(c.get("num_key_value_heads", c["num_attention_heads"])),
            head_dim=int(c.get("head_dim", c["hidden_size"] // c["num_attention_heads"])),
            intermediate_size=int(c["intermediate_size"]),
            rms_norm_eps=float(c.get("rms_norm_eps", 1e-5)),
            rope_theta=float(c.get("rope_theta", 10000.0)),
            tie_word_embeddings=bool(c.get("tie_word_embeddings", False)),
            attention_type=a["type"], segment_length=int(a["segment_length"]),
            memory_update=a.get("memory_update", "delta"), gate_init=float(a.get("gate_init", 0.0)),
            window=int(a.get("window", 0)), memory_blocks=int(a.get("memory_blocks", 0)),
            fam_length=int(a.get("fam_length", 0)))
        cfg.validate()
        return cfg

    def validate(self):
        """The constraints of src/model/config.cpp that the reference relies on."""
        cfg = self
        if cfg.attention_type not in ATTENTION:
            raise ValueError(f"attention.type {cfg.attention_type!r}: the reference implements {list(ATTENTION)}")
        if cfg.memory_update not in ("linear", "delta"):
            raise ValueError(f"attention.memory_update {cfg.memory_update!r}: expected 'linear' or 'delta'")
        if cfg.num_attention_heads % cfg.num_key_value_heads or cfg.head_dim % 2 or cfg.segment_length < 1:
            raise ValueError("config.json: need H % Hkv == 0, an even head_dim and segment_length >= 1")
        t = cfg.attention_type
        if t == "sliding" and cfg.window < 1:
            raise ValueError(f"attention.window is {cfg.window}, must be >= 1 for type sliding")
        if t in ("bswa", "fam") and cfg.memory_blocks < 1:
            raise ValueError(f"attention.memory_blocks is {cfg.memory_blocks}, must be >= 1 for type {t}")
        if t == "fam" and not 0 <= cfg.fam_length < cfg.segment_length:
            raise ValueError(f"attention.fam_length is {cfg.fam_length}, must be >= 0 and < segment_length")

    def to_dict(self):
        return {"model_type": "infini-transformer", "vocab_size": self.vocab_size,
                "hidden_size": self.hidden_size, "num_hidden_layers": self.num_hidden_layers,
                "num_attention_heads": self.num_attention_heads,
                "num_key_value_heads": self.num_key_value_heads, "head_dim": self.head_dim,
                "intermediate_size": self.intermediate_size, "rms_norm_eps": self.rms_norm_eps,
                "rope_theta": self.rope_theta, "tie_word_embeddings": self.tie_word_embeddings,
                "attention": self.attention_dict(), "tokenizer": {"type": "byte"}}

    def attention_dict(self):
        """Only the fields the type uses, as src/model/config.cpp config_to_json writes them."""
        a = {"type": self.attention_type, "segment_length": self.segment_length}
        if self.attention_type == "infini":
            a.update(memory_update=self.memory_update, gate_init=self.gate_init)
        if self.attention_type == "sliding":
            a["window"] = self.window
        if self.attention_type in ("bswa", "fam"):
            a["memory_blocks"] = self.memory_blocks
        if self.attention_type == "fam":
            a["fam_length"] = self.fam_length
        return a


def param_shapes(cfg):
    """{name: shape} of every parameter, in HF Llama naming (spec section 5)."""
    V, D, H, G, d, Fh = (cfg.vocab_size, cfg.hidden_size, cfg.num_attention_heads,
                         cfg.num_key_value_heads, cfg.head_dim, cfg.intermediate_size)
    s = {"model.embed_tokens.weight": [V, D], "model.norm.weight": [D]}
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        s.update({p + "input_layernorm.weight": [D],
                  p + "self_attn.q_proj.weight": [H * d, D], p + "self_attn.k_proj.weight": [G * d, D],
                  p + "self_attn.v_proj.weight": [G * d, D], p + "self_attn.o_proj.weight": [D, H * d]})
        if cfg.attention_type == "infini":
            s[p + "self_attn.memory_gate"] = [H]
        s.update({p + "post_attention_layernorm.weight": [D],
                  p + "mlp.gate_proj.weight": [Fh, D], p + "mlp.up_proj.weight": [Fh, D],
                  p + "mlp.down_proj.weight": [D, Fh]})
    if not cfg.tie_word_embeddings:
        s["lm_head.weight"] = [V, D]
    if cfg.attention_type == "fam":
        s["model.fam_embeddings"] = [cfg.fam_length, D]  # random_params: std 1/sqrt(D), like E
    return s


def load_checkpoint(model_dir, dtype=torch.float64):
    """-> (Config, {name: tensor of `dtype`}). F32/BF16/F16 accepted; missing gates = gate_init."""
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = Config.from_dict(json.load(f))
    path = os.path.join(model_dir, "model.safetensors")
    raw, _ = read_safetensors(path)
    params = {}
    for name, shape in param_shapes(cfg).items():
        if name not in raw and name.endswith("self_attn.memory_gate"):
            params[name] = torch.full(shape, cfg.gate_init, dtype=dtype)
            continue
        if name not in raw:
            raise ValueError(f"{path}: tensor {name} {shape} missing")
        if list(raw[name].shape) != shape:
            raise ValueError(f"{path}: tensor {name} has shape {list(raw[name].shape)}, config wants {shape}")
        params[name] = torch.from_numpy(raw[name].astype(np.float64)).to(dtype)
    return cfg, params


def save_checkpoint(model_dir, cfg, params):
    os.makedirs(model_dir, exist_ok=True)
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump(cfg.to_dict(), f, indent=2)
    write_safetensors(os.path.join(model_dir, "model.safetensors"),
                      {k: v.detach().to(torch.float32) for k, v in params.items()})


def random_params(cfg, seed, dtype=torch.float64):
    """Random weights scaled so every activation is O(1) and the logits are not trivial."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in param_shapes(cfg).items():
        if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
            w = 1.0 + 0.1 * rng.standard_normal(shape)
        elif name.endswith("memory_gate"):
            w = rng.uniform(-3.0, 3.0, shape)
        else:  # Linear [out, in] and the embedding [V, D]: std 1/sqrt(in), O(1) logits when tied
            w = rng.standard_normal(shape) / math.sqrt(shape[1])
        out[name] = torch.tensor(w, dtype=dtype)
    return out


# ----------------------------------------------------------------------------------------------
# Building blocks (spec section 1).

# linear, rms_norm, rope_tables, rope: mechanisms_ref.py (imported above).


def sigma(x):  # s(x) = ELU(x) + 1
    return F.elu(x) + 1.0


def causal_softmax_attention(q, k, v):
    """q [B,n,d], k, v [B,n,d], already rotated; scale 1/sqrt(d) -> [B,n,d]."""
    n, d = q.shape[-2], q.shape[-1]
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)  # [B,n,n]
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    scores = scores.masked_fill(~causal, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


# ----------------------------------------------------------------------------------------------
# Infini-attention (spec section 2). Layer state: (M, z), lists over kv heads g of
# M[g] [B, d, d] and z[g] [B, d]. Tensors are never modified in place, so autograd sees the
# whole recurrence (full BPTT).

def infini_layer_state(cfg, B, dtype):
    d, G = cfg.head_dim, cfg.num_key_value_heads
    return ([torch.zeros(B, d, d, dtype=dtype) for _ in range(G)],
            [torch.zeros(B, d, dtype=dtype) for _ in range(G)])


def infini_attention(p, l, cfg, x, layer_state):
    """x [B,n,D] (after input_layernorm), one segment -> (output [B,n,D], new layer state)."""
    B, n, _ = x.shape
    H, G, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    pre = f"model.layers.{l}.self_attn."
    M, z = layer_state
    # 1. raw projections
    Q = linear(x, p[pre + "q_proj.weight"]).view(B, n, H, d)
    K = linear(x, p[pre + "k_proj.weight"]).view(B, n, G, d)
    V = linear(x, p[pre + "v_proj.weight"]).view(B, n, G, d)
    beta = p[pre + "memory_gate"]  # [H]
    cos, sin = rope_tables(n, d, cfg.rope_theta, x.dtype)
    heads = []
    for h in range(H):
        g = h // (H // G)
        q, k, v = Q[:, :, h], K[:, :, g], V[:, :, g]  # [B,n,d]
        # 2. retrieval from the memory as it was before this segment
        sq = sigma(q)
        a_mem = (sq @ M[g]) / torch.clamp(sq @ z[g].unsqueeze(-1), min=MEMORY_EPS)  # [B,n,d]
        # 3. local causal attention, RoPE positions 0..n-1
        a_dot = causal_softmax_attention(rope(q, cos, sin), rope(k, cos, sin), v)
        # 4. gate
        gate = torch.sigmoid(beta[h])
        heads.append(gate * a_mem + (1.0 - gate) * a_dot)
    # 5. output projection
    out = linear(torch.cat(heads, dim=-1), p[pre + "o_proj.weight"])  # [B,n,H*d] -> [B,n,D]
    # 6. memory update from raw K, V
    new_M, new_z = [], []
    for g in range(G):
        sk, v = sigma(K[:, :, g]), V[:, :, g]  # [B,n,d]
        if cfg.memory_update == "linear":
            new_M.append(M[g] + sk.transpose(-1, -2) @ v)
        else:  # delta: subtract what the memory already returns for these keys
            retrieved = (sk @ M[g]) / torch.clamp(sk @ z[g].unsqueeze(-1), min=MEMORY_EPS)
            new_M.append(M[g] + sk.transpose(-1, -2) @ (v - retrieved))
        new_z.append(z[g] + sk.sum(dim=1))
    return out, (new_M, new_z)


def infini_state(p, cfg, B, dtype, start=0):
    """Zero memories. Infini positions restart every segment, so `start` changes nothing."""
    return [infini_layer_state(cfg, B, dtype) for _ in range(cfg.num_hidden_layers)]


# attention.type -> attention(p, l, cfg, x, layer_state) -> (output [B,n,D], new layer state), and
# -> initial_state(p, cfg, B, dtype, start) -> [layer state for l in 0..L-1]
ATTENTION = {"infini": infini_attention}
INITIAL_STATE = {"infini": infini_state}
for _type in mech.KV_TYPES:  # spec sections 3-4, mechanisms_ref.py
    ATTENTION[_type] = mech.kv_attention
    INITIAL_STATE[_type] = mech.initial_kv_state


# ----------------------------------------------------------------------------------------------
# Decoder (spec section 1), one chunk of the stream at a time.

def initial_state(cfg, B, dtype=torch.float64, p=None, start=0):
    """Stream state at the stream's start: one entry per layer. p: the weights (fam's initial FAM
    rows are computed from them). start: the stream position of the first token (not infini)."""
    return INITIAL_STATE[cfg.attention_type](p, cfg, B, dtype, start)


def forward_segment(p, cfg, ids, state):
    """ids [B,n], state -> (logits [B,n,V], new state). infini: one segment (n <= segment_length,
    starting on a segment boundary); the other types: any chunk of the stream, n >= 1."""
    attn, eps = ATTENTION[cfg.attention_type], cfg.rms_norm_eps
    h = p["model.embed_tokens.weight"][ids]  # [B,n,D]
    new_state = []
    for l in range(cfg.num_hidden_layers):
        pre = f"model.layers.{l}."
        a, layer_state = attn(p, l, cfg, rms_norm(h, p[pre + "input_layernorm.weight"], eps), state[l])
        h = mech.mlp_residual(p, l, cfg, h + a)
        new_state.append(layer_state)
    w_head = p["model.embed_tokens.weight"] if cfg.tie_word_embeddings else p["lm_head.weight"]
    return linear(rms_norm(h, p["model.norm.weight"], eps), w_head), new_state


def forward(p, cfg, ids, state=None):
    """ids [B,T] -> (logits [B,T,V], state after the last token). infini: segments are cut from
    ids[:, 0], so a call that continues a stream (state given) must start on a segment boundary.
    The other types: the whole of ids in one call, i.e. one [T, T] mask per layer (plus FAM rows)."""
    B, T = ids.shape
    if state is None:
        state = initial_state(cfg, B, p["model.embed_tokens.weight"].dtype, p)
    if cfg.attention_type != "infini":
        return forward_segment(p, cfg, ids, state)
    logits = []
    for s in range(0, T, cfg.segment_length):
        seg_logits, state = forward_segment(p, cfg, ids[:, s:s + cfg.segment_length], state)
        logits.append(seg_logits)
    return torch.cat(logits, dim=1), state


def lm_loss(logits, targets):
    """Mean next-token cross entropy over all B*T predictions."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def stacked_state(state):
    """infini state -> (M [B,L,Hkv,d,d], z [B,L,Hkv,d])."""
    M = torch.stack([torch.stack(Ms, dim=1) for Ms, _ in state], dim=1)
    z = torch.stack([torch.stack(zs, dim=1) for _, zs in state], dim=1)
    return M, z


def state_tensors(cfg, state):
    """The stream state as named tensors: infini "state.M", "state.z"; the other types "state.k",
    "state.v" [B,L,r,Hkv,d] (raw K/V cache, stream positions pos-r .. pos-1), fam "state.fam"
    [B,L,fam_length,D] (F_l for the block holding position pos)."""
    if cfg.attention_type == "infini":
        M, z = stacked_state(state)
        return {"state.M": M, "state.z": z}
    out = {"state.k": torch.stack([s["k"] for s in state], 1), "state.v": torch.stack([s["v"] for s in state], 1)}
    if cfg.attention_type == "fam":
        out["state.fam"] = torch.stack([s["fam"] for s in state], 1)
    return out


@torch.no_grad()
def stream_nll(p, cfg, tokens):
    """tokens: 1-D LongTensor. Streams it one segment at a time (batch 1) -> NLL [T-1] of token t+1
    given 0..t. The last input of segment s predicts the first token of segment s+1."""
    T, N = tokens.numel(), cfg.segment_length
    state = initial_state(cfg, 1, p["model.embed_tokens.weight"].dtype, p)
    nll = []
    for s in range(0, T - 1, N):
        e = min(s + N, T - 1)  # inputs tokens[s:e], targets tokens[s+1:e+1]
        logits, state = forward_segment(p, cfg, tokens[None, s:e], state)
        logp = torch.log_softmax(logits[0], dim=-1)  # [n,V]
        nll.append(-logp.gather(1, tokens[s + 1:e + 1, None])[:, 0])
    return torch.cat(nll) if nll else torch.zeros(0, dtype=torch.float64)


# ----------------------------------------------------------------------------------------------
# Subcommands.

def cmd_make_case(args):
    cfg = Config(vocab_size=args.vocab, hidden_size=args.hidden, num_hidden_layers=args.layers,
                 num_attention_heads=args.heads, num_key_value_heads=args.kv_heads, head_dim=args.head_dim,
                 intermediate_size=args.ffn, rms_norm_eps=args.rms_norm_eps, rope_theta=args.rope_theta,
                 tie_word_embeddings=args.tied, attention_type=args.type, segment_length=args.segment,
                 memory_update=args.update, gate_init=0.0, window=args.window,
                 memory_blocks=args.memory_blocks, fam_length=args.fam_length)
    cfg = Config.from_dict(cfg.to_dict())  # validate; drops the fields the type does not use
    save_checkpoint(args.out, cfg, random_params(cfg, args.seed))
    rng = np.random.default_rng(args.seed + 1_000_003)
    tokens = rng.integers(0, cfg.vocab_size, size=(args.batch, args.seq_len + 1)).astype(np.int32)
    write_safetensors(os.path.join(args.out, "tokens.safetensors"), {"tokens": tokens})
    # the truth is computed from the F32 values actually written, read back through the loader
    cfg, p = load_checkpoint(args.out, torch.float64)
    for t in p.values():
        t.requires_grad_(True)
    ids = torch.from_numpy(tokens.astype(np.int64))
    logits, state = forward(p, cfg, ids[:, :-1])
    loss = lm_loss(logits, ids[:, 1:])
    loss.backward()
    out = {"logits": logits.detach(), "loss": loss.detach().reshape(1)}
    out.update({k: v.detach() for k, v in state_tensors(cfg, state).items()})
    out.update({"grad." + k: v.grad if v.grad is not None else torch.zeros_like(v) for k, v in p.items()})
    if cfg.attention_type == "fam":  # F_l(0) of every layer: the FAM prompt through the stack
        out["fam.initial"] = torch.stack([F_l[0] for F_l in mech.fam_initial_rows(p, cfg, 1)]).detach()
    write_safetensors(os.path.join(args.out, "reference.safetensors"), out,
                      {"generator": "tests/reference/infini_ref.py make-case", "seed": args.seed,
                       "dtype": "float64", "loss": repr(loss.item())})
    print(json.dumps({"out": args.out, "loss": loss.item(), "batch": args.batch, "seq_len": args.seq_len}))


def cmd_ppl(args):
    dtype = {"float64": torch.float64, "float32": torch.float32}[args.dtype]
    cfg, p = load_checkpoint(args.model, dtype)
    with open(args.input, "rb") as f:
        data = f.read()
    tokens = torch.tensor(list(data), dtype=torch.long)  # byte tokenizer: id = byte value
    if tokens.numel() < 2:
        raise ValueError(f"{args.input}: {tokens.numel()} bytes; need at least 2 to predict one")
    if int(tokens.max()) >= cfg.vocab_size:
        raise ValueError(f"{args.input}: byte {int(tokens.max())} >= vocab_size {cfg.vocab_size}")
    nll = stream_nll(p, cfg, tokens).to(torch.float64)
    with open(args.per_token, "w") as f:
        for v in nll.tolist():
            f.write("%.17g\n" % v)
    mean = nll.mean().item()
    print(json.dumps({"tokens": nll.numel(), "mean_nll": mean, "ppl": math.exp(mean),
                      "bits_per_byte": mean / math.log(2)}))


def tiny_config(update="delta", tied=False, **kw):
    c = dict(vocab_size=7, hidden_size=8, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             head_dim=4, intermediate_size=8, rms_norm_eps=1e-5, rope_theta=10000.0,
             tie_word_embeddings=tied, attention_type="infini", segment_length=3, memory_update=update,
             gate_init=0.0)
    c.update(kw)
    return Config(**c)


def plain_local_model(p, cfg, ids):
    """Independent check model: no memory, every head at once, segment-local causal attention
    through one block-diagonal mask over the whole sequence, RoPE positions t % N."""
    B, T = ids.shape
    H, G, d, N, eps = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, cfg.segment_length, cfg.rms_norm_eps
    t = torch.arange(T)
    allowed = (t[:, None] // N == t[None, :] // N) & (t[None, :] <= t[:, None])  # [T,T]
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    ang = (t % N).to(torch.float64)[:, None] * inv[None, :]
    cos, sin = torch.cat([ang.cos(), ang.cos()], -1), torch.cat([ang.sin(), ang.sin()], -1)
    rot = lambda x: x * cos + torch.cat([-x[..., d // 2:], x[..., :d // 2]], -1) * sin
    h = p["model.embed_tokens.weight"][ids]
    for l in range(cfg.num_hidden_layers):
        pre = f"model.layers.{l}."
        x = rms_norm(h, p[pre + "input_layernorm.weight"], eps)
        q = linear(x, p[pre + "self_attn.q_proj.weight"]).view(B, T, H, d).transpose(1, 2)
        k = linear(x, p[pre + "self_attn.k_proj.weight"]).view(B, T, G, d).transpose(1, 2)
        v = linear(x, p[pre + "self_attn.v_proj.weight"]).view(B, T, G, d).transpose(1, 2)
        k, v = k.repeat_interleave(H // G, dim=1), v.repeat_interleave(H // G, dim=1)
        sc = (rot(q) @ rot(k).transpose(-1, -2)) / math.sqrt(d)
        a = torch.softmax(sc.masked_fill(~allowed, float("-inf")), -1) @ v  # [B,H,T,d]
        h = h + linear(a.transpose(1, 2).reshape(B, T, H * d), p[pre + "self_attn.o_proj.weight"])
        m = rms_norm(h, p[pre + "post_attention_layernorm.weight"], eps)
        h = h + linear(F.silu(linear(m, p[pre + "mlp.gate_proj.weight"])) * linear(m, p[pre + "mlp.up_proj.weight"]),
                       p[pre + "mlp.down_proj.weight"])
    w_head = p["model.embed_tokens.weight"] if cfg.tie_word_embeddings else p["lm_head.weight"]
    return linear(rms_norm(h, p["model.norm.weight"], eps), w_head)


def cmd_selftest(args):
    import tempfile
    torch.manual_seed(0)
    results = []

    def check(name, ok, detail=""):
        results.append(bool(ok))
        print(f"{'PASS' if ok else 'FAIL'}  {name}  {detail}", flush=True)

    def maxdiff(a, b):
        return (a - b).abs().max().item()

    # (a) gradcheck of the loss (float64, GQA 4:2, T=7 in segments 3,3,1, both updates, tied and
    # untied): fast mode (random projection v^T J u) over every parameter; element by element over
    # layer 0's q/k/v and the gates for two combinations (--full: every parameter, all four, ~1 min).
    for update in ("delta", "linear"):
        for tied in (False, True):
            cfg = tiny_config(update, tied, vocab_size=5, hidden_size=4, intermediate_size=4)
            p = random_params(cfg, seed=3)
            ids = torch.randint(0, cfg.vocab_size, (2, 8))
            core = [n for n in p if "layers.0.self_attn" in n and "o_proj" not in n or n.endswith("memory_gate")]
            full = list(p) if args.full else core if update == "delta" and not tied or update == "linear" and tied else []
            for fast, names in ((True, list(p)), (False, full)):
                if not names:
                    continue
                fixed = {n: v for n, v in p.items() if n not in names}

                def fn(*ts):
                    logits, _ = forward({**fixed, **dict(zip(names, ts))}, cfg, ids[:, :-1])
                    return lm_loss(logits, ids[:, 1:])
                inputs = tuple(p[n].clone().requires_grad_(True) for n in names)
                ok = torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5, fast_mode=fast,
                                              raise_exception=False)
                check(f"gradcheck update={update} tied={tied} {'fast' if fast else 'full'}", ok,
                      f"({sum(t.numel() for t in inputs)} params)")

    # (b) streaming one segment at a time == one call; and stream_nll == cross entropy of one call
    for update in ("linear", "delta"):
        cfg = tiny_config(update, segment_length=4)
        p = random_params(cfg, seed=5)
        ids = torch.randint(0, cfg.vocab_size, (2, 15))
        whole, st_whole = forward(p, cfg, ids)
        state, parts = initial_state(cfg, 2), []
        for s in range(0, 15, 4):
            lg, state = forward_segment(p, cfg, ids[:, s:s + 4], state)
            parts.append(lg)
        Mw, zw = stacked_state(st_whole)
        Ms, zs = stacked_state(state)
        diff = max(maxdiff(torch.cat(parts, 1), whole), maxdiff(Ms, Mw), maxdiff(zs, zw))
        check(f"streaming == whole sequence update={update}", diff == 0.0, f"max|diff|={diff:.3g}")
        two_calls = torch.cat([forward(p, cfg, ids[:, :8])[0], forward(p, cfg, ids[:, 8:], forward(p, cfg, ids[:, :8])[1])[0]], 1)
        check(f"two calls on a segment boundary == one call update={update}", maxdiff(two_calls, whole) == 0.0)
        nll = stream_nll(p, cfg, ids[0])
        ce = F.cross_entropy(whole[0, :-1], ids[0, 1:], reduction="none")
        check(f"stream_nll == per-token CE update={update}", maxdiff(nll, ce) < 1e-13, f"max|diff|={maxdiff(nll, ce):.3g}")

    # (c) gates = -40: identical to plain segment-local attention; default gates: not identical
    for update in ("linear", "delta"):
        for tied in (False, True):
            cfg = tiny_config(update, tied, vocab_size=11, hidden_size=16, num_attention_heads=6,
                              num_key_value_heads=2, head_dim=8, segment_length=5)
            p = random_params(cfg, seed=7)
            ids = torch.randint(0, cfg.vocab_size, (3, 17))
            ref = plain_local_model(p, cfg, ids)
            with_memory = maxdiff(forward(p, cfg, ids)[0], ref)
            for l in range(cfg.num_hidden_layers):
                p[f"model.layers.{l}.self_attn.memory_gate"] = torch.full([6], -40.0, dtype=torch.float64)
            diff = maxdiff(forward(p, cfg, ids)[0], ref)
            check(f"gates=-40 == plain local attention update={update} tied={tied}",
                  diff < 1e-12 and with_memory > 1e-3, f"max|diff|={diff:.3g} (memory on: {with_memory:.3g})")

    # (d) a batch == a loop over single streams (logits, state, gradients)
    for update in ("linear", "delta"):
        cfg = tiny_config(update, segment_length=4)
        p = {k: v.requires_grad_(True) for k, v in random_params(cfg, seed=11).items()}
        ids = torch.randint(0, cfg.vocab_size, (3, 11))
        logits, state = forward(p, cfg, ids[:, :-1])
        grads = torch.autograd.grad(lm_loss(logits, ids[:, 1:]), list(p.values()))
        M, z = stacked_state(state)
        diff, gsum = 0.0, [torch.zeros_like(g) for g in grads]
        for b in range(3):
            lb, sb = forward(p, cfg, ids[b:b + 1, :-1])
            Mb, zb = stacked_state(sb)
            diff = max(diff, maxdiff(lb, logits[b:b + 1]), maxdiff(Mb, M[b:b + 1]), maxdiff(zb, z[b:b + 1]))
            for acc, g in zip(gsum, torch.autograd.grad(lm_loss(lb, ids[b:b + 1, 1:]), list(p.values()))):
                acc += g / 3
        gdiff = max(maxdiff(a, b) for a, b in zip(gsum, grads))
        check(f"batch == loop of streams update={update}", diff < 1e-13 and gdiff < 1e-13,
              f"values {diff:.3g}, grads {gdiff:.3g}")

    # (e) layer 0 with linear update: M = sum_t s(K_t)^T V_t, z = sum_t s(K_t) over the whole stream
    cfg = tiny_config("linear", segment_length=4)
    p = random_params(cfg, seed=13)
    ids = torch.randint(0, cfg.vocab_size, (2, 13))
    M, z = stacked_state(forward(p, cfg, ids)[1])
    x = rms_norm(p["model.embed_tokens.weight"][ids], p["model.layers.0.input_layernorm.weight"], cfg.rms_norm_eps)
    K = linear(x, p["model.layers.0.self_attn.k_proj.weight"]).view(2, 13, 2, 4)
    V = linear(x, p["model.layers.0.self_attn.v_proj.weight"]).view(2, 13, 2, 4)
    M_cf = torch.einsum("btgi,btgj->bgij", sigma(K), V)
    diff = max(maxdiff(M[:, 0], M_cf), maxdiff(z[:, 0], sigma(K).sum(1)))
    check("linear memory, layer 0 == closed form", diff < 1e-12, f"max|diff|={diff:.3g}")

    # (f) safetensors and checkpoint round trips, BF16/F16 reading, missing gates -> gate_init
    with tempfile.TemporaryDirectory() as tmp:
        f = os.path.join(tmp, "t.safetensors")
        ts = {"b": np.arange(6, dtype=np.float64).reshape(2, 3), "a": np.array([1, -2], dtype=np.int32),
              "c": np.array([0.5, -3.25], dtype=np.float16)}
        write_safetensors(f, ts, {"k": "v"})
        back, meta = read_safetensors(f)
        with open(f, "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
        ok = meta == {"k": "v"} and n % 8 == 0 and all(
            back[k].dtype == v.dtype and np.array_equal(back[k], v) for k, v in ts.items())
        check("safetensors round trip (F64, I32, F16, metadata, padding)", ok)
        bf = np.array([1.0, -2.5, 3.140625, 1e-3], dtype=np.float32)
        hdr = json.dumps({"x": {"dtype": "BF16", "shape": [4], "data_offsets": [0, 8]}}).encode()
        with open(f, "wb") as fh:
            fh.write(struct.pack("<Q", len(hdr)) + hdr + (bf.view(np.uint32) >> 16).astype("<u2").tobytes())
        x = read_safetensors(f)[0]["x"]
        trunc = ((bf.view(np.uint32) >> 16) << 16).view(np.float32)
        check("BF16 read", x.dtype == np.float32 and np.array_equal(x, trunc) and x[2] == 3.140625)
        cfg = tiny_config("delta", True)
        p = random_params(cfg, seed=17)
        save_checkpoint(tmp, cfg, p)
        cfg2, p2 = load_checkpoint(tmp)
        ok = cfg2 == cfg and p2.keys() == p.keys() and all(
            torch.equal(p2[k], p[k].to(torch.float32).to(torch.float64)) for k in p)
        check("checkpoint round trip (tied: no lm_head)", ok and "lm_head.weight" not in read_safetensors(
            os.path.join(tmp, "model.safetensors"))[0])
        raw = read_safetensors(os.path.join(tmp, "model.safetensors"))[0]
        raw = {k: v.astype(np.float16) for k, v in raw.items() if not k.endswith("memory_gate")}
        write_safetensors(os.path.join(tmp, "model.safetensors"), raw)
        cfg.gate_init = -1.5
        with open(os.path.join(tmp, "config.json"), "w") as fh:
            json.dump(cfg.to_dict(), fh)
        _, p3 = load_checkpoint(tmp)
        ok = torch.equal(p3["model.layers.1.self_attn.memory_gate"], torch.full([4], -1.5, dtype=torch.float64)) \
            and torch.equal(p3["model.norm.weight"], torch.from_numpy(raw["model.norm.weight"].astype(np.float64)))
        check("F16 checkpoint, missing gates = gate_init", ok)

    # (g)-(o): spec sections 3 and 4
    import mechanisms_selftest
    mechanisms_selftest.run(sys.modules[__name__], check)

    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    mc = sub.add_parser("make-case", help="write a checkpoint, tokens and float64 reference tensors")
    mc.add_argument("--out", required=True)
    mc.add_argument("--seed", type=int, required=True)
    mc.add_argument("--batch", type=int, required=True)
    mc.add_argument("--seq-len", type=int, required=True)
    mc.add_argument("--vocab", type=int, default=64)
    mc.add_argument("--hidden", type=int, default=32)
    mc.add_argument("--layers", type=int, default=2)
    mc.add_argument("--heads", type=int, default=4)
    mc.add_argument("--kv-heads", type=int, default=2)
    mc.add_argument("--head-dim", type=int, default=8)
    mc.add_argument("--ffn", type=int, default=48)
    mc.add_argument("--segment", type=int, default=8)
    mc.add_argument("--update", choices=["delta", "linear"], default="delta", help="infini only")
    mc.add_argument("--type", choices=list(ATTENTION), default="infini", help="attention.type")
    mc.add_argument("--window", type=int, default=0, help="sliding: attention.window")
    mc.add_argument("--memory-blocks", type=int, default=0, help="bswa, fam: attention.memory_blocks")
    mc.add_argument("--fam-length", type=int, default=0, help="fam: attention.fam_length")
    mc.add_argument("--rope-theta", type=float, default=10000.0)
    mc.add_argument("--rms-norm-eps", type=float, default=1e-5)
    tie = mc.add_mutually_exclusive_group()
    tie.add_argument("--tied", dest="tied", action="store_true")
    tie.add_argument("--untied", dest="tied", action="store_false")
    mc.set_defaults(tied=False)
    pp = sub.add_parser("ppl", help="per-token NLL of a byte file, streamed segment by segment")
    pp.add_argument("--model", required=True)
    pp.add_argument("--input", required=True)
    pp.add_argument("--per-token", required=True)
    pp.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    pp.add_argument("--threads", type=int, default=1)
    st = sub.add_parser("selftest", help="internal consistency checks")
    st.add_argument("--full", action="store_true", help="element-wise gradcheck of every parameter (slow)")
    args = ap.parse_args(argv)
    torch.set_num_threads(getattr(args, "threads", 1))  # tiny ops: one thread is fastest
    if args.cmd == "make-case":
        cmd_make_case(args)
    elif args.cmd == "ppl":
        cmd_ppl(args)
    else:
        return cmd_selftest(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
