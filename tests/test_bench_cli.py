"""``fastloss bench``: the whole pipeline at a tiny size scale, the peers' numbers, a
missing peer, the README table.  No timing is asserted (SPEC section 6)."""

from __future__ import annotations

import importlib.util
import json
import statistics

import numpy as np
import pytest

import fastloss as fl
from fastloss import _bench
from fastloss._bench import cases, derive, peers
from fastloss.cli import main

SCALE = 0.002  # below 0.1: two rounds, tiny copy array (a smoke run, not a measurement)
MISSING = "fastloss_test_no_such_module"  # an import that fails


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One end-to-end run through the command line, JAX's import made to fail (it is
    also the slowest peer to warm up)."""
    out = tmp_path_factory.mktemp("bench")
    mp = pytest.MonkeyPatch()
    mp.setitem(peers.MODULES, "jax", MISSING)
    try:
        assert main(["bench", "--scale", str(SCALE), "-o", str(out)]) == 0
    finally:
        mp.undo()
    return out


def test_report_has_every_loss_every_peer_and_the_footnotes(report):
    text = (report / "REPORT.md").read_text(encoding="utf-8")
    for name in fl.LOSSES:
        assert f"| `{name}` |" in text, name
    header = [line for line in text.splitlines() if line.startswith("| loss | size |")]
    assert header
    for col in ("fastloss", "`out=`", "in place", "NumPy", "PyTorch", "JAX", "vs NumPy",
                "vs PyTorch", "vs JAX", "% of copy", "1→2 threads"):
        assert col in header[0], col
    assert "JAX **not installed**" in text
    assert "| not installed |" in text  # the JAX cells
    for note in ("[^m]:", "[^method]:", "[^peers]:", "[^bw]:"):
        assert f"\n{note}" in text, note
    command = text.split("Command: `", 1)[1].split("`", 1)[0]
    assert command.startswith("fastloss bench") and "--scale 0.002" in command
    assert "## Goals" in text and "`cross_entropy` large: ≥ 14× PyTorch" in text
    assert "— : not timed at this size, or the library has no such loss" in text
    assert "PyTorch has no such loss" in text  # e.g. hinge_loss: a decision, written down


def test_plots_and_json(report):
    data = json.loads((report / "results.json").read_text(encoding="utf-8"))
    if importlib.util.find_spec("matplotlib") is not None:
        for name in ("time_vs_batch.png", "bandwidth.png", "speedup.png"):
            assert (report / name).stat().st_size > 1000, name
            assert f"]({name})" in (report / "REPORT.md").read_text(encoding="utf-8")
    assert {r["loss"] for r in data["results"]} == set(fl.LOSSES)
    assert {r["role"] for r in data["results"]} >= {"latency", "medium", "large", "sweep"}
    for r in data["results"]:
        assert r["impls"]["fastloss"]["samples_s"], r["id"]
        assert r["impls"]["numpy"]["samples_s"], r["id"]
        if r["role"] == "large":
            assert {"fastloss_out", "fastloss_inplace", "fastloss_1t"} <= set(r["impls"])
            assert len(r["copy_GBps"]) == r["impls"]["fastloss_out"]["rounds"]
            assert r["derived"]["bw_inplace"] is not None
    assert data["meta"]["peers"]["jax"]["available"] is False
    assert data["meta"]["bandwidth"]["samples_GBps"]
    assert all(g["indicative_only"] for g in data["goals"])  # a scaled run


def test_readme_table_and_render(report, tmp_path, capsys):
    assert main(["bench", "--readme-table", str(report / "results.json")]) == 0
    table = capsys.readouterr().out
    assert table.startswith("| loss | size | fastloss | NumPy | PyTorch | JAX |")
    assert "| `cross_entropy` | 32×10 (per call) |" in table
    assert "| `mse_loss` |" in table and "fastloss bench --readme-table" in table
    every = _bench.readme_table(report / "results.json", "large")
    assert sum(line.startswith("| `") for line in every.splitlines()) == len(fl.LOSSES)
    assert main(["bench", "--render", str(report / "results.json"), "-o", str(tmp_path)]) == 0
    assert "| `kl_div_with_logits` |" in (tmp_path / "REPORT.md").read_text(encoding="utf-8")


def _cases_once():
    seen, out = set(), []
    for c in cases.case_list(False, SCALE) + cases.case_list(True, SCALE):
        if (c.id, c.shape) not in seen:
            seen.add((c.id, c.shape))
            out.append(c)
    return out


def _close(res, ref, what):
    loss, g = peers.as_numpy(res)
    ref_loss, ref_g = ref
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-4, err_msg=f"{what}: loss")
    assert g.shape == ref_g.shape and g.dtype == np.float32, what
    np.testing.assert_allclose(g, ref_g, rtol=1e-4, atol=1e-5 * float(np.abs(ref_g).max()),
                               err_msg=f"{what}: gradient")


@pytest.mark.parametrize("peer", ["numpy", "torch"])
def test_peers_compute_what_fastloss_computes(peer):
    """Every case: the NumPy (and PyTorch) peer's loss and gradient equal fastloss's."""
    p = peers.Peers(load=("torch",))
    for case in _cases_once():
        arrays = case.make()
        ref = peers.as_numpy(peers.make_call(case, "fastloss", arrays, p).fn())
        call = peers.make_call(case, peer, arrays, p)
        if call is None:
            assert peer == "torch" and case.spec.torch is None, case.id
            continue
        _close(call.fn(), ref, f"{peer} {case.id}")


def test_jax_computes_what_fastloss_computes():
    pytest.importorskip("jax")
    p = peers.Peers(load=("jax",))
    for case in cases.case_list(False, SCALE):
        if case.role != "large":  # one size per loss: each shape is a JAX compile
            continue
        arrays = case.make()
        ref = peers.as_numpy(peers.make_call(case, "fastloss", arrays, p).fn())
        _close(peers.make_call(case, "jax", arrays, p).fn(), ref, f"jax {case.id}")


def test_in_place_and_out_calls_give_the_default_result():
    p = peers.Peers(load=())
    for case in cases.case_list(False, SCALE, losses=["cross_entropy", "mse_loss"]):
        arrays = case.make()
        ref = peers.as_numpy(peers.make_call(case, "fastloss", arrays, p).fn())
        for impl in ("fastloss_out", "fastloss_inplace", "fastloss_1t"):
            call = peers.make_call(case, impl, arrays, p)
            if call.prepare is not None:
                call.prepare()
            _close(call.fn(), ref, f"{impl} {case.id}")
        for a, b in zip(arrays, case.make(), strict=True):  # the input is never modified
            np.testing.assert_array_equal(a, b)


def test_a_missing_peer_is_reported_not_installed(tmp_path):
    modules = {"torch": MISSING, "jax": MISSING, "matplotlib": MISSING}
    data = _bench.run(tmp_path, scale=SCALE, select=["mse_loss-1024", "hinge_loss-33554"],
                      modules=modules, log=lambda msg: None)
    text = (tmp_path / "REPORT.md").read_text(encoding="utf-8")
    assert "PyTorch **not installed**; JAX **not installed**" in text
    assert "No plots: matplotlib not installed" in text
    assert not list(tmp_path.glob("*.png"))
    row = next(line for line in text.splitlines() if line.startswith("| `mse_loss` | 1024"))
    assert row.count("not installed") == 4  # PyTorch, JAX and their ratios
    assert data["meta"]["peers"]["torch"]["reason"].startswith("not installed")
    assert "fastloss" in data["results"][0]["impls"]


def test_bad_arguments_are_usage_errors(tmp_path, capsys):
    assert main(["bench", "--threads", "0", "-o", str(tmp_path)]) == 2
    assert main(["bench", "--scale", "-1", "-o", str(tmp_path)]) == 2
    assert main(["bench", "-k", "no-such-case", "--scale", "0.01", "-o", str(tmp_path)]) == 2
    assert main(["bench", "--readme-table", str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("fastloss: error: ") == 4 and "Traceback" not in err
    assert "--threads must be in [1, " in err and "no case id contains" in err


def test_copy_fraction_pairs_each_sample_with_the_copy_of_its_round():
    out_s = [0.10, 0.20, 0.10]  # seconds per out= call, by round
    copy = [20.0, 10.0, 40.0]  # GB/s of the copy in the same rounds
    res = {"role": "large", "bytes_moved": 2e9, "copy_GBps": copy,
           "impls": {"fastloss": {"median_s": 0.1, "min_s": 0.1, "samples_s": out_s},
                     "fastloss_out": {"median_s": 0.1, "min_s": 0.1, "samples_s": out_s},
                     "torch": {"median_s": 1.0}, "numpy": {"median_s": 0.5}}}
    d = derive.derive(res)["derived"]
    # rounds: 20/20, 10/10, 20/40 GB/s -> median 100 %; best vs best: 20/40
    assert d["bw_out"] == statistics.median([1.0, 1.0, 0.5])
    assert d["bw_out_best"] == 20 / 40
    assert d["vs_torch"] == 10.0 and d["vs_numpy"] == 5.0 and d["vs_jax"] is None
    del res["copy_GBps"]  # no copy in the case's rounds: no fraction
    assert derive.derive(res)["derived"]["bw_out"] is None


def test_torch_cell_shows_the_one_thread_time_the_ratio_uses_at_large_sizes():
    """At large sizes PyTorch is timed with 1 thread too and the ratio uses the faster;
    the cell showed only the 2-thread time (614 ms beside a 14.5x computed from 508 ms)."""
    from fastloss._bench import report

    res = {"role": "large", "loss": "mse_loss", "bytes_moved": 1,
           "impls": {"fastloss": {"median_s": 0.035}, "torch": {"median_s": 0.614},
                     "torch_1t": {"median_s": 0.508}}}
    d = derive.derive(res)["derived"]
    assert d["vs_torch"] == pytest.approx(0.508 / 0.035)
    meta = {"peers": {"torch": {"available": True}}, "torch_recipes": {}}
    assert report._torch_cell(res, meta) == "614 ms (1 thread: 508 ms)"


def test_goal_figure_has_the_digits_its_verdict_needs():
    """A figure just past its threshold must not print as the threshold ("5 µs" beside
    "not met" for 5.0026 µs)."""
    from fastloss._bench.report import _goal_value

    assert _goal_value({"value": 5.0026e-6, "threshold": 5e-6, "fmt": "s"}) == "5.003 µs"
    assert _goal_value({"value": 4.56e-6, "threshold": 5e-6, "fmt": "s"}) == "4.56 µs"
    assert _goal_value({"value": 0.9991, "threshold": 1.0, "fmt": "x"}) == "0.999×"
    assert _goal_value({"value": 13.97, "threshold": 14, "fmt": "x"}) == "13.97×"
    assert _goal_value({"value": 0.799, "threshold": 0.8, "fmt": "%"}) == "79.9%"
    assert _goal_value({"value": 0.65, "threshold": 0.8, "fmt": "%"}) == "65%"


def test_nll_traffic_counts_one_log_probability_per_row():
    """nll_loss reads x[i, y_i] only: counting all of x read 122 % of the copy."""
    x = np.zeros((64, 10), np.float32)
    y = np.zeros(64, np.int64)
    assert cases.bytes_moved((x, y), "nll_loss") == x.nbytes + 64 * 4 + y.nbytes
    assert cases.bytes_moved((x, y), "cross_entropy") == 2 * x.nbytes + y.nbytes


def test_plots_without_data_are_not_written_and_stale_ones_go(tmp_path):
    """A run with no sweep or large case writes no empty plot, and removes a plot an
    earlier run left in the directory (the report would not show it)."""
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from fastloss._bench import plots

    for name in plots.PLOTS:
        (tmp_path / name).write_bytes(b"stale")
    meta = {"threads": 2, "machine": {"cpu": "test"}}
    assert plots.write_plots(matplotlib, tmp_path, [], meta) == {}
    assert not any((tmp_path / name).exists() for name in plots.PLOTS)


def test_recorded_command_names_the_environment_scale(monkeypatch):
    import argparse

    args = argparse.Namespace(quick=False, output_dir="out", threads=None, scale=None,
                              select=["mse_loss"], wait_quiet=None)
    monkeypatch.setenv("FASTLOSS_BENCH_SCALE", "0.01")
    assert _bench._command(args) == "fastloss bench -o out --scale 0.01 -k mse_loss"
    monkeypatch.delenv("FASTLOSS_BENCH_SCALE")
    assert _bench._command(args) == "fastloss bench -o out -k mse_loss"
