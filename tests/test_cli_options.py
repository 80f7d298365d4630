"""``fastloss score``: ``--set`` values checked against the files' shapes, and the messages
and exit statuses of the errors that depend on them (in-process ``main()``)."""

from __future__ import annotations

import numpy as np
import pytest

import fastloss as fl
from fastloss import cli


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_options")
    rng = np.random.default_rng(1)
    np.save(d / "x.npy", rng.standard_normal((40, 4)))
    np.save(d / "y.npy", rng.integers(0, 4, 40))
    np.save(d / "yb.npy", (rng.random((40, 4)) > 0.5).astype(np.float64))
    np.save(d / "x1.npy", rng.standard_normal(6))
    np.save(d / "w3.npy", np.ones(3))
    (d / "text.npy").write_text("hello, not an array\n")
    return d


def _main(capsys, *args):
    status = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert len(err.strip().splitlines()) <= 1, err
    return status, out, err


@pytest.mark.parametrize("value", ["abc", "1.0", "none", "5", "2", "-3", "true"])
def test_a_bad_class_axis_is_a_usage_error(d, capsys, value):
    status, _, err = _main(capsys, "score", "cross_entropy", d / "x.npy", d / "y.npy",
                           "--reduction", "mean", "--set", f"axis={value}")
    assert status == 2, err
    assert "the class axis must be an integer in [-2, 2)" in err and "(40, 4)" in err
    assert "rows" not in err


@pytest.mark.parametrize("value", ["0", "-2"])
def test_the_batch_axis_cannot_hold_the_classes(d, capsys, value):
    status, _, err = _main(capsys, "score", "cross_entropy", d / "x.npy", d / "y.npy",
                           "--reduction", "mean", "--set", f"axis={value}")
    assert status == 2 and "batch axis 0" in err, err


def test_a_valid_negative_axis_scores(d, capsys):
    x, y = np.load(d / "x.npy"), np.load(d / "y.npy")
    status, out, err = _main(capsys, "score", "cross_entropy", d / "x.npy", d / "y.npy",
                             "--reduction", "sum", "--set", "axis=-1", "--chunk-rows", "7")
    assert status == 0, err
    assert float(out) == pytest.approx(float(fl.cross_entropy(x, y, reduction="sum").loss),
                                       rel=1e-13)
    status, _, err = _main(capsys, "score", "softmax_entropy", d / "x1.npy", "--reduction",
                           "sum", "--set", "axis=1")
    assert status == 2 and "[-1, 1)" in err, err


@pytest.mark.parametrize("pw", ["2", "0.5,1,2,4"])
def test_pos_weight_is_settable(d, capsys, pw):
    x, y = np.load(d / "x.npy"), np.load(d / "yb.npy")
    ref_pw = np.array([float(v) for v in pw.split(",")])
    ref_pw = ref_pw[0] if ref_pw.size == 1 else ref_pw
    for red in ("mean", "sum"):
        status, out, err = _main(capsys, "score", "binary_cross_entropy_with_logits",
                                 d / "x.npy", d / "yb.npy", "--reduction", red,
                                 "--chunk-rows", "9", "--set", f"pos_weight={pw}")
        assert status == 0, err
        ref = fl.binary_cross_entropy_with_logits(x, y, pos_weight=ref_pw, reduction=red)
        assert float(out) == pytest.approx(float(ref.loss), rel=1e-13)
        unweighted = fl.binary_cross_entropy_with_logits(x, y, reduction=red).loss
        assert float(out) != pytest.approx(float(unweighted), rel=1e-6)


@pytest.mark.parametrize("pw", ["1,2,3", "a", "1,,2"])
def test_a_bad_pos_weight_is_a_usage_error_naming_the_input_shape(d, capsys, pw):
    status, _, err = _main(capsys, "score", "binary_cross_entropy_with_logits", d / "x.npy",
                           d / "yb.npy", "--reduction", "mean", "--set", f"pos_weight={pw}")
    assert status == 2 and "pos_weight" in err, err
    if pw == "1,2,3":
        assert "(40, 4)" in err and "(3, 4)" not in err  # not the option check's example


def test_a_class_weight_of_the_wrong_length_is_bad_data_in_every_reduction(d, capsys,
                                                                          tmp_path):
    for red in ("mean", "sum", "none"):
        out = ["-o", tmp_path / "o.npy"] if red == "none" else []
        status, _, err = _main(capsys, "score", "cross_entropy", d / "x.npy", d / "y.npy",
                               "--reduction", red, "--weight", d / "w3.npy", *out)
        assert status == 1, (red, err)
        assert "4 classes" in err and "(3,)" in err, err
        assert not (tmp_path / "o.npy").exists()


def test_a_one_sample_input_is_not_called_rows(d, capsys):
    status, _, err = _main(capsys, "score", "cross_entropy", d / "x1.npy", d / "y.npy",
                           "--reduction", "mean")
    assert status == 1 and "one sample of 6 classes" in err and "rows 0" not in err, err


def test_a_text_file_named_npy_is_not_called_pickled(d, capsys):
    status, _, err = _main(capsys, "score", "mse_loss", d / "text.npy", d / "text.npy",
                           "--reduction", "mean")
    assert status == 1 and "not a .npy file" in err and "pickled" not in err, err


def test_a_forced_progress_bar_leaves_a_first_chunk_error_one_line(d, tmp_path, capsys):
    y = np.load(d / "y.npy")
    y[3] = 7
    np.save(tmp_path / "ybad.npy", y)
    status, _, err = _main(capsys, "score", "cross_entropy", d / "x.npy",
                           tmp_path / "ybad.npy", "--reduction", "sum", "--progress")
    assert status == 1 and "row 3" in err and "rows" not in err.split("error:")[0], err
    assert err.count("\r") == 0 and err.count("\n") == 1, repr(err)


def test_a_corrupt_parquet_page_names_the_file(tmp_path, capsys):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 4))
    col = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), 4)
    pq.write_table(pa.table({"p": col, "target": col}), tmp_path / "ok.parquet",
                   row_group_size=500, compression="NONE")
    raw = bytearray((tmp_path / "ok.parquet").read_bytes())
    off = pq.ParquetFile(tmp_path / "ok.parquet").metadata.row_group(2).column(0)
    off = off.data_page_offset
    raw[off:off + 40] = bytes(b ^ 0xFF for b in raw[off:off + 40])
    (tmp_path / "bad.parquet").write_bytes(bytes(raw))
    status, out, err = _main(capsys, "score", "mse_loss", tmp_path / "ok.parquet",
                             tmp_path / "ok.parquet", "--input-column", "p",
                             "--reduction", "sum", "--chunk-rows", "300")
    assert status == 0 and float(out) == 0.0, err
    status, _, err = _main(capsys, "score", "mse_loss", tmp_path / "bad.parquet",
                           tmp_path / "bad.parquet", "--input-column", "p",
                           "--reduction", "sum", "--chunk-rows", "300")
    assert status == 1, err
    assert "bad.parquet: cannot read rows" in err, err
