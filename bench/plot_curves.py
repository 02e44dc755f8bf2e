#!/usr/bin/python3
"""Table, CSV and SVG of an equal wall-clock run (bench/equal_time.sh): infini against PyTorch.

Reads infini's RUN/metrics.jsonl (src/train/trainer.cpp: elapsed_seconds, bits_per_byte,
val_bits_per_byte) and bench/torch_train_kjv.py's OUT/metrics.jsonl and summary.json (elapsed_s,
train_bpb, val_bpb), optionally `infini ppl --json` of the whole val text, and writes into --out:
  PREFIX_heldout.csv   program, step, elapsed_s, tokens, val_bpb: every held-out evaluation
  PREFIX_train.csv     program, step, elapsed_s, tokens, train_bpb: every step
  PREFIX.svg           both curves against training seconds (a hand-written SVG, no matplotlib)
  PREFIX.md            the markdown table, also printed
elapsed_s is training time (the sum of the steps' times, evaluations excluded), the same
definition on both sides; the wall-clock budget itself (evaluations and start-up included) is
what --time-limit / --minutes enforce.
"""
import argparse
import csv
import json
import math
import os

COLORS = {"infini": "#1f77b4", "PyTorch": "#d62728"}


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def load_infini(run):
    rows = read_jsonl(os.path.join(run, "metrics.jsonl"))
    train = [(r["step"], r["elapsed_seconds"], r["tokens"], r["bits_per_byte"]) for r in rows]
    held = [(r["step"], r["elapsed_seconds"], r["tokens"], r["val_bits_per_byte"]) for r in rows
            if "val_bits_per_byte" in r]
    return train, held


def load_torch(out):
    rows = read_jsonl(os.path.join(out, "metrics.jsonl"))
    train = [(r["step"], r["elapsed_s"], r["tokens"], r["train_bpb"]) for r in rows]
    held = [(r["step"], r["elapsed_s"], r["tokens"], r["val_bpb"]) for r in rows if "val_bpb" in r]
    return train, held


def smooth(ys, k=9):
    """Centred moving mean of k points (fewer at the ends)."""
    h = k // 2
    return [sum(ys[max(0, i - h):i + h + 1]) / len(ys[max(0, i - h):i + h + 1]) for i in range(len(ys))]


def nice_step(span, target=6):
    raw = span / target
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * mag >= raw:
            return m * mag
    return 10 * mag


def write_svg(path, curves, title):
    """curves: {name: (train [(step, s, tokens, bpb)], held [(...)])}."""
    W, H, left, right, top, bottom = 760, 480, 70, 20, 62, 55
    pw, ph = W - left - right, H - top - bottom
    xmax = max(max(t[1] for t in tr) for tr, _ in curves.values())
    held_vals = [h[3] for _, he in curves.values() for h in he]
    train_tail = [t[3] for tr, _ in curves.values() for t in tr[len(tr) // 10:]]
    ymin = min(held_vals + train_tail)
    ymax = max(held_vals) if held_vals else max(train_tail)
    pad = 0.08 * max(ymax - ymin, 0.1)
    ymin, ymax = ymin - pad, ymax + pad
    xstep, ystep = nice_step(xmax), nice_step(ymax - ymin)
    X = lambda x: left + pw * x / xmax
    Y = lambda y: top + ph * (1 - (y - ymin) / (ymax - ymin))
    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
         'font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<defs><clipPath id="plot"><rect x="{left}" y="{top}" width="{pw}" height="{ph}"/></clipPath></defs>',
         f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="14">{title}</text>']
    x = 0.0
    while x <= xmax + 1e-9:
        s.append(f'<line x1="{X(x):.1f}" y1="{top}" x2="{X(x):.1f}" y2="{top + ph}" stroke="#eee"/>')
        s.append(f'<text x="{X(x):.1f}" y="{top + ph + 16}" text-anchor="middle">{x:g}</text>')
        x += xstep
    y = math.ceil(ymin / ystep) * ystep
    while y <= ymax + 1e-9:
        s.append(f'<line x1="{left}" y1="{Y(y):.1f}" x2="{left + pw}" y2="{Y(y):.1f}" stroke="#eee"/>')
        s.append(f'<text x="{left - 6}" y="{Y(y) + 4:.1f}" text-anchor="end">{y:.4g}</text>')
        y += ystep
    s.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>')
    s.append(f'<text x="{left + pw / 2}" y="{H - 14}" text-anchor="middle">training seconds '
             '(sum of step times; evaluations excluded)</text>')
    s.append(f'<text x="16" y="{top + ph / 2}" text-anchor="middle" '
             f'transform="rotate(-90 16 {top + ph / 2})">bits per byte</text>')
    for name, (train, held) in curves.items():
        c = COLORS.get(name, "#555")
        pts = " ".join(f"{X(t[1]):.1f},{Y(v):.1f}" for t, v in zip(train, smooth([t[3] for t in train])))
        s.append(f'<polyline clip-path="url(#plot)" points="{pts}" fill="none" stroke="{c}" '
                 'stroke-opacity="0.35" stroke-width="1"/>')
        pts = " ".join(f"{X(h[1]):.1f},{Y(h[3]):.1f}" for h in held)
        s.append(f'<polyline clip-path="url(#plot)" points="{pts}" fill="none" stroke="{c}" stroke-width="2.2"/>')
        for h in held:
            s.append(f'<circle cx="{X(h[1]):.1f}" cy="{Y(h[3]):.1f}" r="3" fill="{c}"/>')
    lx, ly = left, 44  # legend: one row between the title and the plot
    for name in curves:
        c = COLORS.get(name, "#555")
        s.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 22}" y2="{ly}" stroke="{c}" stroke-width="2.2"/>')
        s.append(f'<text x="{lx + 28}" y="{ly + 4}">{name} held-out</text>')
        s.append(f'<line x1="{lx + 135}" y1="{ly}" x2="{lx + 157}" y2="{ly}" stroke="{c}" stroke-opacity="0.35"/>')
        s.append(f'<text x="{lx + 163}" y="{ly + 4}">{name} training (mean of 9)</text>')
        lx += 330
    s.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(s) + "\n")


def fmt(v, digits=4):
    return "n/a" if v is None else f"{v:.{digits}f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--infini-run", required=True)
    ap.add_argument("--torch-run", required=True)
    ap.add_argument("--infini-full", help="`infini ppl --json` output on the val text")
    ap.add_argument("--infini-wall", type=float, help="wall seconds of the infini train command")
    ap.add_argument("--torch-wall", type=float, help="default: summary.json's, start to final evaluation")
    ap.add_argument("--infini-model", default="configs/infini-base.json")
    ap.add_argument("--torch-model", default="torch_infini.py InfiniLM (linear memory, tied head), torch init")
    ap.add_argument("--minutes", type=float, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--prefix", default=None, help="file name prefix (default equal_time_<M>min)")
    args = ap.parse_args()
    prefix = args.prefix or f"equal_time_{args.minutes:g}min"
    os.makedirs(args.out, exist_ok=True)

    curves = {"infini": load_infini(args.infini_run), "PyTorch": load_torch(args.torch_run)}
    with open(os.path.join(args.torch_run, "summary.json")) as f:
        tsum = json.load(f)
    ifull = None
    if args.infini_full:
        with open(args.infini_full) as f:
            ifull = json.load(f)["bits_per_byte"]
    tfull = tsum.get("full_val_streamed", {}).get("bits_per_byte")

    with open(os.path.join(args.out, prefix + "_heldout.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["program", "step", "elapsed_s", "tokens", "val_bpb"])
        for name, (_, held) in curves.items():
            for h in held:
                w.writerow([name, h[0], f"{h[1]:.3f}", h[2], f"{h[3]:.6f}"])
    with open(os.path.join(args.out, prefix + "_train.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["program", "step", "elapsed_s", "tokens", "train_bpb"])
        for name, (train, _) in curves.items():
            for t in train:
                w.writerow([name, t[0], f"{t[1]:.3f}", t[2], f"{t[3]:.6f}"])
    write_svg(os.path.join(args.out, prefix + ".svg"), curves,
              f"KJV, {args.minutes:g} min each, 2 threads: held-out bits/byte")

    def col(name):
        train, held = curves[name]
        last = train[-1]
        return dict(bpb=held[-1][3] if held else None, steps=last[0], tokens=last[2], seconds=last[1],
                    rate=last[2] / last[1], evals=len(held))
    i, t = col("infini"), col("PyTorch")
    wall = lambda v: "n/a" if v is None else f"{v:.0f}"
    torch_wall = args.torch_wall if args.torch_wall is not None else tsum.get("wall_seconds")
    lines = [
        f"| {args.minutes:g} min each, same KJV split | infini | PyTorch baseline |",
        "|---|---:|---:|",
        f"| model | {args.infini_model} | {args.torch_model} |",
        f"| held-out bits/byte at the end (32 windows x 2,048 tokens, memory reset per window) | "
        f"**{fmt(i['bpb'])}** | **{fmt(t['bpb'])}** |",
        f"| whole val shard streamed, memory carried (`infini ppl`) | {fmt(ifull)} | {fmt(tfull)} |",
        f"| optimizer steps | {i['steps']} | {t['steps']} |",
        f"| tokens seen | {i['tokens']:,} | {t['tokens']:,} |",
        f"| training tokens/s (tokens / training seconds) | {i['rate']:,.0f} | {t['rate']:,.0f} |",
        f"| training seconds (steps only) | {i['seconds']:.0f} | {t['seconds']:.0f} |",
        f"| held-out evaluations | {i['evals']} | {t['evals']} |",
        f"| wall seconds, start to final evaluation (infini: the train command, checkpoint and sample "
        f"included) | {wall(args.infini_wall)} | {wall(torch_wall)} |",
    ]
    table = "\n".join(lines)
    with open(os.path.join(args.out, prefix + ".md"), "w") as f:
        f.write(table + "\n")
    print(table)
    print(f"\nwrote {args.out}/{prefix}.svg, {prefix}_heldout.csv, {prefix}_train.csv, {prefix}.md")


if __name__ == "__main__":
    main()
