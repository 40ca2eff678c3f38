"""pytest setup: the source package (python/) and the ComfyUI stand-ins (standins/)
first on sys.path, fixtures for the library and for resetting shared state.

The library is found as the package finds it (TAYLOR_ATTENTION_LIB, next to the
package, build/*/src). Tests that need it fail when it is missing, unless
TA_ALLOW_MISSING_LIBRARY=1, which turns them into skips."""

import logging
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
for path in (HERE, os.path.join(HERE, "standins"), os.path.join(ROOT, "python")):
    if path not in sys.path:
        sys.path.insert(0, path)

import torch  # noqa: E402

import comfy.model_management as fake_mm  # noqa: E402  (the stand-in)
import taylor_attention  # noqa: E402,F401  (imported first from python/)
from taylor_attention import _lib, override  # noqa: E402

LONG = os.environ.get("RUN_LONG_TESTS", "") not in ("", "0")


def pytest_configure(config):
    config.addinivalue_line("markers", "long: 1024- and 4096-token tests (RUN_LONG_TESTS=1)")


def pytest_collection_modifyitems(config, items):
    if LONG:
        return
    skip = pytest.mark.skip(reason="long test: set RUN_LONG_TESTS=1")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def lib():
    ok, why = _lib.library_status()
    if not ok:
        if os.environ.get("TA_ALLOW_MISSING_LIBRARY", "") not in ("", "0"):
            pytest.skip(why)
        pytest.fail(f"the taylor-attention library is required for this test: {why}")
    return _lib.load_library()


@pytest.fixture(autouse=True)
def _reset_state(monkeypatch):
    """Each test starts with the real library search, an empty stand-in memory log and the
    stand-in model_management importable, and the logger at DEBUG."""
    fake_mm.reset()
    override.reset_model_management_cache()
    logging.getLogger("taylor_attention").setLevel(logging.DEBUG)
    yield
    override.reset_model_management_cache()
    if _lib._cached is None:  # a test changed the search: search again next time
        _lib.reset_library_cache()


@pytest.fixture
def no_library(monkeypatch, tmp_path):
    """The library is missing: TAYLOR_ATTENTION_LIB names a file that does not exist."""
    monkeypatch.setenv(_lib.LIB_ENV, str(tmp_path / "missing" / "libtaylor_attention.so"))
    _lib.reset_library_cache()
    yield
    monkeypatch.delenv(_lib.LIB_ENV, raising=False)
    _lib.reset_library_cache()


def pytest_report_header(config):
    ok, why = _lib.library_status()
    return [f"taylor-attention library: {why if ok else 'MISSING: ' + why}",
            f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}"]
