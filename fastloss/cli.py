"""The ``fastloss`` command line (also ``python -m fastloss``).

``fastloss score LOSS INPUT [TARGET]`` computes a loss over files too large for memory,
chunk by chunk: per-sample losses to ``-o OUTPUT`` (``--reduction none``, the default;
written to a temporary file beside OUTPUT and renamed into place only when complete), or
one number for ``sum`` / ``mean`` (PyTorch's semantics over the whole file, as the
in-memory call).  ``fastloss warmup [LOSS ...]`` compiles (or loads from the on-disk
cache) kernels ahead of time, for Docker / CI images.  ``fastloss bench`` runs the
side-by-side benchmark (``fastloss._bench``, imported only for that command).

Errors are one line on stderr and an exit status: 2 for usage (unknown loss or option,
unsupported format, an existing OUTPUT without ``--force``, an unwritable output
directory), 1 for bad data (a pickled or truncated ``.npy``, a wrong dtype, shapes or
lengths that do not match, a class index out of range, naming its row), 130 on Ctrl-C,
143 on SIGTERM; never a traceback, never a partial OUTPUT.
"""

from __future__ import annotations

import argparse
import inspect
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor

__all__ = ["main"]

#: Input bytes per chunk when ``--chunk-rows`` is not given: large enough that the per-call
#: overhead vanishes, small enough that two chunks (the one computed and the one read
#: ahead) stay far below the 150 MB of working memory the command allows itself.
CHUNK_BYTES = 32 << 20


class CLIError(Exception):
    """An error reported as one line on stderr with exit status :attr:`status`."""

    status = 1


class UsageError(CLIError):
    status = 2


class DataError(CLIError):
    status = 1


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread (cleans up like Ctrl-C)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit status 2 (argparse prints usage too)
        raise UsageError(message)


# ------------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="fastloss", description="fastloss: fused loss + gradient kernels.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser(
        "score",
        help="compute a loss over .npy / Parquet files, chunk by chunk",
        description="Compute LOSS over INPUT (and TARGET) chunk by chunk.  --reduction none "
        "(the default) writes the per-sample losses to OUTPUT (.npy or .parquet); sum and "
        "mean print one number.",
    )
    s.add_argument("loss", help="a loss of fastloss.LOSSES, e.g. cross_entropy")
    s.add_argument("input", help="predictions: .npy (memory-mapped) or .parquet")
    s.add_argument("target", nargs="?", help="targets: .npy or .parquet (may be INPUT)")
    s.add_argument("-o", "--output", help="per-sample losses (.npy or .parquet)")
    s.add_argument("--weight", metavar="FILE", help="class weights (or a loss's weight), .npy")
    s.add_argument("--reduction", default="none", help="none (default), sum, mean, batchmean")
    s.add_argument("--chunk-rows", type=int, metavar="N", help="rows per chunk")
    s.add_argument("--threads", type=int, metavar="N", help="kernel threads")
    s.add_argument("--force", action="store_true", help="overwrite an existing OUTPUT")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a loss option, e.g. --set label_smoothing=0.1 (repeatable)")
    s.add_argument("--input-column", metavar="C",
                   help="Parquet: the predictions' column (a fixed-size list), or a prefix "
                   "of one float column per class")
    s.add_argument("--target-column", metavar="C", help="Parquet: the targets' column")
    s.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    s.set_defaults(func=cmd_score)

    w = sub.add_parser("warmup", help="compile (or load from the cache) kernels ahead of time")
    w.add_argument("names", nargs="*",
                   help="losses (default: all), grad_hess:<objective> or linear_cross_entropy")
    w.add_argument("--dtype", action="append", choices=["float32", "float64"],
                   help="dtypes to compile (default: both)")
    w.add_argument("-j", "--jobs", type=int, default=1,
                   help="processes compiling at once (default 1; more pays on many cores)")
    w.set_defaults(func=cmd_warmup)

    b = sub.add_parser(
        "bench",
        help="time every loss against NumPy, PyTorch and JAX and write a report",
        description="Time every loss (latency, medium and large sizes) against NumPy, PyTorch "
        "and JAX where installed, and write REPORT.md, results.json and PNG plots to DIR.",
    )
    b.add_argument("--quick", action="store_true",
                   help="smaller sizes, fewer rounds (under 2 minutes)")
    b.add_argument("-o", "--output-dir", metavar="DIR",
                   help="where to write the report (default: ./fastloss-bench)")
    b.add_argument("--threads", type=int, metavar="N",
                   help="threads for fastloss and PyTorch (default 2); large sizes also on 1")
    b.add_argument("-k", "--select", action="append", metavar="TEXT",
                   help="only the cases whose id contains TEXT (repeatable)")
    b.add_argument("--scale", type=float, metavar="S",
                   help="multiply every batch size by S (default: $FASTLOSS_BENCH_SCALE or "
                   "1; below 0.1 a two-round smoke test)")
    b.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                   help="first wait up to SECONDS for other processes to leave the CPUs idle")
    b.add_argument("--render", metavar="RESULTS_JSON",
                   help="no measuring: rewrite the report and plots from a results.json")
    b.add_argument("--readme-table", metavar="RESULTS_JSON",
                   help="print the README's performance table from a results.json")
    b.add_argument("--all", action="store_true",
                   help="with --readme-table: every loss at its large size")
    b.set_defaults(func=cmd_bench)
    return p


# ------------------------------------------------------------------------------ entry
def main(argv=None) -> int:
    """Run the command line; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except UsageError as e:
        _say(f"usage error: {e} (see fastloss --help)")
        return 2
    old_term = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, _on_term)
    except ValueError:  # not the main thread
        old_term = None
    try:
        return args.func(args) or 0
    except CLIError as e:
        _say(f"error: {e}")
        return e.status
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except _Terminated:
        _say("terminated")
        return 143
    except BrokenPipeError:
        return 1
    except Exception as e:  # anything unforeseen: still one line, no traceback
        if os.environ.get("FASTLOSS_DEBUG"):
            raise
        _say(f"error: {type(e).__name__}: {e}")
        return 1
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


def _on_term(signum, frame):
    raise _Terminated()


def _say(msg: str) -> None:
    print(f"fastloss: {' '.join(str(msg).split())}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- options
_RESERVED = {"input", "target", "weight", "reduction", "grad", "out"}


def _parse_value(text: str):
    """A ``--set`` value: None, a bool, an int, a float, else the string itself."""
    low = text.strip().lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


_ARRAY_OPTIONS = {"pos_weight"}  # tensors in PyTorch: a number, or one per class


def _parse_numbers(key: str, text: str):
    """``--set pos_weight=2`` or ``--set pos_weight=1,2.5,3`` (one per class)."""
    import numpy as np

    try:
        vals = [float(t) for t in text.split(",")]
    except ValueError:
        raise UsageError(f"--set {key}= expects a number or comma-separated numbers (one "
                         f"per class), got {text!r}") from None
    return vals[0] if len(vals) == 1 and "," not in text else np.array(vals)


def parse_options(pairs, fn) -> dict:
    """``--set KEY=VALUE`` pairs as keyword options of ``fn`` (UsageError for unknown or
    malformed ones)."""
    params = inspect.signature(fn).parameters
    valid = sorted(k for k, p in params.items()
                   if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
                   and k not in _RESERVED)
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--set expects KEY=VALUE, got {pair!r}")
        if key not in valid:
            raise UsageError(
                f"unknown option {key!r} for {fn.__name__}; valid options: "
                f"{', '.join(valid) or '(none)'}"
            )
        v = _parse_value(value)
        if key in _ARRAY_OPTIONS:
            v = _parse_numbers(key, value)
        default = params[key].default
        if isinstance(default, float) and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        out[key] = v
    return out


# ------------------------------------------------------------------------------ files
def _kind(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        return "npy"
    if ext in (".parquet", ".pq"):
        return "parquet"
    raise UsageError(f"{path}: unsupported format {ext or '(no extension)'!r}; use .npy or "
                     ".parquet")


def open_npy(path: str, role: str):
    """``path`` memory-mapped read-only (never unpickled)."""
    import numpy as np

    if not os.path.exists(path):
        raise UsageError(f"{role} {path}: no such file")
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as e:
        raise DataError(f"{role} {path}: cannot be read ({e.strerror or e})") from None
    if magic != b"\x93NUMPY":  # (NumPy would call any other file "pickled data")
        raise DataError(f"{role} {path}: not a .npy file (it does not start with the .npy "
                        "magic string)")
    try:
        a = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as e:
        msg = str(e)
        if "pickle" in msg.lower() or "object" in msg.lower():
            raise DataError(f"{role} {path}: holds pickled/object data, which is never "
                            "loaded (allow_pickle=False)") from None
        if "mmap length" in msg or "larger" in msg or "size" in msg:
            raise DataError(f"{role} {path}: truncated .npy file ({msg})") from None
        raise DataError(f"{role} {path}: not a valid .npy file ({msg})") from None
    except (EOFError, OSError) as e:
        raise DataError(f"{role} {path}: not a valid .npy file ({e})") from None
    if not isinstance(a, np.ndarray):
        raise DataError(f"{role} {path}: not a .npy array")
    if a.dtype.hasobject:
        raise DataError(f"{role} {path}: holds object data, which is never loaded")
    return a


class _Source:
    """Row chunks of one array-like input (a memory-mapped .npy array).  A 0-d array (the
    target of a single 1-D sample) is one row, returned whole."""

    def __init__(self, path, role):
        self.path = path
        self.role = role
        self.array = open_npy(path, role)

    @property
    def n_rows(self) -> int:
        return self.array.shape[0] if self.array.ndim else 1

    @property
    def shape(self) -> tuple:
        return self.array.shape

    @property
    def row_bytes(self) -> int:
        a = self.array
        return max(1, a.itemsize * (a.size // a.shape[0] if a.shape[0] else 1))

    def chunk(self, lo, hi):
        return self.array[lo:hi] if self.array.ndim else self.array

    def touch(self, lo, hi):
        """Read one byte per page of rows lo .. hi (a background read-ahead: the page
        faults, and any disk reads, happen here while the kernel runs on other rows)."""
        import numpy as np

        c = self.array[lo:hi] if self.array.ndim else self.array[()]
        if np.ndim(c) == 0 or c.size == 0 or c.dtype.kind not in "fiub" or \
                not c.flags.c_contiguous:
            return 0.0  # (a Fortran-order file: each chunk is gathered by the loss anyway)
        step = max(1, 4096 // c.itemsize)
        return float(np.add.reduce(c.reshape(-1)[::step], dtype=np.float64))


def _open_source(path, role, column=None, exclude=None):
    kind = _kind(path)
    if kind == "npy":
        if column is not None:
            raise UsageError(f"--{role}-column applies to Parquet files, not {path}")
        return _Source(path, role)
    if not os.path.exists(path):
        raise UsageError(f"{role} {path}: no such file")
    from ._parquet import ParquetSource  # pyarrow: an extra

    return ParquetSource(path, role, column, exclude)


class _Output:
    """Per-sample losses written to a temporary file beside OUTPUT, renamed into place by
    :meth:`commit` only; :meth:`abort` removes it."""

    def __init__(self, path: str, force: bool):
        import tempfile

        self.path = path
        self.kind = _kind(path)
        if os.path.isdir(path):
            raise UsageError(f"output {path} is a directory")
        if os.path.exists(path) and not force:
            raise UsageError(f"output {path} exists; use --force to overwrite it")
        d = os.path.dirname(os.path.abspath(path))
        try:
            fd, self.tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.",
                                            suffix=".partial", dir=d)
        except OSError as e:
            raise UsageError(f"cannot write to output directory {d}: {e.strerror or e}") \
                from None
        os.close(fd)
        self.writer = None

    def open(self, shape, dtype):
        if self.kind == "npy":
            self.writer = _NpyWriter(self.tmp, shape, dtype)
        else:
            from ._parquet import ParquetWriter

            self.writer = ParquetWriter(self.tmp, shape, dtype)

    def write(self, lo, values):
        self.writer.write(lo, values)

    def commit(self):
        self.writer.close()
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, 0o666 & ~umask)  # mkstemp made it 0600
        os.replace(self.tmp, self.path)
        self.tmp = None

    def abort(self):
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception:  # noqa: BLE001 - best effort on the way out
                pass
        if self.tmp is not None:
            try:
                os.unlink(self.tmp)
            except OSError:
                pass
            self.tmp = None


class _NpyWriter:
    """A ``.npy`` file written front to back: the header for the final shape, then each
    chunk's bytes in row order (plain writes into the page cache: no page faults of a
    file mapping, no ``msync``)."""

    def __init__(self, path, shape, dtype):
        import numpy as np

        self.np = np
        self.f = open(path, "wb")  # noqa: SIM115 - closed by close()
        np.lib.format.write_array_header_1_0(self.f, {
            "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
            "fortran_order": False,
            "shape": tuple(shape),
        })
        self.next = 0

    def write(self, lo, values):
        if lo != self.next:  # pragma: no cover - chunks come in order
            raise RuntimeError("chunks must be written in row order")
        self.f.write(self.np.ascontiguousarray(values).tobytes() if values.ndim == 0
                     else self.np.ascontiguousarray(values).data)
        self.next = lo + (values.shape[0] if values.ndim else 1)

    def close(self):
        if self.f is not None:
            self.f.close()
            self.f = None


# ------------------------------------------------------------------------------ score
def _progress(args, total, unit_bytes):
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    import shutil

    # a terminal that reports no size (0 x 0, e.g. a fresh pseudo-terminal) makes tqdm
    # print nothing; shutil falls back to 80 x 24 there
    cols, lines = shutil.get_terminal_size()
    return tqdm(total=total, unit="rows", unit_scale=True, file=sys.stderr, disable=not show,
                ncols=cols, nrows=lines, mininterval=0.25, leave=False, desc="fastloss score")


def _class_row_error(e, t, lo):
    """The IndexError of a class index, naming the row where it is."""
    import numpy as np

    text = str(e)
    value = getattr(e, "value", None)  # set by fastloss._core.target_out_of_bounds
    if value is None or t is None:
        return DataError(text)
    ti = np.asarray(t)
    if ti.ndim == 0:  # one sample (a 1-D input): no row to name
        return DataError(text)
    # (the kernel reports a value that is out of range and not ignore_index: every row
    # holding it is bad, also for -100 where the loss has no ignore_index)
    rows = np.flatnonzero((ti.reshape(ti.shape[0], -1) == value).any(axis=1))
    where = f" at row {lo + int(rows[0])}" if rows.size else ""
    return DataError(f"{text}{where}")


def _not_an_input(output, inputs) -> None:
    """OUTPUT must not be one of the input files (``--force`` would replace it)."""
    for path in inputs:
        if path is None:
            continue
        try:
            same = os.path.samefile(output, path)
        except OSError:  # OUTPUT does not exist yet (or an input is unreadable: found later)
            same = False
        if same:
            raise UsageError(f"OUTPUT {output!r} is an input file ({path!r}); write elsewhere")


def cmd_score(args) -> int:
    import numpy as np

    import fastloss as fl

    info = fl.LOSSES.get(args.loss)
    if info is None:
        valid = ", ".join(sorted(fl.LOSSES))
        raise UsageError(f"unknown loss {args.loss!r}; valid losses: {valid}")
    fn = info.fn
    params = inspect.signature(fn).parameters
    takes_target = "target" in params
    reduction = args.reduction
    if reduction not in info.reductions:
        raise UsageError(f"--reduction {reduction!r} is not valid for {args.loss}; valid: "
                         f"{', '.join(info.reductions)}")
    if takes_target and args.target is None:
        raise UsageError(f"{args.loss} needs a TARGET file")
    if not takes_target and args.target is not None:
        raise UsageError(f"{args.loss} takes no TARGET")
    if reduction == "none" and not args.output:
        raise UsageError("--reduction none writes per-sample losses: give -o OUTPUT")
    if reduction != "none" and args.output:
        raise UsageError(f"--reduction {reduction} prints one number; -o is for none")
    options = parse_options(args.set, fn)
    if args.chunk_rows is not None and args.chunk_rows < 1:
        raise UsageError(f"--chunk-rows must be >= 1, got {args.chunk_rows}")
    if args.threads is not None:
        try:
            fl.set_num_threads(args.threads)
        except ValueError as e:
            raise UsageError(f"--threads: {e}") from None
    weight = None
    if args.weight is not None:
        if "weight" not in params:
            raise UsageError(f"{args.loss} takes no weight")
        if _kind(args.weight) != "npy":
            raise UsageError("--weight must be a .npy file")
        weight = np.asarray(open_npy(args.weight, "weight"))
    _check_options(info, options, reduction)

    if args.output:
        _not_an_input(args.output, [args.input, args.target, args.weight])
    out = _Output(args.output, args.force) if args.output else None
    try:
        value = _score(args, info, options, reduction, weight, out)
        if out is not None:
            out.commit()
    except BaseException:
        if out is not None:
            out.abort()
        raise
    if value is not None:
        print(value)
    return 0


def _check_options(info, options, reduction):
    """Options checked like the Python API, on a tiny valid example, before any data is
    read: a bad option is a usage error, not a data error."""
    import numpy as np

    # (the class axis and per-class options depend on the files' shapes: see _score)
    opts = {k: v for k, v in options.items() if k != "axis" and k not in _ARRAY_OPTIONS}
    args_, kw = info.example(np.dtype(np.float64))
    kw = {k: v for k, v in kw.items() if k not in opts}
    try:
        info.fn(*args_, **kw, **opts, reduction=reduction, grad=False)
    except (ValueError, TypeError) as e:
        raise UsageError(str(e)) from None
    except IndexError:
        pass  # an ignore_index / class-count interplay of the example, not the option


def _score(args, info, options, reduction, weight, out):
    import numpy as np

    same = args.target is not None and os.path.abspath(args.target) == os.path.abspath(
        args.input)
    src = _open_source(args.input, "input", args.input_column,
                       exclude=(args.target_column or "target") if same else None)
    if len(src.shape) == 0:
        raise DataError(f"input {args.input}: a 0-d array has no rows to chunk")
    params = inspect.signature(info.fn).parameters
    row_wise = "axis" in params or info.name == "multi_margin_loss"  # classes along an axis
    one_sample = row_wise and len(src.shape) == 1  # a 1-D input is one sample
    tgt = None
    if args.target is not None:
        tgt = _open_source(args.target, "target", args.target_column)
        if not one_sample and (len(tgt.shape) == 0 or tgt.n_rows != src.n_rows):
            raise DataError(f"input has {src.n_rows} rows but target has "
                            f"{tgt.n_rows if len(tgt.shape) else 'none (0-d)'}")
    _adopt_width(src, tgt)
    n = src.n_rows
    rows = args.chunk_rows or max(1, CHUNK_BYTES // src.row_bytes)
    if one_sample:
        rows = max(n, 1)  # a single chunk: the sample's classes are not split
    if row_wise and "axis" in params:
        _check_axis(options.get("axis", params["axis"].default), src.shape, one_sample)
    _check_per_class(options, src.shape)
    # a full-shape weight (e.g. binary_cross_entropy's) is chunked with the rows
    chunk_weight = (
        weight is not None and not one_sample and n > 1 and weight.ndim == len(src.shape)
        and weight.shape[0] == n
    )
    from fastloss import _chunked

    counts = None
    if reduction in ("mean", "batchmean"):
        counts = _mean_counts(info, src, tgt, options, rows, one_sample)
    try:
        plan = _chunked.mean_plan(info.name, counts, reduction,
                                  weight=None if chunk_weight else weight, **options)
    except (ValueError, TypeError) as e:
        # (the options alone passed _check_options: what is left is the weight file)
        if weight is not None:
            raise DataError(f"weight {args.weight}: {e}") from None
        raise UsageError(str(e)) from None
    bar = None  # started once the first chunk has computed: an error there is one line
    total = np.zeros(1)
    dtype = None
    t0 = time.perf_counter()
    pool = ThreadPoolExecutor(1)
    try:
        lo, hi = 0, min(n, rows)
        cur = _read(src, tgt, lo, hi)
        while True:
            # read the next chunk (page faults / Parquet decoding) while this one computes
            ahead = pool.submit(_touch_all, src, tgt, hi, min(n, hi + rows)) if hi < n \
                else None
            x, t = cur
            call = [x] if t is None else [x, t]
            if chunk_weight:
                call.append(weight[lo:hi])
            try:
                res = _chunked.chunk_loss(plan, *call, grad=False)
            except IndexError as e:
                raise _class_row_error(e, t, lo) from None
            except (ValueError, TypeError) as e:
                raise DataError(f"{_where(src, one_sample, lo, hi)}: {e}") from None
            if dtype is None:
                dtype = np.asarray(x).dtype
            if out is not None:
                per = np.asarray(res.loss)
                if out.writer is None:  # PyTorch's "none" shape (0-d for one 1-D sample)
                    out.open(per.shape if one_sample else (n,) + per.shape[1:], per.dtype)
                out.write(lo, per)
            else:
                with np.errstate(all="ignore"):  # +inf and -inf chunk totals: NaN, quietly
                    total = total + res.loss
            if bar is None:
                bar = _progress(args, n, src.row_bytes)
            if bar is not None:
                bar.update(hi - lo)
                dt = time.perf_counter() - t0
                if dt > 0:
                    bar.set_postfix_str(f"{hi * src.row_bytes / dt / 1e6:.0f} MB/s",
                                        refresh=False)
            if ahead is None:
                break
            ahead.result()
            lo, hi = hi, min(n, hi + rows)
            cur = _read(src, tgt, lo, hi)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if bar is not None:
            bar.close()
    if out is not None:
        return None
    return _chunked.finish(plan, total, dtype if dtype is not None else np.dtype(np.float64))


def _adopt_width(src, tgt):
    """An empty variable-size Parquet list column has no width of its own: it takes the
    other file's (so an empty input and an empty target of the same shape match)."""
    if tgt is None:
        return
    for a, b in ((src, tgt), (tgt, src)):
        if getattr(a, "width_unknown", False) and len(b.shape) == 2 and len(a.shape) == 2 \
                and not getattr(b, "width_unknown", False):
            a.shape = (a.shape[0], b.shape[1])
            a.width = b.shape[1]


def _check_axis(ax, shape, one_sample):
    """``--set axis=`` against the input's dimensions (a usage error, before any data is
    read): an integer naming a dimension other than the batch axis 0 the files are
    chunked along (a 1-D input is one sample: its only axis)."""
    nd = len(shape)
    if not isinstance(ax, int) or isinstance(ax, bool) or not -nd <= ax < nd:
        raise UsageError(f"--set axis={ax}: the class axis must be an integer in "
                         f"[{-nd}, {nd}) for the {nd}-D input of shape {tuple(shape)}")
    if not one_sample and ax % nd == 0:
        raise UsageError(f"--set axis={ax} is the batch axis 0 the files are chunked along; "
                         "the classes must lie along another axis")


def _check_per_class(options, shape):
    """A ``--set pos_weight=...`` list must broadcast against one row of the input."""
    import numpy as np

    row = (1,) + tuple(shape[1:])
    for key in _ARRAY_OPTIONS & options.keys():
        v = np.asarray(options[key])
        try:
            ok = np.broadcast_shapes(v.shape, row) == row
        except ValueError:
            ok = False
        if not ok:
            raise UsageError(f"--set {key}: {v.size} value(s) do not broadcast against the "
                             f"input's rows of shape {tuple(shape[1:])} (shape "
                             f"{tuple(shape)}); give one number or one per class")


def _io(source, method, lo, hi):
    """``source.chunk`` / ``source.touch``, a failure to read naming the file (a corrupt
    Parquet page, an I/O error on a memory-mapped page)."""
    try:
        return getattr(source, method)(lo, hi)
    except (CLIError, MemoryError):
        raise
    except Exception as e:
        raise DataError(f"{source.role} {source.path}: cannot read rows {lo}..{hi - 1} "
                        f"({type(e).__name__}: {e})") from None


def _read(src, tgt, lo, hi):
    return _io(src, "chunk", lo, hi), (None if tgt is None else _io(tgt, "chunk", lo, hi))


def _touch_all(src, tgt, lo, hi):
    _io(src, "touch", lo, hi)
    if tgt is not None:
        _io(tgt, "touch", lo, hi)


def _mean_counts(info, src, tgt, options, rows, one_sample):
    """First pass, over the targets only: what the mean's denominator needs (the class
    weights of the non-ignored targets, rows, elements; ``fastloss/_chunked.py``)."""
    from fastloss import _chunked

    n = src.n_rows
    counts = []
    for lo in range(0, max(n, 1), rows):
        hi = min(n, lo + rows)
        t = None if tgt is None else _io(tgt, "chunk", lo, hi)
        try:
            counts.append(_chunked.mean_counts(info.name, (hi - lo,) + tuple(src.shape[1:]), t,
                                               **options))
        except IndexError as e:
            row = getattr(e, "row", None)
            if row is not None:
                raise DataError(f"{e} at row {lo + row}") from None
            raise _class_row_error(e, t, lo) from None
        except (ValueError, TypeError) as e:
            raise DataError(f"{_where(src, one_sample, lo, hi)}: {e}") from None
    return _chunked.merge(counts)


def _where(src, one_sample, lo, hi) -> str:
    """Where a data error is: the rows of the chunk, or the one sample of a 1-D input."""
    if one_sample:
        return f"input {src.path} is 1-D, one sample of {src.n_rows} classes"
    return f"rows {lo}..{hi - 1}"


# ----------------------------------------------------------------------------- warmup
def cmd_warmup(args) -> int:
    import fastloss as fl

    dtypes = args.dtype or ["float32", "float64"]
    t0 = time.perf_counter()
    try:
        spent = fl.warmup(args.names or None, dtypes=dtypes, processes=max(1, args.jobs))
    except ValueError as e:
        raise UsageError(str(e)) from None
    for name, s in spent.items():
        print(f"{name}\t{s:.2f} s")
    print(f"total\t{time.perf_counter() - t0:.2f} s")
    return 0



# ------------------------------------------------------------------------------ bench
def cmd_bench(args) -> int:
    from . import _bench  # PyTorch, JAX, matplotlib: imported there, each optional

    try:
        return _bench.main(args)
    except _bench.UsageError as e:
        raise UsageError(str(e)) from None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
