"""The ctypes binding against the header and the shared library."""

import ctypes
import os
import shutil
import subprocess

import pytest

from taylor_attention import _lib, config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEADER_DIR = os.path.join(ROOT, "include")

STRUCTS = {
    "ta_tensor": _lib.TaTensor,
    "ta_token_layout": _lib.TaTokenLayout,
    "ta_attention_args": _lib.TaAttentionArgs,
    "ta_config": _lib.TaConfig,
    "ta_quality": _lib.TaQuality,
    "ta_stats": _lib.TaStats,
    "ta_memory_estimate": _lib.TaMemoryEstimate,
    "ta_workload_params": _lib.TaWorkloadParams,
}

# Constants of the header the binding repeats (name in C -> value in Python).
CONSTANTS = {
    "TA_ABI_VERSION": _lib.ABI_VERSION,
    "TA_MAX_GRIDS": _lib.TA_MAX_GRIDS,
    "TA_REASON_COUNT_": _lib.REASON_COUNT,
    "TA_REASON_WINDOW_NO_LAYOUT": 15,
    "TA_REASON_WINDOW_CROSS_ATTENTION": 16,
    "TA_REFERENCE_HYBRID_QUADRATIC": _lib.TA_REFERENCE_HYBRID_QUADRATIC,
}


def test_struct_layout_matches_header(tmp_path):
    """Every field's offset and every struct's size as the C compiler lays them out."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to read the header's layout")
    lines = ["#include <stdio.h>", "#include <stddef.h>",
             "#include <taylor_attention/taylor_attention.h>", "int main(void) {"]
    for cname, cls in STRUCTS.items():
        lines.append(f'printf("{cname} sizeof %zu\\n", sizeof({cname}));')
        for fname, _ in cls._fields_:
            lines.append(f'printf("{cname} {fname} %zu\\n", offsetof({cname}, {fname}));')
    for name in CONSTANTS:
        lines.append(f'printf("const {name} %d\\n", (int)({name}));')
    lines.append("return 0; }")
    src = tmp_path / "layout.c"
    src.write_text("\n".join(lines))
    exe = tmp_path / "layout"
    subprocess.run([cc, "-I", HEADER_DIR, str(src), "-o", str(exe)], check=True)
    seen = {}
    for line in subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.splitlines():
        cname, field, value = line.split()
        seen[(cname, field)] = int(value)
    for cname, cls in STRUCTS.items():
        assert seen[(cname, "sizeof")] == ctypes.sizeof(cls), cname
        for fname, _ in cls._fields_:
            assert seen[(cname, fname)] == getattr(cls, fname).offset, f"{cname}.{fname}"
    for name, value in CONSTANTS.items():
        assert seen[("const", name)] == value, name


def test_struct_field_lists_are_complete():
    """Field names and order of every bound struct as the header declares them (a field
    hidden in trailing padding would pass the offset test)."""
    import re

    header = open(os.path.join(HEADER_DIR, "taylor_attention", "taylor_attention.h")).read()
    header = re.sub(r"/\*.*?\*/", "", header, flags=re.S)
    for cname, cls in STRUCTS.items():
        body = re.search(r"typedef struct %s \{(.*?)\} %s;" % (cname, cname), header, re.S).group(1)
        names = []
        for decl in body.split(";"):
            decl = re.sub(r"\[[^\]]*\]", "", decl).strip()
            if decl:
                names += [re.findall(r"[A-Za-z_]\w*", part)[-1] for part in decl.split(",")]
        assert names == [f for f, _ in cls._fields_], cname


def test_struct_sizes_accepted_by_library(lib):
    cfg = lib.config_defaults()
    assert cfg.struct_size == ctypes.sizeof(_lib.TaConfig)
    stats = lib.new_stats()
    assert stats.struct_size == ctypes.sizeof(_lib.TaStats)
    lib.validate(cfg)


def test_abi_version_and_version(lib):
    assert lib.ta_abi_version() == _lib.ABI_VERSION
    assert lib.version.count(".") == 2


def test_reason_names_match_binding_table(lib):
    for code, name in _lib.REASONS.items():
        assert lib.reason_name(code) == name


def test_config_defaults_match_node_defaults(lib):
    """ta_config_defaults() and the node's defaults agree on every engine field."""
    cfg = lib.config_defaults()
    ours = config.TaylorConfig().engine_fields()
    # The one documented difference: the library leaves the hybrid off for C callers (0),
    # the node and the Python API default to a 9x9 window (4).
    assert cfg.window_radius == 0 and ours.pop("window_radius") == 4
    for name, value in ours.items():
        got = getattr(cfg, name)
        if isinstance(value, float):
            assert got == pytest.approx(value), name
        else:
            assert got == int(value), name
    assert cfg.quality_check == 1 and cfg.seed == 0


def test_node_ranges_accepted_by_library(lib):
    """The node's minimum and maximum of every engine parameter pass ta_config_validate."""
    from taylor_attention.engine import make_ta_config

    for p in config.PARAMS:
        if not p.engine or p.kind == "bool":
            continue
        for value in (p.min, p.max):
            value = int(value) if p.kind == "int" else float(value)
            cfg = make_ta_config(lib, config.TaylorConfig().replace(**{p.name: value}))
            lib.validate(cfg)


@pytest.mark.parametrize("d,P,R", [(128, 3, 8385), (128, 4, 366145), (32, 4, 6545), (64, 4, 47905),
                                   (16, 4, 969), (128, 2, 129)])
def test_feature_dim(lib, d, P, R):
    assert lib.feature_dim(d, P) == R
    assert config.feature_dim(d, P) == R


def test_tooltips_quote_correct_feature_dims():
    text = " ".join(p.tooltip for p in config.PARAMS)
    for number in ("8,385", "366,145", "6,545"):
        assert number in text
    assert "52,360" not in text and "3,876" not in text


def test_missing_library_env(no_library):
    ok, why = _lib.library_status()
    assert not ok
    assert _lib.LIB_ENV in why and "cmake" in why
    with pytest.raises(_lib.LibraryUnavailable):
        _lib.load_library()


def test_library_found_in_build_tree(lib, monkeypatch):
    monkeypatch.delenv(_lib.LIB_ENV, raising=False)
    path, _ = _lib.find_library()
    assert path is not None and os.path.isfile(path)


def test_env_var_selects_library(lib, monkeypatch):
    monkeypatch.setenv(_lib.LIB_ENV, lib.path)
    _lib.reset_library_cache()
    assert _lib.load_library().path == lib.path


def test_abi_mismatch_refused(lib, monkeypatch):
    monkeypatch.setattr(_lib, "ABI_VERSION", _lib.ABI_VERSION + 1)
    _lib.reset_library_cache()
    with pytest.raises(_lib.LibraryUnavailable, match="ABI version"):
        _lib.load_library()
    monkeypatch.undo()
    _lib.reset_library_cache()
    assert _lib.load_library().ta_abi_version() == _lib.ABI_VERSION


def test_not_a_library_refused(tmp_path, monkeypatch):
    bogus = tmp_path / "libtaylor_attention.so"
    bogus.write_text("not a shared library")
    monkeypatch.setenv(_lib.LIB_ENV, str(bogus))
    _lib.reset_library_cache()
    with pytest.raises(_lib.LibraryUnavailable, match="failed to load"):
        _lib.load_library()
    monkeypatch.delenv(_lib.LIB_ENV)
    _lib.reset_library_cache()
