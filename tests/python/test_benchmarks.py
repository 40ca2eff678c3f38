"""Both benchmarks run on the CPU with small flags and write their JSON."""

import json
import os
import subprocess
import sys

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
    report, _ = run("benchmark_flux_forward.py", "--device", "cpu", "--dtype", "float32",
                    "--height", "128", "--width", "128", "--hidden", "128", "--heads", "2",
                    "--depth", "1", "--depth-single", "1", "--txt-tokens", "16",
                    "--context-dim", "32", "--vec-dim", "16", "--iters", "1", "--warmup", "0",
                    "--min-tokens", "0", tmp_path=tmp_path)
    assert report["image_tokens"] == 64 and report["attention_calls_per_step"] == 2
    s = report["override_summary"]
    assert s["by_backend"].get("taylor", 0) >= 2 and not s["by_reason"]
    assert 0 < report["rel_l2_taylor_vs_standard"] < 1
