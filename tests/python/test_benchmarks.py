"""Both benchmarks run on the CPU with small flags and write their JSON."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(script, *args, tmp_path):
    out = tmp_path / "result.json"
    res = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", script), *args, "--json", str(out)],
                         capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(out.read_text()), res.stdout


def test_attention_benchmark_cpu(lib, tmp_path):
    report, stdout = run("benchmark_taylor_attention.py", "--device", "cpu", "--dtype", "float32",
                         "--seq-lens", "128,256", "--heads", "2", "--dim-head", "32", "--iters", "2",
                         "--warmup", "1", "--plot", str(tmp_path / "plot.png"), tmp_path=tmp_path)
    rows = report["results"]
    assert [r["N"] for r in rows] == [128, 256]
    for r in rows:
        assert r["fallback_reason"] == "none"
        assert r["taylor_ms"] > 0 and r["sdpa_ms"] > 0
        assert 0 < r["rel_l2_vs_sdpa"] < 2
        assert r["feature_dim"] == 165  # d=32, G=4: slices of 8, P=4
        assert r["taylor_flops"] == 4 * 165 * (8 + 1) * r["N"] * 2 * 4
        assert r["exact_flops"] == 4 * r["N"] ** 2 * 32 * 2
    assert report["environment"]["library_version"]
    assert os.path.exists(tmp_path / "plot.png") or "skipping the plot" in stdout


def test_flux_benchmark_cpu(lib, tmp_path):
    report, stdout = run("benchmark_flux_forward.py", "--device", "cpu", "--dtype", "float32",
                         "--height", "128", "--width", "136", "--hidden", "128", "--heads", "2",
                         "--depth", "1", "--depth-single", "1", "--txt-tokens", "16",
                         "--context-dim", "32", "--vec-dim", "16", "--iters", "1", "--warmup", "0",
                         "--min-tokens", "0", "--window", "1,2", tmp_path=tmp_path)
    # 128x136 pixels -> a 16x17 latent -> 8x9 tokens after padding to the patch
    assert report["image_tokens"] == 72 and report["attention_calls_per_step"] == 2
    s = report["override_summary"]
    assert s["by_backend"].get("taylor", 0) >= 2 and not s["by_reason"]
    assert 0 < report["rel_l2_taylor_vs_standard"] < 1
    variants = {v["name"]: v for v in report["variants"]}
    assert list(variants) == ["taylor", "hybrid r=1", "hybrid r=2"]
    assert variants["taylor"]["override_summary"]["window_calls"] == 0
    for name in ("hybrid r=1", "hybrid r=2"):
        v = variants[name]
        # the layout was found through the node's model-call wrapper on every call
        summary = v["override_summary"]
        assert summary["window_calls"] == summary["calls"] >= 2 and not summary["window_off"]
        assert v["step_ms"] > 0 and 0 < v["rel_l2_vs_standard"] < 1
    assert "hybrid r=2" in stdout


def test_hybrid_benchmark_cpu_quick(lib, tmp_path):
    report, stdout = run("benchmark_hybrid.py", "--device", "cpu", "--quick", tmp_path=tmp_path)
    rows = report["speed"]["rows"]
    assert [r["N"] for r in rows] == [16 + 256, 16 + 576]
    for r in rows:
        assert r["sdpa_ms"] > 0 and r["plain_ms"] > 0 and r["hybrid_ms"] > 0
        assert r["window_active"] and r["plain_fallback_reason"] == "none"
        assert r["hybrid_over_plain"] == r["hybrid_ms"] / r["plain_ms"]
        assert r["taylor_flops"] == 4 * 165 * (8 + 1) * r["N"] * 2 * 4  # d=32, G=4, P=4: R=165
        assert r["window_exact_pairs"] > 0
    acc = report["accuracy"]
    if not lib.has_workload:
        assert "ta_workload_generate" in acc["skipped"]
        pytest.skip("accuracy part needs ta_workload_generate")
    errors = {(r["method"], r["P"]): r["rel_l2"] for r in acc["rows"]}
    assert set(errors) == {("uniform average", None)} | {(m, P) for P in (3, 4) for m in
                                                         ("plain Taylor", "hybrid r=1", "hybrid r=2", "hybrid r=4")}
    assert errors[("plain Taylor", 3)] < errors[("uniform average", None)]
    for P in (3, 4):  # (plain P=4 may have clamped denominators: then its error is huge)
        assert errors[("hybrid r=2", P)] < errors[("plain Taylor", P)]
        assert errors[("hybrid r=2", P)] < errors[("uniform average", None)]
    assert all(r["window_active"] for r in acc["rows"] if r.get("radius"))
    assert "rel. L2 error vs exact" in stdout
