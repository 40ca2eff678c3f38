#!/usr/bin/env python3
"""Taylor attention against torch SDPA, per sequence length.

    python benchmarks/benchmark_taylor_attention.py --device cuda --dtype float16 --seq-lens 1024,4096,8192

For each sequence length N (self-attention, B x H heads of dim d, random inputs with
score spread ~1): median time after warm-up (CUDA events on the GPU, perf_counter on the
CPU) and peak memory (CUDA) of SDPA and of Taylor attention, the relative L2 error of
Taylor against SDPA, and FLOP rates with explicit formulas:

    exact  : 4 * N^2 * d * H * B
    Taylor : 4 * R * (dv/G + 1) * N * H * G * B,   R = C(d/G + P - 1, P - 1)

A call the engine declines (e.g. unsupported_device while the library has no CUDA
backend) is reported with its reason instead of a time. Writes JSON (--json) and a PNG
of time against tokens (--plot; needs matplotlib, skipped with a message otherwise).
Quick CPU run: --device cpu --dtype float32 --seq-lens 256,512 --heads 2 --dim-head 64
"""

import argparse
import json
import sys

from _common import environment, fmt_bytes, import_package, parse_dtype, peak_memory, pick_device, time_fn


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="cuda, cpu or auto (default)")
    p.add_argument("--dtype", default="float16", help="float16, bfloat16, float32")
    p.add_argument("--seq-lens", default="1024,4096,8192", help="comma-separated token counts")
    p.add_argument("--heads", type=int, default=24)
    p.add_argument("--dim-head", type=int, default=128)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--P", type=int, default=4, help="Taylor terms")
    p.add_argument("--sub-head-blocks", type=int, default=4)
    p.add_argument("--qk-normalize", action="store_true")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write results to this JSON file")
    p.add_argument("--plot", default=None, help="write a PNG plot of time against tokens")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    ta = import_package()
    import torch

    device = pick_device(args.device)
    dtype = parse_dtype(args.dtype)
    if device.type == "cpu" and dtype == torch.float16:
        print("note: float16 on the CPU is slow for SDPA; consider --dtype float32", file=sys.stderr)
    seq_lens = [int(s) for s in args.seq_lens.split(",") if s.strip()]
    B, H, d, G, P = args.batch, args.heads, args.dim_head, args.sub_head_blocks, args.P
    params = dict(P=P, sub_head_blocks=G, qk_normalize=args.qk_normalize, min_tokens=0,
                  max_feature_dim_R=10**12, max_head_dim=1 << 20, quality_check=False)
    ok, why = ta.library_status()
    if not ok:
        print(f"warning: {why}", file=sys.stderr)
    env = environment(device)
    gen = torch.Generator(device="cpu").manual_seed(args.seed)
    results = []
    print(f"# {env.get('gpu', env['cpu'])} | torch {env['torch']} | library {env['library_version']} | "
          f"B={B} H={H} d={d} P={P} G={G} {args.dtype}")
    header = (f"{'N':>7} {'sdpa ms':>9} {'taylor ms':>10} {'speedup':>8} {'rel_err':>8} "
              f"{'sdpa TF/s':>9} {'taylor TF/s':>11} {'sdpa mem':>10} {'taylor mem':>10}  note")
    print(header)
    for N in seq_lens:
        q, k, v = (torch.randn(B, H, N, d, generator=gen).to(device=device, dtype=dtype) for _ in range(3))
        sdpa = lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v)  # noqa: E731
        ref = sdpa()
        t_sdpa = time_fn(sdpa, device, args.iters, args.warmup)
        m_sdpa = peak_memory(sdpa, device)
        out, stats = ta.taylor_attention(q, k, v, **params)
        row = {
            "N": N, "B": B, "H": H, "d": d, "P": P, "G": G, "dtype": args.dtype,
            "sdpa_ms": t_sdpa["median_ms"], "sdpa_min_ms": t_sdpa["min_ms"], "sdpa_peak_bytes": m_sdpa,
            "exact_flops": 4.0 * N * N * d * H * B,
            "taylor_ms": None, "taylor_peak_bytes": None, "rel_l2_vs_sdpa": None,
            "fallback_reason": stats.fallback_reason,
            "feature_dim": stats.feature_dim,
        }
        row["sdpa_tflops"] = row["exact_flops"] / (t_sdpa["median_ms"] * 1e-3) / 1e12
        note = ""
        if out is None:
            note = f"taylor declined: {stats.fallback_reason} {stats.message}".strip()
        else:
            taylor = lambda: ta.taylor_attention(q, k, v, **params)  # noqa: E731
            t_tay = time_fn(taylor, device, args.iters, args.warmup)
            R = stats.feature_dim
            dvs = d // G
            row.update(
                taylor_ms=t_tay["median_ms"], taylor_min_ms=t_tay["min_ms"],
                taylor_peak_bytes=peak_memory(taylor, device) if device.type == "cuda"
                else stats.workspace_bytes + out.numel() * out.element_size(),
                taylor_flops=4.0 * R * (dvs + 1) * N * H * G * B,
                rel_l2_vs_sdpa=float((out.double() - ref.double()).norm() / ref.double().norm()),
                denom_min=stats.denom_min, state_bytes=stats.state_bytes,
            )
            row["taylor_tflops"] = row["taylor_flops"] / (t_tay["median_ms"] * 1e-3) / 1e12
            if device.type == "cpu":
                note = "cpu: taylor mem = workspace + output"
        results.append(row)
        speed = (f"{row['sdpa_ms'] / row['taylor_ms']:.2f}x" if row["taylor_ms"] else "-")
        print(f"{N:>7} {row['sdpa_ms']:>9.3f} {row['taylor_ms'] or float('nan'):>10.3f} {speed:>8} "
              f"{row['rel_l2_vs_sdpa'] if row['rel_l2_vs_sdpa'] is not None else float('nan'):>8.4f} "
              f"{row['sdpa_tflops']:>9.3f} {row.get('taylor_tflops', float('nan')):>11.3f} "
              f"{fmt_bytes(m_sdpa):>10} {fmt_bytes(row['taylor_peak_bytes']):>10}  {note}")
        q = k = v = ref = out = None  # free device memory before the next size
    report = {"benchmark": "taylor_attention", "args": vars(args), "environment": env, "results": results}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)
        print(f"wrote {args.json}")
    if args.plot:
        plot(results, args, env)
    return 0


def plot(results, args, env) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as exc:  # noqa: BLE001
        print(f"skipping the plot: matplotlib is not available ({exc}); pip install matplotlib")
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ns = [r["N"] for r in results]
    ax.plot(ns, [r["sdpa_ms"] for r in results], "o-", label="torch SDPA (exact)")
    tay = [(r["N"], r["taylor_ms"]) for r in results if r["taylor_ms"] is not None]
    if tay:
        ax.plot([n for n, _ in tay], [t for _, t in tay], "s-",
                label=f"Taylor P={args.P} G={args.sub_head_blocks}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("tokens N")
    ax.set_ylabel("time per call (ms, median)")
    where = env.get("gpu", env["cpu"])
    ax.set_title(f"B={args.batch} H={args.heads} d={args.dim_head} {args.dtype} on {where}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.plot, dpi=120)
    print(f"wrote {args.plot}")


if __name__ == "__main__":
    sys.exit(main())
