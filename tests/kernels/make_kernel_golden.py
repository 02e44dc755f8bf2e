#!/usr/bin/python3
"""Writes PyTorch reference tensors for tests/kernels/*_test.cpp.

Usage: /usr/bin/python3 tests/kernels/make_kernel_golden.py OUT_DIR

Every tensor goes to OUT_DIR/<name>.bin:
    int32 dtype (0 = float32, 1 = int32, 2 = float64), int32 ndim, int64 shape[ndim],
    then the elements, row-major, little-endian.
Inputs are drawn here (fixed seed) and read back by the C++ tests, which run the kernels on them
and compare with the outputs below: forward passes with torch ops, backward passes with
torch.autograd. The C++ side knows the case names; the shapes travel in the files.
"""
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

OUT = sys.argv[1]
DTYPES = {np.float32: 0, np.int32: 1, np.float64: 2}


def save(name, tensor):
    a = tensor.detach().cpu().numpy() if isinstance(tensor, torch.Tensor) else np.asarray(tensor)
    a = np.ascontiguousarray(a)
    code = DTYPES[a.dtype.type]
    with open(os.path.join(OUT, name + ".bin"), "wb") as f:
        f.write(struct.pack("<ii", code, a.ndim))
        f.write(struct.pack("<%dq" % a.ndim, *a.shape))
        f.write(a.astype(a.dtype.newbyteorder("<")).tobytes())


def randn(*shape, scale=1.0):
    return torch.randn(*shape, dtype=torch.float32) * scale


def grad_of(fn, inputs, dout):
    """Gradients of sum(fn(*inputs) * dout) with respect to every input."""
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    out = fn(*leaves)
    out.backward(dout)
    return out.detach(), [t.grad for t in leaves]


def matmul_cases():
    # C[M,N] = op(A) op(B): "nn" A[M,K] B[K,N]; "nt" A[M,K] B[N,K]; "tn" A[K,M] B[K,N].
    for m, n, k in [(7, 13, 5), (1, 1, 1), (33, 17, 65)]:
        for layout in ["nn", "nt", "tn"]:
            a = randn(k, m) if layout[0] == "t" else randn(m, k)
            b = randn(n, k) if layout[1] == "t" else randn(k, n)
            c0 = randn(m, n)
            opa = a.t() if layout[0] == "t" else a
            opb = b.t() if layout[1] == "t" else b
            name = "matmul_%s_%dx%dx%d" % (layout, m, n, k)
            save(name + "_a", a)
            save(name + "_b", b)
            save(name + "_c0", c0)
            save(name + "_out", opa @ opb)
            save(name + "_out_acc", torch.addmm(c0, opa, opb))


def rmsnorm_cases():
    eps = 1e-5
    for rows, cols in [(5, 37), (1, 64), (3, 1)]:
        x, w, dout = randn(rows, cols, scale=2.0), 1.0 + randn(cols, scale=0.1), randn(rows, cols)

        def fn(x, w):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

        out, (dx, dw) = grad_of(fn, [x, w], dout)
        name = "rmsnorm_%dx%d" % (rows, cols)
        for key, t in dict(x=x, w=w, dout=dout, out=out, dx=dx, dw=dw).items():
            save(name + "_" + key, t)
        save(name + "_rstd", torch.rsqrt(x.pow(2).mean(-1) + eps))


def rope_cases():
    theta = 10000.0
    for rows, heads, d, first in [(6, 3, 8, 0), (5, 2, 64, 999_998)]:
        half = d // 2
        inv = theta ** (-2.0 * torch.arange(half, dtype=torch.float64) / d)  # double angles
        pos = torch.arange(first, first + rows, dtype=torch.float64)
        angle = pos[:, None] * inv[None, :]
        cos, sin = angle.cos().float(), angle.sin().float()  # [T, d/2]
        x, dout = randn(rows, heads, d), randn(rows, heads, d)

        def fn(x):
            c = torch.cat([cos, cos], -1)[:, None, :]
            s = torch.cat([sin, sin], -1)[:, None, :]
            rotated = torch.cat([-x[..., half:], x[..., :half]], -1)  # rotate_half
            return x * c + rotated * s

        out, (dx,) = grad_of(fn, [x], dout)
        name = "rope_%dx%dx%d_at%d" % (rows, heads, d, first)
        for key, t in dict(cos=cos, sin=sin, x=x, dout=dout, out=out, dx=dx).items():
            save(name + "_" + key, t)


def activation_cases():
    n = 1001
    x = torch.cat([randn(n - 6, scale=6.0), torch.tensor([0.0, -0.0, 30.0, -30.0, 100.0, -100.0])])
    dout = randn(n)
    out, (dx,) = grad_of(F.silu, [x], dout)
    for key, t in dict(x=x, dout=dout, out=out, dx=dx).items():
        save("silu_" + key, t)

    xe = torch.cat([randn(n - 4, scale=6.0), torch.tensor([0.0, -20.0, 20.0, -90.0])])
    out, (dx,) = grad_of(lambda v: F.elu(v) + 1.0, [xe], dout)
    for key, t in dict(x=xe, dout=dout, out=out, dx=dx).items():
        save("elu1_" + key, t)

    rows, ffn = 5, 13
    gate_up, dout = randn(rows, 2 * ffn, scale=3.0), randn(rows, ffn)
    out, (dgu,) = grad_of(lambda gu: F.silu(gu[:, :ffn]) * gu[:, ffn:], [gate_up], dout)
    for key, t in dict(gate_up=gate_up, dout=dout, out=out, dgate_up=dgu).items():
        save("swiglu_%dx%d_%s" % (rows, ffn, key), t)


def softmax_cases():
    for rows, cols, scale in [(4, 19, 3.0), (1, 1, 1.0), (3, 300, 5.0)]:
        x, dy = randn(rows, cols, scale=scale), randn(rows, cols)
        out, (dx,) = grad_of(lambda v: torch.softmax(v, -1), [x], dy)
        name = "softmax_%dx%d" % (rows, cols)
        for key, t in dict(x=x, dy=dy, out=out, dx=dx).items():
            save(name + "_" + key, t)


def cross_entropy_cases():
    for rows, vocab in [(6, 50), (1, 1), (3, 257)]:
        offsets = torch.tensor([1e4, -1e4, 3e4, 0.0, 1e4, -3e4][:rows] + [0.0] * (rows - 6))
        logits = randn(rows, vocab, scale=3.0) + offsets[:rows, None]
        targets = torch.randint(0, vocab, (rows,), dtype=torch.int64)
        losses = F.cross_entropy(logits, targets, reduction="none")
        _, (dlogits,) = grad_of(lambda l: F.cross_entropy(l, targets), [logits], torch.tensor(1.0))
        name = "cross_entropy_%dx%d" % (rows, vocab)
        save(name + "_logits", logits)
        save(name + "_targets", targets.to(torch.int32))
        save(name + "_losses", losses)
        save(name + "_dlogits", dlogits)  # of the mean loss: scale = 1 / rows


def embedding_cases():
    vocab, dim, rows = 11, 9, 20
    table = randn(vocab, dim)
    ids = torch.randint(0, vocab, (rows,), dtype=torch.int64)
    ids[:4] = 3  # certainly repeated
    dout = randn(rows, dim)
    out, (dtable,) = grad_of(lambda t: F.embedding(ids, t), [table], dout)
    for key, t in dict(table=table, ids=ids.to(torch.int32), dout=dout, out=out,
                       dtable=dtable).items():
        save("embedding_%dx%d_%s" % (vocab, dim, key), t)


def main():
    torch.manual_seed(20240611)
    os.makedirs(OUT, exist_ok=True)
    matmul_cases()
    rmsnorm_cases()
    rope_cases()
    activation_cases()
    softmax_cases()
    cross_entropy_cases()
    embedding_cases()
    with open(os.path.join(OUT, "DONE"), "w") as f:
        f.write("torch %s\n" % torch.__version__)


if __name__ == "__main__":
    main()
