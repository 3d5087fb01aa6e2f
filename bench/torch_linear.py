#!/usr/bin/env python3
"""The PyTorch peer for linear attention on CPU: the chunked Lightning-Attention-2 form written with torch
ops (what a user without a CPU kernel would run: the public Lightning Attention / FLA kernels are GPU-only),
timed the way `attnkit bench` times ak_la_forward.

Per (batch, head), block B, lambda = exp(log_decay[h]), state S [d][e] (fp32):
    O_b = ((Q_b K_b^T) * M) V_b + diag(lambda^(i+1)) Q_b S      M[i][j] = lambda^(i-j) for j <= i
    S   = lambda^L S + (diag(lambda^(L-1-j)) K_b)^T V_b
batched over (batch, head) with torch.matmul; the whole sequence, one call. Also checks the result against
a float64 recurrence on a short prefix (max abs error printed).

usage: bench/torch_linear.py [--threads N] [--reps R] [--T 1024,4096,...] [--H 8] [--d 128] [--block 64]
                             [--dtype bf16|f32]
prints one JSON object per line: T, H, d, dtype, block, threads, median_ms, us_per_token, check_err.
"""
import argparse
import json
import math
import statistics
import time

import torch


def official_log_decay(H):
    """-slope_h * (1 + 1e-5): the ALiBi slopes of the official code (one layer)."""
    def slopes(n):
        return [2.0 ** (-8.0 * (i + 1) / n) for i in range(n)]
    P = 1 << int(math.floor(math.log2(H)))
    s = slopes(P)
    if P < H:
        s += slopes(2 * P)[0::2][: H - P]
    return torch.tensor([-x * (1.0 + 1e-5) for x in s], dtype=torch.float32)


def chunked(q, k, v, log_decay, block):
    """q, k [B][H][T][d], v [B][H][T][e] (any float dtype) -> o [B][H][T][e] in q's dtype; fp32 math."""
    Bn, H, T, d = q.shape
    e = v.shape[-1]
    q, k, v = q.float(), k.float(), v.float()
    ld = log_decay.view(1, H, 1, 1).float()
    idx = torch.arange(block, dtype=torch.float32)
    diff = idx.view(-1, 1) - idx.view(1, -1)
    mask = torch.where(diff >= 0, torch.exp(ld * diff.clamp(min=0)), torch.zeros(()))  # [1][H][B][B]
    qdec = torch.exp(ld * (idx + 1).view(1, 1, -1, 1))                                 # lambda^(i+1)
    S = torch.zeros(Bn, H, d, e)
    out = torch.empty(Bn, H, T, e)
    for b0 in range(0, T, block):
        L = min(block, T - b0)
        qb, kb, vb = q[:, :, b0:b0 + L], k[:, :, b0:b0 + L], v[:, :, b0:b0 + L]
        sc = torch.matmul(qb, kb.transpose(-1, -2)) * mask[..., :L, :L]
        ob = torch.matmul(sc, vb) + qdec[:, :, :L] * torch.matmul(qb, S)
        kdec = torch.exp(ld * (L - 1 - idx[:L]).view(1, 1, -1, 1))
        S = torch.exp(ld * L) * S + torch.matmul((kb * kdec).transpose(-1, -2), vb)
        out[:, :, b0:b0 + L] = ob
    return out


def recurrent64(q, k, v, log_decay, n):
    q, k, v = q[:, :, :n].double(), k[:, :, :n].double(), v[:, :, :n].double()
    Bn, H, _, d = q.shape
    lam = torch.exp(log_decay.double()).view(1, H, 1, 1)
    S = torch.zeros(Bn, H, d, v.shape[-1], dtype=torch.float64)
    out = []
    for t in range(n):
        S = lam * S + k[:, :, t].unsqueeze(-1) * v[:, :, t].unsqueeze(-2)
        out.append(torch.matmul(q[:, :, t].unsqueeze(-2), S).squeeze(-2))
    return torch.stack(out, dim=2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--T", default="1024,4096,16384")
    ap.add_argument("--H", type=int, default=8)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--block", type=int, default=64)
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "f32"])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dt = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    ld = official_log_decay(a.H)
    for T in [int(x) for x in a.T.split(",")]:
        g = torch.Generator().manual_seed(T)
        q = (torch.rand(1, a.H, T, a.d, generator=g) * 2 - 1).to(dt)
        k = (torch.rand(1, a.H, T, a.d, generator=g) * 2 - 1).to(dt)
        v = (torch.rand(1, a.H, T, a.d, generator=g) * 2 - 1).to(dt)
        o = chunked(q, k, v, ld, a.block)  # warm-up
        n = min(T, 300)
        err = (o[:, :, :n].double() - recurrent64(q, k, v, ld, n)).abs().max().item()
        times = []
        for _ in range(a.reps):
            t0 = time.perf_counter()
            o = chunked(q, k, v, ld, a.block).to(dt)
            times.append((time.perf_counter() - t0) * 1e3)
        med = statistics.median(times)
        print(json.dumps({"peer": "torch_chunked_la2", "torch": torch.__version__, "T": T, "H": a.H, "d": a.d,
                          "dtype": a.dtype, "block": a.block, "threads": a.threads, "median_ms": round(med, 3),
                          "us_per_token": round(med * 1e3 / T, 3), "check_err": err}), flush=True)


if __name__ == "__main__":
    main()
