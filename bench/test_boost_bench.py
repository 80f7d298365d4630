"""``bench/boost.py`` and ``bench/boost_<library>.py`` exercised once at small sizes, so the
benchmark code cannot rot: every implementation of a kernel case gives the same numbers,
and every training case trains.  Nothing is timed."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import numpy as np
import pytest

HERE = pathlib.Path(__file__).resolve().parent


def _boost():
    """bench/boost.py, loaded by path (bench/ is not a package); its ``_load`` loads the
    other benchmark modules the same way."""
    key = "fastloss_bench_boost"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, HERE / "boost.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[key] = mod
        spec.loader.exec_module(mod)
    return sys.modules[key]


def _load(name):
    return _boost() if name == "boost" else _boost()._load(name)


def test_kernel_cases_agree():
    pytest.importorskip("sklearn")
    boost = _load("boost")
    for case, impls in boost.kernel_cases(n=3000, K=4):
        ref = None
        for impl, fn in impls.items():
            g, h = fn()
            g, h = np.array(g, dtype=np.float64), np.array(h, dtype=np.float64)
            if ref is None:
                ref = g, h
                continue
            np.testing.assert_allclose(g, ref[0], rtol=2e-5, atol=2e-6, err_msg=f"{case} {impl}")
            np.testing.assert_allclose(h, ref[1], rtol=2e-5, atol=2e-6, err_msg=f"{case} {impl}")


@pytest.mark.parametrize("lib", ["xgboost", "lightgbm", "catboost"])
def test_training_cases_train(lib):
    pytest.importorskip(lib)
    mod = _load(f"boost_{lib}")
    for _case, impls in mod.cases(n=600, n_features=5, rounds=3, threads=1):
        assert set(impls) == {"builtin", "fastloss", "numpy"}
        for fn in impls.values():
            assert fn() is not None


def test_report_writes_markdown(tmp_path):
    boost = _load("boost")
    r = {"median_s": 1e-3, "min_s": 1e-3}
    meta = {"machine": {"cpu": "x", "logical_cpus": 2}, "fastloss": "0", "git": "g",
            "versions": {"numpy": "2"}, "threading_layer": "omp", "foreign_cores": 0.0,
            "command": "c"}
    boost.write_report(tmp_path / "B.md", meta,
                       {"k": {"fastloss": r, "fastloss 1 thread": r, "numpy": r, "sklearn": r}},
                       {"t": {"builtin": r, "fastloss": r, "numpy": r}})
    text = (tmp_path / "B.md").read_text()
    assert "| k |" in text and "| t |" in text and "(1.00×)" in text


def test_main_runs_and_writes_both_files(tmp_path, capsys):
    pytest.importorskip("sklearn")
    _load("boost").main(["--quick", "--skip-training", "-o", str(tmp_path)])
    assert "## `fl.grad_hess` against NumPy and scikit-learn" in (tmp_path / "BOOST.md").read_text()
    assert (tmp_path / "boost.json").stat().st_size > 0
    capsys.readouterr()
