#!/usr/bin/python3
"""Checks that bench/torch_train_kjv.py measures held-out bits/byte exactly as infini does.

Loads one infini checkpoint whose architecture is the PyTorch baseline's (memory_update "linear",
tie_word_embeddings true, rms_norm_eps 1e-6, bytes, d 256, 4 layers, 4 x 64 heads, SwiGLU 1024)
into the baseline's InfiniLM (../shared/baselines/torch_infini.py) and compares, on the same
weights:
  1. the trainer's held-out evaluation: `infini train --init CKPT ... --steps 1 --eval-every 1`
     with a learning rate of 1e-12 (the one step moves no weight measurably) against
     torch_train_kjv.evaluate on the same windows;
  2. the whole val shard streamed: `infini ppl` on its text against
     torch_train_kjv.evaluate_streamed.
Both should agree to float32 rounding (~1e-5 relative). Exit status 1 when they do not.

Usage:
  /usr/bin/python3 bench/check_eval_match.py --checkpoint DIR --data DIR [--infini build/release/infini]
"""
import argparse
import json
import math
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_train_kjv as ttk  # noqa: E402


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            sys.exit(f"{path}: {name} is {info['dtype']}, expected F32")
        b, e = info["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(data[b:e], dtype="<f4").copy()).view(info["shape"])
    return out


def torch_model_from_checkpoint(baseline, ckpt):
    with open(os.path.join(ckpt, "config.json")) as f:
        c = json.load(f)
    a = c["attention"]
    want = dict(vocab_size=256, hidden_size=256, num_hidden_layers=4, num_attention_heads=4, head_dim=64,
                intermediate_size=1024)
    wrong = {k: c.get(k) for k, v in want.items() if c.get(k) != v}
    if wrong or a.get("type") != "infini" or a.get("memory_update") != "linear" or not c.get("tie_word_embeddings") \
            or a.get("segment_length") != 256 or c.get("num_key_value_heads", 4) != 4:
        sys.exit(f"{ckpt}: not the baseline's architecture (linear memory, tied head, 4 x 64 heads ...): {wrong}")
    if abs(c.get("rms_norm_eps", 1e-5) - 1e-6) > 1e-12:
        print(f"warning: rms_norm_eps {c.get('rms_norm_eps')} (the baseline uses 1e-6)")
    w = read_safetensors(os.path.join(ckpt, "model.safetensors"))
    m = baseline.InfiniLM(vocab=256, d=256, layers=4, heads=4, ff=1024, seg=256, mlp="swiglu")
    sd = {"emb.weight": w["model.embed_tokens.weight"], "nf.weight": w["model.norm.weight"]}
    for i in range(4):
        p = f"model.layers.{i}."
        sd[f"blocks.{i}.n1.weight"] = w[p + "input_layernorm.weight"]
        sd[f"blocks.{i}.n2.weight"] = w[p + "post_attention_layernorm.weight"]
        sd[f"blocks.{i}.attn.qkv.weight"] = torch.cat([w[p + f"self_attn.{x}_proj.weight"] for x in "qkv"])
        sd[f"blocks.{i}.attn.o.weight"] = w[p + "self_attn.o_proj.weight"]
        sd[f"blocks.{i}.attn.beta"] = w[p + "self_attn.memory_gate"]
        sd[f"blocks.{i}.mlp.w13.weight"] = torch.cat([w[p + "mlp.gate_proj.weight"], w[p + "mlp.up_proj.weight"]])
        sd[f"blocks.{i}.mlp.w2.weight"] = w[p + "mlp.down_proj.weight"]
    m.load_state_dict(sd, strict=True)
    return m


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--infini", default=os.path.join(here, "..", "build", "release", "infini"))
    ap.add_argument("--baseline", default=os.path.join(here, "..", "..", "shared", "baselines", "torch_infini.py"))
    ap.add_argument("--eval-batches", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=2048)
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = torch_model_from_checkpoint(ttk.load_baseline(args.baseline), args.checkpoint)
    val, _ = ttk.shard_open(os.path.join(args.data, "val.tokens"))
    B, T = args.batch, args.seq_len
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        # 1. the trainer's evaluation after one step of lr 1e-12
        run = os.path.join(tmp, "run")
        subprocess.run([args.infini, "train", "--init", args.checkpoint, "--data", args.data, "--out", run,
                        "--steps", "1", "--batch", str(B), "--seq-len", str(T), "--lr", "1e-12", "--warmup", "0",
                        "--schedule", "constant", "--weight-decay", "0", "--gate-lr-mult", "1", "--clip", "0",
                        "--eval-every", "1", "--eval-batches", str(args.eval_batches), "--save-every", "0",
                        "--sample-tokens", "0", "--threads", "2"], check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(run, "metrics.jsonl")) as f:
            rec = [json.loads(l) for l in f][-1]
        starts = ttk.eval_window_starts(len(val), args.eval_batches * B, T)
        t_loss, t_bpb = ttk.evaluate(model, val, starts, B, T)
        rel = abs(t_bpb - rec["val_bits_per_byte"]) / rec["val_bits_per_byte"]
        print(f"trainer evaluation ({len(starts)} windows of {T} tokens): infini {rec['val_bits_per_byte']:.7f} "
              f"bits/byte, torch_train_kjv {t_bpb:.7f}, relative difference {rel:.2e}")
        ok &= rel < 1e-4
        # 2. the whole val shard streamed
        text = os.path.join(tmp, "val.txt")
        np.asarray(val, dtype=np.uint8).tofile(text)
        out = subprocess.run([args.infini, "ppl", "--model", args.checkpoint, "--input", text, "--json",
                              "--threads", "2"], check=True, capture_output=True, text=True).stdout
        i_full = json.loads(out)
        t_full = ttk.evaluate_streamed(model, val, 256)
        rel = abs(t_full["bits_per_byte"] - i_full["bits_per_byte"]) / i_full["bits_per_byte"]
        print(f"whole val shard streamed ({t_full['tokens']} tokens predicted; infini {i_full['tokens']}): infini "
              f"{i_full['bits_per_byte']:.7f} bits/byte, torch_train_kjv {t_full['bits_per_byte']:.7f}, "
              f"relative difference {rel:.2e}")
        ok &= rel < 1e-4 and t_full["tokens"] == i_full["tokens"]
    print("MATCH" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
