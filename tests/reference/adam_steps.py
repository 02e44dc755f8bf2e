#!/usr/bin/python3
"""adam_steps.py: a few optimizer steps in PyTorch (float64), the reference for `infini train`.

Loads a checkpoint through infini_ref.py (the spec's model), reads a token shard
(src/data/token_shard.h: 64-byte header "INFTOKEN", version, dtype 2|4, count, vocab_size; then
the ids), and takes STEPS steps of torch.optim.AdamW on exactly the rows `infini train
--data-order sequential` reads: step s, micro-batch a of A, row b of B reads the window of T + 1
tokens starting at ((s*A + a)*B + b mod W) * T, W = (count - 1) // T; inputs its first T tokens,
targets its last T. The loss is the mean cross entropy over all A*B*T tokens with full
backpropagation through the memory. Groups as in src/train/optimizer.h: weight decay on the
projection matrices (and lm_head) only, the memory gates at lr * gate_lr_mult; gradients clipped by
torch.nn.utils.clip_grad_norm_ when --clip > 0. With --weight-decay 0 this is torch.optim.Adam:
the same bias correction and the same eps placement, denom = sqrt(v)/sqrt(1 - beta2^t) + eps.

  /usr/bin/python3 tests/reference/adam_steps.py --model DIR --shard train.tokens --batch 2 \
      --seq-len 16 --steps 3 --lr 1e-3 --out OUT
writes OUT/adam_steps.json ({"losses": [...], "grad_norms": [...]}: the loss of each step,
computed before its update, and the gradient norm before clipping) and OUT/final.safetensors
(F64 weights after the last step, the checkpoint's tensor names).
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import infini_ref as ref  # noqa: E402


def read_shard(path):
    with open(path, "rb") as f:
        buf = f.read()
    if len(buf) < 64 or buf[:8] != b"INFTOKEN":
        raise ValueError(f"{path}: not a token shard")
    version, width, count, vocab = struct.unpack("<IIQQ", buf[8:32])
    if version != 1 or width not in (2, 4):
        raise ValueError(f"{path}: version {version}, dtype {width} not supported")
    ids = np.frombuffer(buf[64:64 + count * width], dtype="<u2" if width == 2 else "<u4")
    if ids.size != count:
        raise ValueError(f"{path}: {ids.size} ids, the header says {count}")
    return ids.astype(np.int64), vocab


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--shard", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--seq-len", type=int, required=True)
    ap.add_argument("--accumulate", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--lr", type=float, required=True)
    ap.add_argument("--gate-lr-mult", type=float, default=10.0)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--clip", type=float, default=0.0)
    ap.add_argument("--beta1", type=float, default=0.9)
    ap.add_argument("--beta2", type=float, default=0.95)
    ap.add_argument("--eps", type=float, default=1e-8)
    args = ap.parse_args()
    torch.set_num_threads(1)

    cfg, p = ref.load_checkpoint(args.model, torch.float64)
    tokens, _ = read_shard(args.shard)
    B, T, A = args.batch, args.seq_len, args.accumulate
    windows = (tokens.size - 1) // T
    for t in p.values():
        t.requires_grad_(True)
    matrices = [n for n in p if n.endswith("proj.weight") or n == "lm_head.weight"]
    gates = [n for n in p if n.endswith("memory_gate")]
    others = [n for n in p if n not in matrices and n not in gates]  # norms, embeddings
    opt = torch.optim.AdamW(
        [{"params": [p[n] for n in matrices], "weight_decay": args.weight_decay},
         {"params": [p[n] for n in others], "weight_decay": 0.0},
         {"params": [p[n] for n in gates], "weight_decay": 0.0, "lr": args.lr * args.gate_lr_mult}],
        lr=args.lr, betas=(args.beta1, args.beta2), eps=args.eps)

    losses, grad_norms = [], []
    for s in range(args.steps):
        rows = []
        for i in range((s * A) * B, (s * A + A) * B):
            start = (i % windows) * T
            rows.append(tokens[start:start + T + 1])
        ids = torch.from_numpy(np.stack(rows))  # [A*B, T+1]
        opt.zero_grad()
        logits, _ = ref.forward(p, cfg, ids[:, :-1])
        loss = ref.lm_loss(logits, ids[:, 1:])
        loss.backward()
        norm = torch.sqrt(sum((t.grad.double() ** 2).sum() for t in p.values()))
        if args.clip > 0:
            torch.nn.utils.clip_grad_norm_(list(p.values()), args.clip)
        opt.step()
        losses.append(loss.item())
        grad_norms.append(norm.item())

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "adam_steps.json"), "w") as f:
        json.dump({"losses": losses, "grad_norms": grad_norms}, f)
    ref.write_safetensors(os.path.join(args.out, "final.safetensors"),
                          {n: t.detach() for n, t in p.items()})
    print(json.dumps({"losses": losses, "grad_norms": grad_norms}))


if __name__ == "__main__":
    main()
