#!/usr/bin/python3
"""Train the PyTorch baseline (../shared/baselines/torch_infini.py) with `infini train`'s recipe.

The other half of the equal wall-clock comparison (bench/equal_time.sh): the PyTorch Infini-attention
model of the baseline program, imported from its file unchanged, trained on the token shards that
`infini prepare` writes, with the recipe of `infini train` mirrored step for step
(src/train/trainer.cpp, schedule.cpp, optimizer.cpp, train_data.cpp):

  data       rows of T + 1 tokens of train.tokens, each starting at a uniformly random token in
             [0, count - T - 1] (a seeded generator; infini's is another generator, so the rows
             differ but their distribution is the same); inputs the first T, targets the last T.
  step       forward over B x T tokens (the baseline's "parallel" form: exact BPTT through the
             memory across the T / N segments), mean cross entropy, backward, stop on a NaN or
             infinite loss or gradient norm, clip to the global norm (clip / (norm + 1e-6) when
             norm > clip, as infini and torch.nn.utils.clip_grad_norm_), AdamW.
  AdamW      betas (0.9, 0.95), eps 1e-8; decoupled decay (p -= lr wd p) on matrices only (q/k/v,
             o, MLP); never norms or gates; embeddings only with --decay-embeddings. The memory
             gates beta_h get lr x --gate-lr-mult and no decay.
  schedule   step s (from 0): lr (s + 1) / warmup during the warm-up, then cosine down to min_lr
             (default lr / 10) over the run's steps, or constant.
  --steps 0 --minutes M   as `infini train --steps 0 --time-limit M`: the clock starts with the
             process (here before `import torch`); after 3 steps the time per step is the mean
             of steps 2 and 3, the steps that fit in the time left are fitted (an evaluation
             counted as eval_batches / 3 steps, one more reserved for the final one) and the
             cosine decays over them; the time limit stays a hard stop, checked after each step.
  held-out   every --eval-every steps and after the last: eval_batches x B windows of T + 1
             tokens of val.tokens, spread evenly (window i starts at (i * W // n) * T, W =
             (count - 1) // T, n = eval_batches * B), each run from an empty memory (the
             baseline's parallel form over the window == infini's segment-by-segment stream from
             a reset state); bits/byte = sum of nats / ln 2 / target bytes (bytes = tokens).
  full       at the end (unless --no-full-eval): the whole val shard streamed from its first
             token with the memory carried, 16 segments per call, as `infini ppl` does: every
             token but the first predicted, bits/byte = nats / ln 2 / (count - 1).

What is not infini's: the model is the baseline's (linear memory update, LM head tied to the
byte embedding, RMSNorm eps 1e-6, fused q/k/v) and so is its initialisation (nn.Linear's
U(-1/sqrt(fan_in), 1/sqrt(fan_in)), embedding N(0, 0.02), gates 0) unless --init infini
(N(0, 0.02), o and down projections N(0, 0.02 / sqrt(2 L)), norms 1, gates --gate-init: what
`infini train --config` does). Byte tokenizer only.

Output (--out DIR): metrics.jsonl, one line per step: step, elapsed_s (training seconds: the sum
of the steps' times, as infini's elapsed_seconds), wall_s (since the process started), tokens,
train_loss, train_bpb, lr, grad_norm, tokens_per_s, memory_gates, and val_loss / val_bpb after
an evaluation; summary.json (the final figures, also printed); model.pt with --save-model.

Usage (2 threads, the baseline's best environment, see ../shared/machine.md):
  env -u OPENBLAS_CORETYPE OMP_WAIT_POLICY=passive GLIBC_TUNABLES=glibc.malloc.hugetlb=1 \\
      ATEN_CPU_CAPABILITY=avx512 /usr/bin/python3 bench/torch_train_kjv.py \\
      --data data/kjv --out runs/torch-kjv --minutes 5 --eval-every 25
"""
import time

PROCESS_START = time.monotonic()  # before `import torch`: the wall clock of the whole command

import argparse
import importlib.util
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

STEPS_NOT_YET_FITTED = (2**63 - 1) // 4  # trainer.cpp: kStepsNotYetFitted
STEPS_TIMED_BEFORE_FITTING = 3


# ---- data: the shards of `infini prepare` (src/data/token_shard.h, docs/formats.md) -------------

def shard_open(path):
    """INFTOKEN shard -> read-only numpy array of its ids (memory-mapped), vocab size."""
    with open(path, "rb") as f:
        header = f.read(64)
    if len(header) < 64 or header[:8] != b"INFTOKEN":
        sys.exit(f"{path}: not a token shard (no INFTOKEN header); write it with `infini prepare`")
    version, dtype = np.frombuffer(header[8:16], "<u4")
    count, vocab = np.frombuffer(header[16:32], "<u8")
    if version != 1 or dtype not in (2, 4):
        sys.exit(f"{path}: shard version {version}, dtype {dtype}: expected version 1, dtype 2 or 4")
    width = "<u2" if dtype == 2 else "<u4"
    if os.path.getsize(path) != 64 + int(count) * int(dtype):
        sys.exit(f"{path}: size does not match the header's count {count}")
    return np.memmap(path, dtype=width, mode="r", offset=64, shape=(int(count),)), int(vocab)


def rows_from_starts(shard, starts, T):
    """[B] start tokens -> inputs, targets [B, T] (int64)."""
    w = np.stack([np.asarray(shard[s:s + T + 1], dtype=np.int64) for s in starts])  # [B, T + 1]
    w = torch.from_numpy(w)
    return w[:, :-1], w[:, 1:]


def eval_window_starts(count, windows, T):
    """train_data.cpp eval_window_starts: windows spread evenly over the shard."""
    available = (count - 1) // T
    return [(i * available // windows if windows <= available else i % available) * T
            for i in range(windows)]


# ---- model ------------------------------------------------------------------------------------

def load_baseline(path):
    spec = importlib.util.spec_from_file_location("torch_infini", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def init_like_infini(model, layers, gate_init):
    """model.cpp model_init_random's distributions (its generator is not torch's)."""
    out_std = 0.02 / math.sqrt(2.0 * layers)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("beta"):
                p.fill_(gate_init)
            elif p.dim() == 1:
                p.fill_(1.0)  # RMSNorm gains
            elif name.endswith("attn.o.weight") or name.endswith("mlp.w2.weight"):
                p.normal_(0.0, out_std)
            else:
                p.normal_(0.0, 0.02)


def parameter_groups(model, args):
    """optimizer.cpp adamw_create: decay on matrices only, the gates at lr x gate_lr_mult."""
    groups = {"matrix": [], "embedding": [], "norm": [], "gate": []}
    for name, p in model.named_parameters():
        if name == "emb.weight":
            groups["embedding"].append(p)  # also the tied LM head
        elif name.endswith("beta"):
            groups["gate"].append(p)
        elif p.dim() == 2:
            groups["matrix"].append(p)
        else:
            groups["norm"].append(p)
    decay = {"matrix": args.weight_decay, "embedding": args.weight_decay if args.decay_embeddings else 0.0,
             "norm": 0.0, "gate": 0.0}
    mult = {"matrix": 1.0, "embedding": 1.0, "norm": 1.0, "gate": args.gate_lr_mult}
    return [dict(params=ps, weight_decay=decay[k], lr_mult=mult[k], kind=k) for k, ps in groups.items() if ps]


def learning_rate_at(args, total_steps, step):
    """schedule.cpp learning_rate_at."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    if args.schedule == "constant":
        return args.lr
    progress = min(max((step - args.warmup) / max(1, total_steps - args.warmup), 0.0), 1.0)
    return args.min_lr + (args.lr - args.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def memory_gates(model):
    return [torch.sigmoid(b.attn.beta.detach()).double().tolist() for b in model.blocks]


# ---- evaluation -------------------------------------------------------------------------------

def evaluate(model, val, starts, B, T):
    """Mean nats per token and bits per byte over the fixed windows (trainer.cpp evaluate)."""
    total = 0.0
    with torch.inference_mode():
        for first in range(0, len(starts), B):
            inp, tgt = rows_from_starts(val, starts[first:first + B], T)
            logits, _ = model(inp)  # from an empty memory, all T / N segments
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1),
                                     reduction="sum").item()
    tokens = len(starts) * T
    return total / tokens, total / math.log(2.0) / tokens  # byte tokenizer: a token is a byte


def evaluate_streamed(model, val, seg, chunk_segments=16):
    """The whole shard from its first token, memory carried (infer/perplexity.cpp)."""
    n = len(val)
    C = chunk_segments * seg
    total, state = 0.0, None
    with torch.inference_mode():
        for c in range(0, n - 1, C):
            L = min(C, n - 1 - c)
            ids = torch.from_numpy(np.asarray(val[c:c + L + 1], dtype=np.int64))
            inp, tgt = ids[:-1], ids[1:]
            padded = -(-L // seg) * seg  # the last chunk: whole segments, the padding is causal
            if padded != L:  # future of every real token, and no later chunk reads the state
                inp = torch.cat([inp, inp.new_zeros(padded - L)])
            logits, state = model(inp[None], state)
            total += F.cross_entropy(logits[0, :L], tgt, reduction="sum").item()
    return dict(tokens=n - 1, mean_nll=total / (n - 1), bits_per_byte=total / math.log(2.0) / (n - 1))


# ---- the run ----------------------------------------------------------------------------------

def parse_args():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="directory from `infini prepare` (byte tokenizer)")
    ap.add_argument("--out", required=True, help="output directory (metrics.jsonl, summary.json)")
    ap.add_argument("--baseline", default=os.environ.get(
        "TORCH_BASELINE", os.path.join(here, "..", "..", "shared", "baselines", "torch_infini.py")))
    ap.add_argument("--minutes", type=float, default=0, help="as infini's --time-limit (0: none)")
    ap.add_argument("--steps", type=int, default=0, help="0 with --minutes: as many as fit")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--seg", type=int, default=256, help="the baseline model's segment length")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min-lr", type=float, default=-1, help="default lr / 10")
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--schedule", choices=["cosine", "constant"], default="cosine")
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--decay-embeddings", action="store_true")
    ap.add_argument("--gate-lr-mult", type=float, default=10)
    ap.add_argument("--beta1", type=float, default=0.9)
    ap.add_argument("--beta2", type=float, default=0.95)
    ap.add_argument("--eps", type=float, default=1e-8)
    ap.add_argument("--clip", type=float, default=1.0, help="0: no clipping")
    ap.add_argument("--eval-every", type=int, default=100, help="0: only at the end")
    ap.add_argument("--eval-batches", type=int, default=8)
    ap.add_argument("--no-full-eval", action="store_true", help="skip the streamed whole-val figure")
    ap.add_argument("--init", choices=["torch", "infini"], default="torch",
                    help="torch: the baseline's own initialisation; infini: infini train's distributions")
    ap.add_argument("--gate-init", type=float, default=0.0, help="with --init infini")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--save-model", action="store_true", help="write OUT/model.pt at the end")
    args = ap.parse_args()
    if args.min_lr < 0:
        args.min_lr = args.lr / 10
    if args.steps < 0 or (args.steps == 0 and args.minutes <= 0):
        ap.error("--steps must be >= 1, or 0 together with --minutes")
    if args.seq_len % args.seg:
        ap.error(f"--seq-len {args.seq_len} is not a multiple of the segment length {args.seg}")
    return args


def main():
    args = parse_args()
    since_start = lambda: time.monotonic() - PROCESS_START
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    with open(os.path.join(args.data, "dataset.json")) as f:
        dataset = json.load(f)
    tok = dataset.get("tokenizer") or {"type": "byte"}
    if (tok if isinstance(tok, str) else tok.get("type")) != "byte":
        sys.exit(f"{args.data}: tokenizer {tok}: this program trains byte-level models only")
    train, train_vocab = shard_open(os.path.join(args.data, "train.tokens"))
    val, _ = shard_open(os.path.join(args.data, "val.tokens"))
    B, T = args.batch, args.seq_len
    if train_vocab > 256 or len(train) < T + 1 or (args.eval_batches > 0 and len(val) < T + 1):
        sys.exit(f"{args.data}: shards too short for --seq-len {T} or vocabulary {train_vocab} > 256")

    baseline = load_baseline(args.baseline)
    cfg = dict(vocab=256, d=256, layers=4, heads=4, ff=1024, seg=args.seg, mlp="swiglu")
    model = baseline.InfiniLM(**cfg)
    if args.init == "infini":
        init_like_infini(model, cfg["layers"], args.gate_init)
    params = [p for p in model.parameters()]
    groups = parameter_groups(model, args)
    opt = torch.optim.AdamW(groups, lr=args.lr, betas=(args.beta1, args.beta2), eps=args.eps)
    rng = np.random.Generator(np.random.PCG64(args.seed ^ 0xda7a0de7))
    eval_starts = eval_window_starts(len(val), args.eval_batches * B, T) if args.eval_batches > 0 else []

    os.makedirs(args.out, exist_ok=True)
    resolved = dict(options=vars(args), model=cfg, parameters=sum(p.numel() for p in params),
                    torch=torch.__version__, threads=torch.get_num_threads(),
                    data=dict(dir=args.data, train_tokens=len(train), val_tokens=len(val)),
                    env={k: os.environ.get(k) for k in ["OPENBLAS_CORETYPE", "OMP_NUM_THREADS", "OMP_WAIT_POLICY",
                                                        "GLIBC_TUNABLES", "ATEN_CPU_CAPABILITY"]})
    with open(os.path.join(args.out, "train_config.json"), "w") as f:
        json.dump(resolved, f, indent=1)
    print(f"torch_train_kjv -> {args.out}: baseline InfiniLM {resolved['parameters'] / 1e6:.2f}M parameters "
          f"({args.init} init), {B} x {T} tokens/step, lr {args.lr} -> {args.min_lr} {args.schedule}, "
          f"warmup {args.warmup}, "
          + (f"as many steps as fit in {args.minutes} minutes" if args.steps == 0 else f"{args.steps} steps")
          + f", eval every {args.eval_every} steps on {len(eval_starts)} windows, {torch.get_num_threads()} threads",
          flush=True)

    fit = args.steps == 0
    total_steps = STEPS_NOT_YET_FITTED if fit else args.steps
    metrics = open(os.path.join(args.out, "metrics.jsonl"), "w")
    step, tokens_seen, train_seconds, after_first, val_loss, val_bpb = 0, 0, 0.0, 0.0, None, None
    last = False
    while not last:
        # ---- one optimizer step (trainer.cpp train_step) ----
        t0 = time.monotonic()
        lr = learning_rate_at(args, total_steps, step)
        for g in opt.param_groups:
            g["lr"] = lr * g["lr_mult"]
        inp, tgt = rows_from_starts(train, rng.integers(0, len(train) - T, size=B), T)
        logits, _ = model(inp)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            sys.exit(f"step {step + 1}: the loss is {loss_value}: training stopped (lower --lr)")
        if args.clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(params, args.clip).item()
        else:
            grad_norm = torch.norm(torch.stack([p.grad.norm() for p in params])).item()
        if not math.isfinite(grad_norm):
            sys.exit(f"step {step + 1}: the gradient norm is {grad_norm}: training stopped (lower --lr)")
        opt.step()
        seconds = time.monotonic() - t0
        step += 1
        tokens_seen += B * T
        train_seconds += seconds

        if fit and step == 1:
            after_first = train_seconds
        if fit and step == STEPS_TIMED_BEFORE_FITTING:  # trainer.cpp fit_steps
            per_step_train = (train_seconds - after_first) / (STEPS_TIMED_BEFORE_FITTING - 1)
            eval_seconds = args.eval_batches * per_step_train / 3.0
            per_step = per_step_train + (eval_seconds / args.eval_every
                                         if args.eval_every > 0 and args.eval_batches > 0 else 0)
            left = args.minutes * 60 - since_start() - eval_seconds
            total_steps = step + max(1, int(left / per_step))
            fit = False
            print(f"fitting the time limit: {total_steps} steps", flush=True)

        time_up = args.minutes > 0 and since_start() >= args.minutes * 60
        last = step >= total_steps or time_up
        record = dict(step=step, elapsed_s=train_seconds, wall_s=since_start(), tokens=tokens_seen,
                      train_loss=loss_value, train_bpb=loss_value / math.log(2.0), lr=lr, grad_norm=grad_norm,
                      tokens_per_s=B * T / seconds, memory_gates=memory_gates(model))
        if eval_starts and ((args.eval_every > 0 and step % args.eval_every == 0) or last):
            val_loss, val_bpb = evaluate(model, val, eval_starts, B, T)
            record.update(val_loss=val_loss, val_bpb=val_bpb)
            print(f"step {step}: val loss {val_loss:.6g}, {val_bpb:.6g} bits/byte", flush=True)
        metrics.write(json.dumps(record) + "\n")
        metrics.flush()
        if step % args.log_every == 0 or step == 1 or last:
            print(f"step {step}/{'?' if fit else total_steps}  loss {loss_value:.4f}  "
                  f"bpb {loss_value / math.log(2.0):.4f}  lr {lr:.3g}  grad_norm {grad_norm:.3g}  "
                  f"{B * T / seconds:.0f} tok/s  elapsed {since_start():.0f}s", flush=True)
        if time_up and step < total_steps:
            print(f"time limit of {args.minutes} minutes reached at step {step} of {total_steps}", flush=True)
    metrics.close()

    summary = dict(program="pytorch", steps=step, fitted_steps=total_steps, tokens=tokens_seen,
                   train_seconds=train_seconds, wall_seconds=since_start(),
                   tokens_per_s=tokens_seen / train_seconds, final_train_loss=loss_value,
                   val_loss=val_loss, val_bpb=val_bpb, eval_windows=len(eval_starts), eval_tokens=len(eval_starts) * T,
                   memory_gates=memory_gates(model), init=args.init, parameters=resolved["parameters"])
    if args.save_model:
        torch.save(model.state_dict(), os.path.join(args.out, "model.pt"))
    if not args.no_full_eval:
        t0 = time.monotonic()
        summary["full_val_streamed"] = evaluate_streamed(model, val, args.seg)
        summary["full_val_streamed"]["seconds"] = time.monotonic() - t0
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps({k: v for k, v in summary.items() if k != "memory_gates"}, indent=1))


if __name__ == "__main__":
    main()
