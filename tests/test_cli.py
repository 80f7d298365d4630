"""``fastloss score`` / ``fastloss warmup``: the real command in subprocesses (and its
``main()`` in-process for the error matrix), against the in-memory calls."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import fastloss as fl
from fastloss import cli

FASTLOSS = [sys.executable, "-m", "fastloss"]


def run(*args, **kw):
    return subprocess.run([*FASTLOSS, *map(str, args)], capture_output=True, text=True,
                          timeout=300, **kw)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    n, c = 5003, 7
    x = (rng.standard_normal((n, c)) * 2).astype(np.float32)
    y = rng.integers(0, c, n)
    y[::17] = -100
    np.save(d / "x.npy", x)
    np.save(d / "y.npy", y)
    np.save(d / "w.npy", rng.random(c) + 0.5)
    np.save(d / "x64.npy", x.astype(np.float64))
    r = rng.standard_normal((n, 3))
    np.save(d / "r.npy", r)
    np.save(d / "rt.npy", r + rng.standard_normal((n, 3)))
    return d, x, y


def test_npy_none_and_sum_match_in_memory(files, tmp_path):
    d, x, y = files
    w = np.load(d / "w.npy")
    out = tmp_path / "loss.npy"
    p = run("score", "cross_entropy", d / "x.npy", d / "y.npy", "-o", out, "--weight",
            d / "w.npy", "--set", "label_smoothing=0.1", "--chunk-rows", 777)
    assert p.returncode == 0, p.stderr
    assert p.stderr == "" and p.stdout == ""  # no progress bar on a pipe
    ref = fl.cross_entropy(x, y, weight=w, label_smoothing=0.1, reduction="none").loss
    got = np.load(out)
    assert got.dtype == np.float32 and got.shape == (x.shape[0],)
    np.testing.assert_array_equal(got, ref)
    p = run("score", "cross_entropy", d / "x.npy", d / "y.npy", "--weight", d / "w.npy",
            "--set", "label_smoothing=0.1", "--reduction", "sum", "--chunk-rows", 1000)
    assert p.returncode == 0, p.stderr
    ref = fl.cross_entropy(x, y, weight=w, label_smoothing=0.1, reduction="sum").loss
    assert np.float32(p.stdout.strip()) == ref
    # an elementwise loss keeps the input's shape; float64 sums agree to rounding
    p = run("score", "huber_loss", d / "r.npy", d / "rt.npy", "--reduction", "sum",
            "--set", "delta=0.5", "--chunk-rows", 100)
    ref = fl.huber_loss(np.load(d / "r.npy"), np.load(d / "rt.npy"), delta=0.5,
                        reduction="sum").loss
    assert float(p.stdout) == pytest.approx(float(ref), rel=1e-14)
    p = run("score", "huber_loss", d / "r.npy", d / "rt.npy", "-o", tmp_path / "h.npy")
    assert np.load(tmp_path / "h.npy").shape == (x.shape[0], 3)


def test_parquet_inputs_and_output_match_in_memory(files, tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    d, x, y = files
    c = x.shape[1]
    both = tmp_path / "both.parquet"
    pq.write_table(pa.table({
        "logits": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), c),
        "target": y,
    }), both, row_group_size=1234)
    assert pq.ParquetFile(both).num_row_groups > 3
    cols = tmp_path / "cols.parquet"
    pq.write_table(pa.table({f"p_{i}": x[:, i] for i in range(c)}), cols, row_group_size=999)
    lab = tmp_path / "lab.parquet"
    pq.write_table(pa.table({"label": y}), lab, row_group_size=2000)
    ref_none = fl.cross_entropy(x, y, reduction="none").loss
    ref_sum = fl.cross_entropy(x, y, reduction="sum").loss
    p = run("score", "cross_entropy", both, both, "--reduction", "sum", "--chunk-rows", 700)
    assert p.returncode == 0, p.stderr
    assert np.float32(p.stdout.strip()) == ref_sum
    out = tmp_path / "o.parquet"
    p = run("score", "cross_entropy", cols, lab, "--input-column", "p",
            "--target-column", "label", "-o", out, "--chunk-rows", 1500)
    assert p.returncode == 0, p.stderr
    got = pq.read_table(out).column("loss").to_numpy()
    np.testing.assert_array_equal(got, ref_none)
    p = run("score", "cross_entropy", both, d / "y.npy", "-o", tmp_path / "o.npy")
    assert p.returncode == 0, p.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), ref_none)


# ----------------------------------------------------------------- interruptions
@pytest.fixture(scope="module")
def big(tmp_path_factory):
    d = tmp_path_factory.mktemp("big")
    rng = np.random.default_rng(1)
    n, c = 400_000, 50
    np.save(d / "x.npy", rng.standard_normal((n, c), dtype=np.float32))
    np.save(d / "y.npy", rng.integers(0, c, n))
    return d


def _start_and_wait_for_partial(big, out):
    proc = subprocess.Popen(
        [*FASTLOSS, "score", "cross_entropy", str(big / "x.npy"), str(big / "y.npy"), "-o",
         str(out), "--chunk-rows", "500", "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t_end = time.time() + 120
    while time.time() < t_end:
        if any(p.name.startswith(f".{out.name}.") for p in out.parent.iterdir()):
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.002)
    proc.kill()
    raise AssertionError(f"no temporary file appeared: {proc.communicate()}")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_leaves_no_output(big, tmp_path, sig):
    out = tmp_path / "loss.npy"
    proc = _start_and_wait_for_partial(big, out)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert not out.exists()
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
        return
    assert proc.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143}[sig], err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not any(p.name.startswith(".loss.npy.") for p in tmp_path.iterdir())


def test_completed_run_replaces_only_with_force(big, tmp_path):
    out = tmp_path / "loss.npy"
    out.write_bytes(b"keep me")
    p = run("score", "mse_loss", big / "x.npy", big / "x.npy", "-o", out)
    assert p.returncode == 2 and "--force" in p.stderr
    assert out.read_bytes() == b"keep me"


def test_progress_bar_on_a_terminal_only(files, tmp_path):
    d, _, _ = files
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [*FASTLOSS, "score", "cross_entropy", str(d / "x.npy"), str(d / "y.npy"),
         "--reduction", "sum", "--chunk-rows", "50"],
        stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    seen = b""
    while True:
        r, _, _ = select.select([master], [], [], 60)
        if not r:
            break
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    proc.communicate(timeout=60)
    os.close(master)
    assert proc.returncode == 0
    assert b"rows" in seen and b"fastloss score" in seen
    p = run("score", "cross_entropy", d / "x.npy", d / "y.npy", "--reduction", "sum",
            "--progress")  # forced on a pipe
    assert "rows" in p.stderr
    p = run("score", "cross_entropy", d / "x.npy", d / "y.npy", "--reduction", "sum")
    assert p.stderr == ""


# ------------------------------------------------------------------------ errors
def _main(capsys, *args):
    status = cli.main([str(a) for a in args])
    err = capsys.readouterr().err
    return status, err


def test_errors_are_one_line_with_their_exit_status(files, tmp_path, capsys):
    d, x, y = files
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "trunc.npy").write_bytes((d / "x.npy").read_bytes()[:5000])
    np.save(tmp_path / "xi.npy", np.zeros(x.shape, np.int32))
    yb = y.copy()
    yb[4321] = 9
    np.save(tmp_path / "ybad.npy", yb)
    np.save(tmp_path / "yshort.npy", y[:-1])
    np.save(tmp_path / "y2.npy", np.stack([y, y], 1))
    (tmp_path / "exists.npy").write_bytes(b"x")
    o = tmp_path / "o.npy"
    X, Y = d / "x.npy", d / "y.npy"
    cases = [
        (1, "pickled", ["score", "cross_entropy", tmp_path / "obj.npy", Y, "-o", o]),
        (1, "truncated", ["score", "cross_entropy", tmp_path / "trunc.npy", Y, "-o", o]),
        (1, "float32 or float64", ["score", "cross_entropy", tmp_path / "xi.npy", Y, "-o", o]),
        (1, "row 4321", ["score", "cross_entropy", X, tmp_path / "ybad.npy", "-o", o]),
        (1, "rows", ["score", "cross_entropy", X, tmp_path / "yshort.npy", "-o", o]),
        (1, "shape", ["score", "cross_entropy", X, tmp_path / "y2.npy", "-o", o]),
        (2, "unknown loss", ["score", "nope", X, Y, "-o", o]),
        (2, "unknown option", ["score", "cross_entropy", X, Y, "-o", o, "--set", "foo=1"]),
        (2, "label_smoothing", ["score", "cross_entropy", X, Y, "-o", o, "--set",
                                "label_smoothing=2"]),
        (2, "KEY=VALUE", ["score", "cross_entropy", X, Y, "-o", o, "--set", "oops"]),
        (2, "cannot write", ["score", "cross_entropy", X, Y, "-o", tmp_path / "no" / "o.npy"]),
        (2, "--force", ["score", "cross_entropy", X, Y, "-o", tmp_path / "exists.npy"]),
        (2, "unsupported format", ["score", "cross_entropy", X, tmp_path / "y.csv", "-o", o]),
        (2, "no such file", ["score", "cross_entropy", tmp_path / "missing.npy", Y, "-o", o]),
        (2, "-o OUTPUT", ["score", "cross_entropy", X, Y]),
        (2, "reduction", ["score", "cross_entropy", X, Y, "--reduction", "batchmean"]),
        (2, "TARGET", ["score", "cross_entropy", X]),
        (2, "required", ["score"]),
        (2, "threads", ["score", "cross_entropy", X, Y, "-o", o, "--threads", 0]),
    ]
    for status, text, args in cases:
        got, err = _main(capsys, *args)
        assert got == status, (args, err)
        assert text in err, (args, err)
        assert len(err.strip().splitlines()) == 1, err
        assert not o.exists(), args
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".o.npy.")] == []
    # and the same from a real process: one line, no traceback
    p = run("score", "cross_entropy", X, tmp_path / "ybad.npy", "-o", o)
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr


def test_set_values_are_typed(files, capsys):
    d, x, y = files
    status = cli.main(["score", "cross_entropy", str(d / "x64.npy"), str(d / "y.npy"),
                       "--reduction", "sum", "--set", "ignore_index=-100", "--set",
                       "z_loss=1e-3", "--set", "softcap=none"])
    out = capsys.readouterr().out
    assert status == 0
    ref = fl.cross_entropy(x.astype(np.float64), y, ignore_index=-100, z_loss=1e-3,
                           reduction="sum").loss
    assert float(out) == pytest.approx(float(ref), rel=1e-14)


def test_score_audit_cases(tmp_path, capsys):
    """A 1-D sample with a bad class index names it; OUTPUT naming an input is refused
    even with --force; +inf and -inf chunk totals give NaN without a warning."""
    x1 = tmp_path / "s1.npy"
    np.save(x1, np.array([0.1, 0.2, 0.3, 0.4], np.float32))
    np.save(tmp_path / "s1t.npy", np.array(7))
    for loss in ("cross_entropy", "nll_loss", "multi_margin_loss"):
        status, err = _main(capsys, "score", loss, x1, tmp_path / "s1t.npy", "--reduction", "sum")
        assert status == 1 and "out of bounds" in err and "tuple index" not in err, err
        assert len(err.strip().splitlines()) == 1
    x = np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", np.arange(10) % 4)
    for victim in ("x.npy", "t.npy"):
        before = (tmp_path / victim).read_bytes()
        status, err = _main(capsys, "score", "cross_entropy", tmp_path / "x.npy",
                            tmp_path / "t.npy", "-o", tmp_path / victim, "--force")
        assert status == 2 and "is an input file" in err
        assert (tmp_path / victim).read_bytes() == before
    np.save(tmp_path / "ki.npy", np.array([[0.0], [np.inf], [0.0], [-np.inf]]))
    np.save(tmp_path / "kt.npy", np.full((4, 1), 0.5))
    status = cli.main(["score", "kl_div", str(tmp_path / "ki.npy"), str(tmp_path / "kt.npy"),
                       "--reduction", "sum", "--chunk-rows", "1"])
    out, err = capsys.readouterr()
    assert status == 0 and out.strip() == "nan" and err == ""


def test_warmup_command(capsys):
    assert cli.main(["warmup", "mse_loss", "--dtype", "float64"]) == 0
    assert "mse_loss" in capsys.readouterr().out
    status, err = _main(capsys, "warmup", "nope")
    assert status == 2 and "unknown loss" in err


def test_warmup_names_and_dtypes_as_given():
    """A bare string is one name (not its characters); a repeated name is warmed (and
    timed) once; dtypes are checked."""
    spent = fl.warmup("mse_loss", dtypes="float64", parallel=False)
    assert list(spent) == ["mse_loss"]
    spent = fl.warmup(["mse_loss", "l1_loss", "mse_loss"], dtypes=[np.float64], parallel=False)
    assert list(spent) == ["mse_loss", "l1_loss"]
    with pytest.raises(ValueError, match="float32 and/or float64"):
        fl.warmup(["mse_loss"], dtypes=["int64"])


# ------------------------------------------------------- multi-GB input (opt-in)
def _rss_anon_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


@pytest.mark.skipif(not os.environ.get("FASTLOSS_LARGE"),
                    reason="writes a multi-GB file: set FASTLOSS_LARGE=1")
@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_multi_gb_input_stays_within_the_memory_bound(tmp_path, reduction):
    """Peak anonymous memory <= 2 chunks + 150 MB while scoring a ~3 GB .npy."""
    n, c = 6_000_000, 128  # 3.07 GB of float32 logits
    x = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32,
                                  shape=(n, c))
    rng = np.random.default_rng(0)
    step = 500_000
    for lo in range(0, n, step):
        x[lo : lo + step] = rng.standard_normal((min(step, n - lo), c), dtype=np.float32)
    x.flush()
    del x
    np.save(tmp_path / "y.npy", rng.integers(0, c, n))
    args = ["score", "cross_entropy", tmp_path / "x.npy", tmp_path / "y.npy"]
    args += ["-o", tmp_path / "o.npy"] if reduction == "none" else ["--reduction", "sum"]
    proc = subprocess.Popen([*FASTLOSS, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    peak = 0
    t0 = time.time()
    while proc.poll() is None:
        try:
            peak = max(peak, _rss_anon_kb(proc.pid))
        except OSError:
            break
        time.sleep(0.005)
    out, err = proc.communicate()
    wall = time.time() - t0
    assert proc.returncode == 0, err
    bound_kb = (2 * cli.CHUNK_BYTES + 150 * 2**20) // 1024
    print(f"{reduction}: peak RssAnon {peak / 1024:.0f} MiB (bound {bound_kb / 1024:.0f} MiB), "
          f"{n * c * 4 / wall / 1e6:.0f} MB/s in {wall:.1f} s")
    assert peak <= bound_kb


@pytest.mark.parametrize(
    "loss,inp,tgt,extra,opts",
    [
        ("cross_entropy", "x.npy", "y.npy", ["--weight", "w.npy"], {"label_smoothing": 0.1}),
        ("cross_entropy", "x.npy", "y.npy", ["--weight", "w.npy"], {"z_loss": 1e-3}),
        ("nll_loss", "x.npy", "y.npy", [], {}),
        ("softmax_focal_loss", "x.npy", "y.npy", ["--weight", "w.npy"], {"gamma": 1.5}),
        ("huber_loss", "r.npy", "rt.npy", [], {"delta": 0.5}),
        ("kl_div_with_logits", "r.npy", "rt.npy", [], {"temperature": 2.0}),
        ("softmax_entropy", "x.npy", None, [], {}),
    ],
)
def test_mean_over_chunks_equals_the_in_memory_mean(files, capsys, loss, inp, tgt, extra, opts):
    d, _, _ = files
    x = np.load(d / inp)
    args = [d / inp] + ([d / tgt] if tgt else [])
    sets = [a for k, v in opts.items() for a in ("--set", f"{k}={v}")]
    extra = [d / e if e.endswith(".npy") else e for e in extra]
    reductions = fl.LOSSES[loss].reductions
    for red in [r for r in ("mean", "batchmean", "sum") if r in reductions]:
        status = cli.main(["score", loss, *map(str, args), "--reduction", red,
                           "--chunk-rows", "333", *map(str, extra), *sets])
        out, err = capsys.readouterr()
        assert status == 0, err
        kw = dict(opts, reduction=red)
        if "--weight" in extra:
            kw["weight"] = np.load(d / "w.npy")
        if tgt:
            ref = fl.LOSSES[loss].fn(x, np.load(d / tgt), **kw).loss
        else:
            ref = fl.LOSSES[loss].fn(x, **kw).loss
        got = np.dtype(x.dtype).type(out.strip())
        if x.dtype == np.float32:
            assert got == ref, (red, got, ref)  # one float32 rounding, as in memory
        else:
            assert float(got) == pytest.approx(float(ref), rel=1e-13), red


def test_layouts_one_sample_fortran_and_class_axis(tmp_path, capsys):
    rng = np.random.default_rng(5)
    x1 = rng.standard_normal(50).astype(np.float32)  # one sample of 50 classes
    np.save(tmp_path / "x1.npy", x1)
    np.save(tmp_path / "t0.npy", np.array(7))
    xf = np.asfortranarray(rng.standard_normal((1000, 6)))
    np.save(tmp_path / "xf.npy", xf)
    yf = rng.integers(0, 6, 1000)
    np.save(tmp_path / "yf.npy", yf)
    x3 = rng.standard_normal((40, 5, 3))  # PyTorch's (N, C, d) layout
    y3 = rng.integers(0, 5, (40, 3))
    np.save(tmp_path / "x3.npy", x3)
    np.save(tmp_path / "y3.npy", y3)

    def score(*args):
        status = cli.main([str(a) for a in args])
        out, err = capsys.readouterr()
        return status, out.strip(), err

    s, out, _ = score("score", "cross_entropy", tmp_path / "x1.npy", tmp_path / "t0.npy",
                      "--reduction", "sum", "--chunk-rows", 7)
    assert s == 0 and np.float32(out) == fl.cross_entropy(x1, np.array(7), reduction="sum").loss
    s, _, _ = score("score", "cross_entropy", tmp_path / "x1.npy", tmp_path / "t0.npy", "-o",
                    tmp_path / "one.npy")
    assert s == 0 and np.load(tmp_path / "one.npy").shape == ()
    s, out, _ = score("score", "cross_entropy", tmp_path / "xf.npy", tmp_path / "yf.npy",
                      "--reduction", "mean", "--chunk-rows", 33)
    assert s == 0
    assert float(out) == pytest.approx(float(fl.cross_entropy(xf, yf).loss), rel=1e-14)
    s, _, _ = score("score", "cross_entropy", tmp_path / "x3.npy", tmp_path / "y3.npy", "-o",
                    tmp_path / "o3.npy", "--set", "axis=1", "--chunk-rows", 7)
    assert s == 0
    np.testing.assert_array_equal(np.load(tmp_path / "o3.npy"),
                                  fl.cross_entropy(x3, y3, axis=1, reduction="none").loss)
    s, _, err = score("score", "cross_entropy", tmp_path / "xf.npy", tmp_path / "yf.npy",
                      "--reduction", "mean", "--set", "axis=0")
    assert s == 2 and "axis 0" in err


def test_parquet_lists_of_different_lengths_are_an_error(tmp_path, capsys):
    """Rows of 3, 2, 4 and 3 values hold 4 * 3 values in all: the total alone would
    re-split them into rows of 3 and give a wrong number (exit 0)."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = [[0.0, 0.0, 0.0], [5.0, 0.0], [0.0, 0.0, 0.0, 9.0], [1.0, 2.0, 3.0]]
    f = tmp_path / "ragged.parquet"
    pq.write_table(pa.table({"logits": pa.array(rows, type=pa.list_(pa.float64())),
                             "target": pa.array([0, 0, 0, 0])}), f)
    status, err = _main(capsys, "score", "cross_entropy", f, f, "--reduction", "sum")
    assert status == 1 and "lists of different lengths (expected 3)" in err, err
    assert err.strip().endswith("2 values at row 1"), err  # the first offending row
    # equal lengths in a variable-size list column are fine
    pq.write_table(pa.table({"logits": pa.array([r[:2] for r in rows if len(r) >= 2],
                                                type=pa.list_(pa.float64())),
                             "target": pa.array([0, 1, 0, 1])}), f)
    status, err = _main(capsys, "score", "cross_entropy", f, f, "--reduction", "sum")
    assert status == 0, err


def _parquet_groups(pq, path, table, sizes):
    """``table`` written as row groups of ``sizes`` rows (0: an empty row group)."""
    with pq.ParquetWriter(path, table.schema) as w:
        lo = 0
        for n in sizes:
            w.write_table(table.slice(lo, n) if n else table.schema.empty_table())
            lo += n
    assert [pq.ParquetFile(path).metadata.row_group(i).num_rows
            for i in range(len(sizes))] == list(sizes)


@pytest.mark.parametrize("fixed", [False, True])
def test_parquet_empty_first_row_group(tmp_path, capsys, fixed):
    """The width of a variable-size list column came from the first row group: an empty
    one gave width 0 and the file was rejected ("different lengths (expected 0)")."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    x = np.array([[0.5, -1.0, 2.0], [1.0, 0.0, 0.0], [-3.0, 1.0, 0.25], [0.0, 2.0, 1.0],
                  [1.5, 1.5, -1.0]])
    y = np.array([2, 0, 1, 1, 0])
    lists = (pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 3) if fixed
             else pa.array(x.tolist(), type=pa.list_(pa.float64())))
    t = pa.table({"logits": lists, "target": y})
    one, gaps = tmp_path / "one.parquet", tmp_path / "gaps.parquet"
    pq.write_table(t, one)
    _parquet_groups(pq, gaps, t, [0, 2, 0, 0, 3, 0])
    for f in (one, gaps):
        for red in ("sum", "mean"):
            status = cli.main(["score", "cross_entropy", str(f), str(f), "--reduction", red,
                               "--chunk-rows", "2"])
            out, err = capsys.readouterr()
            assert status == 0, err
            assert float(out) == fl.cross_entropy(x, y, reduction=red).loss, red
        status, err = _main(capsys, "score", "cross_entropy", f, f, "-o",
                            tmp_path / f"{f.stem}.npy")
        assert status == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "gaps.npy"), np.load(tmp_path / "one.npy"))
    np.testing.assert_array_equal(np.load(tmp_path / "gaps.npy"),
                                  fl.cross_entropy(x, y, reduction="none").loss)
    # no rows at all (every row group empty): an empty input, as an empty .npy is
    _parquet_groups(pq, gaps, t, [0, 0])
    np.save(tmp_path / "x0.npy", x[:0])
    np.save(tmp_path / "y0.npy", y[:0])
    for args in ([gaps, gaps], [tmp_path / "x0.npy", tmp_path / "y0.npy"]):
        got = []
        for red in ("sum", "mean"):
            status = cli.main(["score", "cross_entropy", *map(str, args), "--reduction", red])
            out, err = capsys.readouterr()
            assert status == 0, err
            got.append(float(out))
        assert got[0] == 0.0 and np.isnan(got[1]), (args, got)
        status, err = _main(capsys, "score", "cross_entropy", *args, "-o", tmp_path / "e.npy",
                            "--force")
        assert status == 0 and np.load(tmp_path / "e.npy").shape == (0,), err


@pytest.mark.parametrize("case, column, row", [
    ("null list first", "logits", 0),  # was a TypeError ("NoneType has no len()")
    ("null list later", "logits", 6),
    ("null element first", "logits", 0),
    ("null element later", "logits", 4),
    ("null label", "target", 5),
    ("null list after empty row group", "logits", 0),
    ("null fixed-size list", "logits", 3),
    ("null prediction column", "p_1", 2),
])
def test_parquet_nulls_are_a_data_error_naming_the_row(tmp_path, capsys, case, column, row):
    """Nulls in the predictions (a null list, a null inside a list, a null in one of the
    per-class columns) or in the labels: exit 1, one line naming the file, the column and
    the first offending row, whichever row group and chunk it falls in."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = [[float(i), 1.0, -1.0] for i in range(8)]
    labels = [i % 3 for i in range(8)]
    if "element" in case:
        rows[row][1] = None
    elif column == "target":
        labels[row] = None
    elif column == "logits":
        rows[row] = None
    typ = pa.list_(pa.float64(), 3) if "fixed" in case else pa.list_(pa.float64())
    if column == "p_1":
        cols = {f"p_{k}": pa.array([None if (k, i) == (1, row) else r[k]
                                    for i, r in enumerate(rows)]) for k in range(3)}
        extra = ["--input-column", "p"]
    else:
        cols = {"logits": pa.array(rows, type=typ)}
        extra = []
    t = pa.table({**cols, "target": pa.array(labels, type=pa.int64())})
    f = tmp_path / "nulls.parquet"
    _parquet_groups(pq, f, t, [0, 3, 0, 5] if "empty" in case else [3, 5])
    for red in ("sum", "mean"):
        status, err = _main(capsys, "score", "cross_entropy", f, f, "--reduction", red,
                            "--chunk-rows", "2", *extra)
        assert status == 1, (case, err)
        assert len(err.strip().splitlines()) == 1 and "Error" not in err, err
        assert str(f) in err and repr(column) in err and "null value" in err, err
        assert err.strip().endswith(f"at row {row}"), err


def test_parquet_corrupt_first_page_of_a_list_column_names_the_file(tmp_path, capsys):
    """The width of a variable-size list column is read when the file is opened: a corrupt
    first page there is a one-line data error naming the file too."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    t = pa.table({"logits": pa.array([[float(i), 0.0] for i in range(40)],
                                     type=pa.list_(pa.float64())), "target": [0, 1] * 20})
    f = tmp_path / "bad.parquet"
    pq.write_table(t, f, row_group_size=20, compression="NONE")
    raw = bytearray(f.read_bytes())
    off = pq.ParquetFile(f).metadata.row_group(0).column(0).data_page_offset
    raw[off:off + 40] = bytes(b ^ 0xFF for b in raw[off:off + 40])
    f.write_bytes(bytes(raw))
    status, err = _main(capsys, "score", "cross_entropy", f, f, "--reduction", "sum")
    assert status == 1 and len(err.strip().splitlines()) == 1, err
    assert f"input {f}: cannot read its first row" in err, err


def test_parquet_per_class_columns_of_mixed_types_score_in_the_promoted_dtype(tmp_path,
                                                                              capsys):
    """p_0 float32 and p_1 float64: the rows are stacked as float64, and an empty file
    gives float64 losses too (the source once reported the first column's float32)."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    x = np.array([[0.5, -1.0], [2.0, 0.25], [-1.5, 1.0]])
    y = np.array([1, 0, 1])
    for n in (3, 0):
        t = pa.table({"p_0": pa.array(x[:n, 0].astype(np.float32)),
                      "p_1": pa.array(x[:n, 1]), "target": pa.array(y[:n])})
        f = tmp_path / f"mixed{n}.parquet"
        pq.write_table(t, f)
        status, err = _main(capsys, "score", "cross_entropy", f, f, "--input-column", "p",
                            "-o", tmp_path / f"o{n}.npy")
        assert status == 0, err
        got = np.load(tmp_path / f"o{n}.npy")
        assert got.dtype == np.float64 and got.shape == (n,)
        ref = np.stack([x[:n, 0].astype(np.float32).astype(np.float64), x[:n, 1]], 1)
        np.testing.assert_array_equal(got, fl.cross_entropy(ref, y[:n], reduction="none").loss)


def test_parquet_default_input_column_is_the_list_column_besides_the_target(tmp_path,
                                                                            capsys):
    """With no --input-column, the one list column other than the target's is the input
    (a list-valued target once made two list columns read as 'no numeric columns', and a
    list target beside per-class float columns was taken for the input)."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((30, 4)), rng.standard_normal((30, 4))

    def lists(a):
        return pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), a.shape[1])

    f = tmp_path / "two_lists.parquet"
    pq.write_table(pa.table({"pred": lists(x), "target": lists(y)}), f)
    status = cli.main(["score", "mse_loss", str(f), str(f), "--reduction", "sum"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert float(out) == pytest.approx(float(fl.mse_loss(x, y, reduction="sum").loss),
                                       rel=1e-13)
    f = tmp_path / "three_lists.parquet"
    pq.write_table(pa.table({"a": lists(x), "b": lists(x), "target": lists(y)}), f)
    status, err = _main(capsys, "score", "mse_loss", f, f, "--reduction", "sum")
    assert status == 2 and "several list columns (a, b)" in err, err


def test_parquet_empty_variable_lists_take_the_other_files_width(tmp_path, capsys):
    """A variable-size list column with no rows has no width: paired with an empty
    (0, 3) target it scores as an empty (0, 3) input, as two empty .npy files do."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    f = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"p": pa.array([], type=pa.list_(pa.float64()))}), f)
    np.save(tmp_path / "t0.npy", np.zeros((0, 3)))
    np.save(tmp_path / "x0.npy", np.zeros((0, 3)))
    for args in ([f, tmp_path / "t0.npy"], [tmp_path / "x0.npy", f],
                 [tmp_path / "x0.npy", tmp_path / "t0.npy"]):
        got = []
        for red in ("sum", "mean"):
            status = cli.main(["score", "mse_loss", *map(str, args), "--reduction", red])
            out, err = capsys.readouterr()
            assert status == 0, (args, err)
            got.append(float(out))
        assert got[0] == 0.0 and np.isnan(got[1]), (args, got)
        status, err = _main(capsys, "score", "mse_loss", *args, "-o", tmp_path / "e.npy",
                            "--force")
        assert status == 0, err
        assert np.load(tmp_path / "e.npy").shape == (0, 3), args


# --------------------------------------------- audit findings, 2026-12-04 (score)
@pytest.mark.parametrize("loss", ["cross_entropy", "nll_loss", "softmax_focal_loss"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_one_sample_with_class_weights(tmp_path, capsys, loss, reduction):
    """One 1-D sample has as many entries as classes: its class weight is not a per-row
    weight (the mean was multiplied by the target's weight)."""
    x = np.array([0.5, -1.0, 2.0])
    if loss == "nll_loss":
        x = -np.abs(x)
    w = np.array([1.0, 3.0, 0.5])
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "t.npy", np.array(1))
    np.save(tmp_path / "w.npy", w)
    status = cli.main(["score", loss, str(tmp_path / "x.npy"), str(tmp_path / "t.npy"),
                       "--weight", str(tmp_path / "w.npy"), "--reduction", reduction])
    out = capsys.readouterr().out
    assert status == 0
    want = getattr(fl, loss)(x, np.array(1), w, reduction=reduction).loss
    assert float(out) == pytest.approx(float(want), rel=1e-14)


def test_a_class_index_of_minus_100_is_named_by_row_where_it_is_not_ignored(tmp_path, capsys):
    """multi_margin_loss has no ignore_index: a target of -100 is out of range, and the
    error names its row as for any other bad index."""
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.standard_normal((300, 7)))
    t = rng.integers(0, 7, 300)
    t[250] = -100
    np.save(tmp_path / "t.npy", t)
    status, err = _main(capsys, "score", "multi_margin_loss", tmp_path / "x.npy",
                        tmp_path / "t.npy", "--reduction", "sum", "--chunk-rows", 40)
    assert status == 1
    assert err.strip().endswith("at row 250"), err
