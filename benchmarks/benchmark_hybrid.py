#!/usr/bin/env python3
"""The local-exact hybrid: accuracy on a Flux-like synthetic workload, and speed at Flux sizes.

    python benchmarks/benchmark_hybrid.py --device cuda --json hybrid.json
    python benchmarks/benchmark_hybrid.py --device cpu --quick          # CI-sized

(a) Accuracy. The library's generator (ta_workload_generate, default settings: spatially
smooth content, RMSNorm'd q and k, Flux's 3-axis RoPE) gives q, k, v for a layout of text
tokens + an image grid (default 256 + 64x64, d=128, 4 heads). Each method's output is
compared with exact softmax attention computed in fp64 by torch, as the relative L2 error
||o - o_exact|| / ||o_exact|| over all heads: plain Taylor for each --P, the hybrid at each
--radii (text keys and text queries exact) for each --P, and the uniform average (every
key weighted equally, the error of knowing nothing). Taylor runs on --device in
--accuracy-dtype.

(b) Speed (on CUDA; on the CPU only with --quick or explicit --speed-layouts). For each
layout (default the Flux shapes 1024^2 = 256 + 64x64, 2048^2 = 256 + 128x128,
4096^2 = 256 + 256x256), B=1, H=24, d=128, bf16, RMSNorm'd random inputs: torch SDPA,
plain Taylor and the hybrid at --speed-radius, medians after warm-up (CUDA events on the
GPU), the ratio hybrid / plain and the speedup of each against SDPA. FLOPs by formula:

    exact  : 4 * N^2 * d * H * B
    Taylor : 4 * R * (dv/G + 1) * N * H * G * B,   R = C(d/G + P - 1, P - 1)
    window : (2 d/G + 4 dv/G) per exactly weighted (query, key) pair (its score, its exact
             term and the subtracted Taylor term), pairs from ta_stats.window_exact_pairs

Writes JSON (--json) and prints both tables.
"""

import argparse
import json
import sys

from _common import environment, import_package, parse_dtype, peak_memory, pick_device, time_fn

FLUX_LAYOUTS = "256+64x64,256+128x128,256+256x256"


def parse_layout(text):
    """"256+64x64[+32x32...]" -> (text_tokens, [(h, w), ...])."""
    parts = text.strip().split("+")
    try:
        grids = [tuple(int(v) for v in p.lower().split("x")) for p in parts[1:]]
        if any(len(g) != 2 for g in grids):
            raise ValueError
        return int(parts[0]), grids
    except ValueError:
        raise SystemExit(f"bad layout {text!r}: use TEXT+HxW[+HxW...], e.g. 256+64x64") from None


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="cuda, cpu or auto (default)")
    p.add_argument("--quick", action="store_true",
                   help="CI-sized defaults: accuracy 16+24x24, d=64, 2 heads, radii 1,2,4; speed "
                        "16+16x16 and 16+24x24, 2 heads, d=32, 2 iterations (explicit options win)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write results to this JSON file")
    a = p.add_argument_group("accuracy")
    a.add_argument("--skip-accuracy", action="store_true")
    a.add_argument("--accuracy-layout", default=None, help="default 256+64x64")
    a.add_argument("--accuracy-heads", type=int, default=None, help="default 4")
    a.add_argument("--head-dim", type=int, default=None, help="default 128")
    a.add_argument("--accuracy-dtype", default="float32", help="dtype of the Taylor / hybrid runs")
    a.add_argument("--P", default="3,4", help="Taylor terms to compare (comma-separated)")
    a.add_argument("--sub-head-blocks", type=int, default=1, help="G of the accuracy runs (1 = full heads)")
    a.add_argument("--radii", default=None, help="hybrid window radii (comma-separated; default 1,2,4,8)")
    s = p.add_argument_group("speed")
    s.add_argument("--skip-speed", action="store_true")
    s.add_argument("--speed-layouts", default=None, help=f"comma-separated layouts (default {FLUX_LAYOUTS})")
    s.add_argument("--heads", type=int, default=None, help="default 24")
    s.add_argument("--speed-head-dim", type=int, default=None, help="default 128")
    s.add_argument("--speed-dtype", default="bfloat16")
    s.add_argument("--speed-P", type=int, default=4, help="Taylor terms (node default 4)")
    s.add_argument("--speed-sub-head-blocks", type=int, default=4, help="G (node default 4)")
    s.add_argument("--speed-radius", type=int, default=4, help="hybrid window radius (node default 4)")
    s.add_argument("--iters", type=int, default=None, help="default 10")
    s.add_argument("--warmup", type=int, default=None, help="default 3")
    args = p.parse_args(argv)
    full = dict(accuracy_layout="256+64x64", accuracy_heads=4, head_dim=128, radii="1,2,4,8",
                speed_layouts=None, heads=24, speed_head_dim=128, iters=10, warmup=3)
    quick = dict(accuracy_layout="16+24x24", accuracy_heads=2, head_dim=64, radii="1,2,4",
                 speed_layouts="16+16x16,16+24x24", heads=2, speed_head_dim=32, iters=2, warmup=1)
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def ints(text):
    return [int(v) for v in text.split(",") if v.strip()]


# ------------------------------------------------------------------ (a) accuracy
def accuracy(args, ta, torch, device):
    text, grids = parse_layout(args.accuracy_layout)
    layout = ta.TokenLayout(text, grids)
    if not ta.workload_available():
        return {"skipped": "the library has no ta_workload_generate (rebuild it)"}
    H, d, G = args.accuracy_heads, args.head_dim, args.sub_head_blocks
    q, k, v = ta.generate_workload(batch=1, heads=H, layout=layout, head_dim=d, dtype=torch.float64,
                                   seed=args.seed)
    exact = torch.cat([torch.nn.functional.scaled_dot_product_attention(q[:, h:h + 1], k[:, h:h + 1],
                                                                        v[:, h:h + 1]) for h in range(H)], dim=1)
    scores = (q[0, 0] @ k[0, 0].T) * d ** -0.5
    score_std = float(scores.std())
    norm = float(exact.norm())

    def err(out):
        return float((out.double().cpu() - exact).norm() / norm)

    rows = [{"method": "uniform average", "P": None, "radius": None,
             "rel_l2": err(v.mean(dim=2, keepdim=True).expand_as(exact))}]
    dtype = parse_dtype(args.accuracy_dtype)
    qd, kd, vd = (t.to(device, dtype) for t in (q, k, v))
    # fallback_on_negative off: an even P can make a few Taylor denominators <= eps, which the
    # node would answer with standard attention; here the row is kept (clamped) and counted
    common = dict(sub_head_blocks=G, min_tokens=0, max_feature_dim_R=10**12, max_head_dim=1 << 20,
                  quality_check=False, window_text_keys=True, window_text_queries=True,
                  fallback_on_negative=False)
    for P in ints(args.P):
        for radius in [0] + ints(args.radii):
            out, stats = ta.taylor_attention(qd, kd, vd, layout=layout if radius else None, P=P,
                                             window_radius=radius, **common)
            row = {"method": "plain Taylor" if radius == 0 else f"hybrid r={radius}", "P": P, "G": G,
                   "radius": radius, "rel_l2": err(out) if out is not None else None,
                   "fallback_reason": stats.fallback_reason, "window_active": stats.window_active,
                   "window_reason": stats.window_reason, "backend": stats.backend,
                   "exact_pairs_per_query": stats.window_exact_pairs / (H * G * layout.tokens),
                   "denom_le_eps": stats.denom_le_eps, "denom_min": stats.denom_min,
                   "time_ms": stats.time_total_ms}
            rows.append(row)
    return {"layout": layout.describe(), "tokens": layout.tokens, "heads": H, "head_dim": d,
            "dtype": args.accuracy_dtype, "score_std_head0": score_std, "rows": rows}


def print_accuracy(acc):
    if "skipped" in acc:
        print(f"# accuracy skipped: {acc['skipped']}")
        return
    print(f"# accuracy: {acc['layout']} (N={acc['tokens']}), {acc['heads']} heads, d={acc['head_dim']}, "
          f"Taylor in {acc['dtype']}, score std {acc['score_std_head0']:.2f}; rel. L2 error vs exact (fp64)")
    print(f"{'method':<16} {'P':>2} {'rel_err':>8} {'exact keys/query':>17}  note")
    for r in acc["rows"]:
        note = ""
        if r.get("fallback_reason", "none") != "none":
            note = f"declined: {r['fallback_reason']}"
        elif r["radius"] and not r["window_active"]:
            note = f"window not applied ({r['window_reason']}, {r['backend']})"
        elif r.get("denom_le_eps"):
            note = f"{r['denom_le_eps']} denominators <= eps (clamped; the node would fall back)"
        err = f"{r['rel_l2']:.4f}" if r["rel_l2"] is not None else "-"
        pairs = f"{r['exact_pairs_per_query']:.0f}" if r.get("radius") else "-"
        print(f"{r['method']:<16} {r['P'] or '-':>2} {err:>8} {pairs:>17}  {note}")


# ------------------------------------------------------------------ (b) speed
def speed(args, ta, torch, device):
    if args.speed_layouts is None and device.type != "cuda":
        return {"skipped": "speed runs on CUDA (use --quick or --speed-layouts for a CPU run)"}
    layouts = [parse_layout(t) for t in (args.speed_layouts or FLUX_LAYOUTS).split(",")]
    dtype = parse_dtype(args.speed_dtype)
    if device.type == "cpu" and dtype in (torch.float16, torch.bfloat16):
        dtype = torch.float32  # 16-bit SDPA on the CPU measures nothing useful
    B, H, d = 1, args.heads, args.speed_head_dim
    P, G, radius = args.speed_P, args.speed_sub_head_blocks, args.speed_radius
    R = ta.feature_dim(d // G, P)
    common = dict(P=P, sub_head_blocks=G, min_tokens=0, max_feature_dim_R=10**12, max_head_dim=1 << 20,
                  quality_check=False)
    gen = torch.Generator(device="cpu").manual_seed(args.seed)
    rows = []
    for text, grids in layouts:
        layout = ta.TokenLayout(text, grids)
        N = layout.tokens
        q, k, v = (torch.randn(B, H, N, d, generator=gen) for _ in range(3))
        q, k = (t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True)) for t in (q, k))  # QK-RMSNorm like Flux
        q, k, v = (t.to(device, dtype) for t in (q, k, v))
        sdpa = lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v)  # noqa: E731
        ref = sdpa()
        t_sdpa = time_fn(sdpa, device, args.iters, args.warmup)
        row = {"layout": layout.describe(), "N": N, "B": B, "H": H, "d": d, "P": P, "G": G,
               "radius": radius, "dtype": str(dtype).replace("torch.", ""),
               "sdpa_ms": t_sdpa["median_ms"], "sdpa_peak_bytes": peak_memory(sdpa, device),
               "exact_flops": 4.0 * N * N * d * H * B,
               "taylor_flops": 4.0 * R * (d // G + 1) * N * H * G * B, "feature_dim": R}
        for name, r, lay in (("plain", 0, None), ("hybrid", radius, layout)):
            out, stats = ta.taylor_attention(q, k, v, layout=lay, window_radius=r, **common)
            row[f"{name}_fallback_reason"] = stats.fallback_reason
            if out is None:
                row[f"{name}_ms"] = None
                continue
            call = lambda lay=lay, r=r: ta.taylor_attention(q, k, v, layout=lay, window_radius=r, **common)  # noqa: E731
            timing = time_fn(call, device, args.iters, args.warmup)
            row[f"{name}_ms"] = timing["median_ms"]
            row[f"{name}_peak_bytes"] = peak_memory(call, device)
            row[f"{name}_rel_l2_vs_sdpa"] = float((out.double() - ref.double()).norm() / ref.double().norm())
            row[f"{name}_speedup_vs_sdpa"] = t_sdpa["median_ms"] / timing["median_ms"]
            if name == "hybrid":
                row["window_active"] = stats.window_active
                row["window_reason"] = stats.window_reason
                row["window_exact_pairs"] = stats.window_exact_pairs
                row["window_flops"] = (2.0 * (d // G) + 4.0 * (d // G)) * stats.window_exact_pairs
                row["time_window_ms"] = stats.time_window_ms
        if row.get("plain_ms") and row.get("hybrid_ms"):
            row["hybrid_over_plain"] = row["hybrid_ms"] / row["plain_ms"]
        rows.append(row)
        q = k = v = ref = out = None  # free device memory before the next size
    return {"rows": rows}


def print_speed(sp, env):
    if "skipped" in sp:
        print(f"# speed skipped: {sp['skipped']}")
        return
    if not sp["rows"]:
        return
    r0 = sp["rows"][0]
    print(f"# speed: {env.get('gpu', env['cpu'])}, B={r0['B']} H={r0['H']} d={r0['d']} {r0['dtype']}, "
          f"P={r0['P']} G={r0['G']}, hybrid r={r0['radius']}; medians in ms")
    print(f"{'layout':<22} {'N':>7} {'sdpa':>9} {'plain':>9} {'hybrid':>9} {'hyb/plain':>9} "
          f"{'plain x':>8} {'hybrid x':>8}  note")
    for r in sp["rows"]:
        def ms(key):
            return f"{r[key]:.3f}" if r.get(key) else "-"

        def x(key):
            return f"{r[key]:.2f}x" if r.get(key) else "-"

        note = []
        for name in ("plain", "hybrid"):
            if r.get(f"{name}_fallback_reason", "none") != "none":
                note.append(f"{name} declined: {r[name + '_fallback_reason']}")
        if r.get("hybrid_ms") and not r.get("window_active"):
            note.append(f"window not applied ({r.get('window_reason')})")
        print(f"{r['layout']:<22} {r['N']:>7} {ms('sdpa_ms'):>9} {ms('plain_ms'):>9} {ms('hybrid_ms'):>9} "
              f"{r['hybrid_over_plain'] if r.get('hybrid_over_plain') else float('nan'):>9.3f} "
              f"{x('plain_speedup_vs_sdpa'):>8} {x('hybrid_speedup_vs_sdpa'):>8}  {'; '.join(note)}")


def main(argv=None) -> int:
    args = parse_args(argv)
    ta = import_package()
    import torch

    device = pick_device(args.device)
    ok, why = ta.library_status()
    if not ok:
        raise SystemExit(f"taylor-attention library unavailable: {why}")
    env = environment(device)
    print(f"# {env.get('gpu', env['cpu'])} | torch {env['torch']} | library {env['library_version']} | "
          f"commit {env.get('commit')}")
    report = {"benchmark": "hybrid", "args": vars(args), "environment": env}
    if not args.skip_accuracy:
        report["accuracy"] = accuracy(args, ta, torch, device)
        print_accuracy(report["accuracy"])
    if not args.skip_speed:
        report["speed"] = speed(args, ta, torch, device)
        print_speed(report["speed"], env)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2, default=str)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
