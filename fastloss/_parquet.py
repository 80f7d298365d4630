"""Parquet input and output for ``fastloss score`` (pyarrow: ``pip install 'fastloss[parquet]'``).

Inputs are streamed batch by batch (``pyarrow.parquet.ParquetFile.iter_batches``), never
read whole. The predictions are either one fixed-size-list (or equal-length list) column
of floats, giving ``(n, K)``, one float column (``(n,)``), or one float column per class
/ output, named by a common prefix (``--input-column p`` takes ``p0, p1, ...`` / ``p_0,
p_1, ...`` in the order of their numbers, so p10 follows p9). Without
``--input-column``: the file's only column, else its only list column, else every
numeric column except ``target`` (or the ``--target-column``). Targets:
``--target-column`` (default ``target``, else the file's only column). Per-sample losses
are written as one row group per chunk, in a column ``loss`` (a fixed-size list for
per-element losses of 2-D inputs).
"""

from __future__ import annotations

import numpy as np

from .cli import DataError, UsageError

__all__ = ["ParquetSource", "ParquetWriter"]


def _pa():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError(
            "Parquet files need pyarrow, which is not installed: pip install 'fastloss[parquet]'"
        ) from None
    return pa, pq


def _numeric(t) -> bool:
    import pyarrow.types as pt

    return pt.is_floating(t) or pt.is_integer(t) or pt.is_boolean(t)


def _is_list(t) -> bool:
    import pyarrow.types as pt

    return pt.is_fixed_size_list(t) or pt.is_list(t) or pt.is_large_list(t)


def _first(mask) -> int:
    """Index of the first true value of a boolean Arrow array (-1 if none)."""
    import pyarrow.compute as pc

    return pc.index(mask, True).as_py()


def _first_null_row(col) -> int:
    """First row of ``col`` that is null or (a list column) holds a null value, or -1."""
    if col.null_count:
        return _first(col.is_null())
    if _is_list(col.type):
        flat = col.flatten()
        if flat.null_count:
            import pyarrow.compute as pc

            return pc.list_parent_indices(col)[_first(flat.is_null())].as_py()
    return -1


def _first_wrong_length(col, width: int) -> int:
    """First row of a list column (without nulls) that does not hold ``width`` values, or -1;
    the total alone would accept rows of 2 and 4 values as two rows of 3."""
    if hasattr(col.type, "list_size"):  # a fixed-size list: one length by its type
        return -1 if col.type.list_size == width else 0
    import pyarrow.compute as pc

    return _first(pc.not_equal(pc.list_value_length(col), width)) if len(col) else -1


class ParquetSource:
    """Row chunks of predictions or targets from a Parquet file, read in order."""

    def __init__(self, path: str, role: str, column: str | None, exclude: str | None = None):
        pa, pq = _pa()
        self.path = path
        self.role = role
        try:
            self.file = pq.ParquetFile(path)
        except (OSError, pa.ArrowException) as e:
            raise DataError(f"{role} {path}: not a readable Parquet file ({e})") from None
        schema = self.file.schema_arrow
        names = list(schema.names)
        self.n_rows = self.file.metadata.num_rows
        self.columns, self.list_col = self._select(schema, names, column, exclude)
        first = schema.field(self.columns[0]).type
        if self.list_col:
            t = first
            self.width = t.list_size if hasattr(t, "list_size") else self._first_width()
            self.shape = (self.n_rows, self.width)
            #: a variable-size list column with no rows says nothing of its width
            self.width_unknown = self.n_rows == 0 and not hasattr(t, "list_size")
            vt = t.value_type
        elif len(self.columns) > 1:
            self.shape = (self.n_rows, len(self.columns))
            vt = first
        else:
            self.shape = (self.n_rows,)
            vt = first
        self.dtype = np.dtype(vt.to_pandas_dtype()) if _numeric(vt) else np.dtype(object)
        if len(self.columns) > 1 and not self.list_col:  # per-class columns: np.stack's type
            types = [schema.field(c).type for c in self.columns]
            if all(_numeric(t) for t in types):
                self.dtype = np.result_type(*[np.dtype(t.to_pandas_dtype()) for t in types])
        self.row_bytes = max(1, self.dtype.itemsize * (self.shape[1] if len(self.shape) > 1
                                                       else 1))
        self._it = None
        self._next = 0  # first row not yet read
        self._seen = 0  # rows decoded from the file in this pass (where the next batch starts)
        self._buf = []  # pending numpy pieces after _next's predecessor
        self._ready = {}

    def _first_width(self) -> int:
        """A variable-size list column's width: the length of its first list, in the first
        row group that has rows (an empty first row group says nothing; a file without
        rows has width 0, an empty input).  Every row is checked against it as read."""
        for i in range(self.file.num_row_groups):
            if self.file.metadata.row_group(i).num_rows == 0:
                continue
            pa, _ = _pa()
            try:
                head = next(self.file.iter_batches(batch_size=1, row_groups=[i],
                                                   columns=self.columns, use_threads=False))
            except (OSError, pa.ArrowException) as e:  # a corrupt page: name the file
                raise DataError(f"{self.role} {self.path}: cannot read its first row "
                                f"({type(e).__name__}: {e})") from None
            head = head.column(0)[:1]  # file row 0: the row groups before i are empty
            if _first_null_row(head) == 0:
                raise self._null_error(self.columns[0], head, 0)
            return len(head[0])
        return 0

    def _null_error(self, name, col, start):
        r = _first_null_row(col)
        what = "a null value inside its list" if col.null_count == 0 else "a null value"
        return DataError(f"{self.role} {self.path}: column {name!r} has {what} at row "
                         f"{start + r}")

    def _select(self, schema, names, column, exclude):
        role = self.role
        if column is not None:
            if column in names:
                t = schema.field(column).type
                if not (_is_list(t) or _numeric(t)):
                    raise DataError(f"{role} {self.path}: column {column!r} is {t}, not numeric")
                return [column], _is_list(t)
            pref = [n for n in names if n.startswith(column)
                    and n[len(column):].lstrip("_").isdigit()]
            if not pref:
                raise UsageError(f"{role} {self.path}: no column {column!r} (columns: "
                                 f"{', '.join(names)})")
            pref.sort(key=lambda n: int(n[len(column):].lstrip("_")))
            return pref, False
        if role == "target":
            if "target" in names:
                return ["target"], _is_list(schema.field("target").type)
            if len(names) == 1:
                return names, _is_list(schema.field(names[0]).type)
            raise UsageError(f"target {self.path}: several columns ({', '.join(names)}); "
                             "name one with --target-column")
        if len(names) == 1:
            return names, _is_list(schema.field(names[0]).type)
        skip = {exclude or "target"}
        lists = [n for n in names if n not in skip and _is_list(schema.field(n).type)]
        if len(lists) == 1:  # the one list column besides the target's
            return lists, True
        if len(lists) > 1:
            raise UsageError(f"input {self.path}: several list columns ({', '.join(lists)}); "
                             "name one with --input-column")
        cols = [n for n in names if n not in skip and _numeric(schema.field(n).type)]
        if not cols:
            raise UsageError(f"input {self.path}: no numeric columns; name one with "
                             "--input-column")
        return cols, False

    # -- reading in order
    def _batch_to_numpy(self, batch, start):
        """One batch as an array; ``start``: the file row of its first row (for errors)."""
        cols = []
        for name in self.columns:
            col = batch.column(batch.schema.get_field_index(name))
            if _first_null_row(col) >= 0:
                raise self._null_error(name, col, start)
            if self.list_col:
                bad = _first_wrong_length(col, self.width)
                if bad >= 0:
                    raise DataError(f"{self.role} {self.path}: column {name!r} has lists of "
                                    f"different lengths (expected {self.width}): "
                                    f"{len(col[bad])} values at row {start + bad}")
                vals = col.flatten().to_numpy(zero_copy_only=False)
                return vals.reshape(len(col), self.width)
            cols.append(col.to_numpy(zero_copy_only=False))
        if len(cols) == 1:
            return cols[0]
        return np.stack(cols, axis=1)

    def _read(self, lo, hi):
        if lo != self._next:  # a new pass (the mean's first pass over the targets)
            if lo != 0:
                raise RuntimeError("Parquet sources are read in order")  # pragma: no cover
            self._it = None
            self._next = 0
            self._seen = 0
            self._buf = []
        if self._it is None:
            self._it = self.file.iter_batches(batch_size=max(1, hi - lo), columns=self.columns,
                                              use_threads=False)
        need = hi - lo
        have = sum(p.shape[0] for p in self._buf)
        while have < need:
            try:
                b = next(self._it)
            except StopIteration:
                break
            a = self._batch_to_numpy(b, self._seen)
            self._seen += len(b)
            self._buf.append(a)
            have += a.shape[0]
        data = self._buf[0] if len(self._buf) == 1 else (
            np.concatenate(self._buf) if self._buf else np.empty((0,) + self.shape[1:],
                                                                self.dtype))
        out, rest = data[:need], data[need:]
        self._buf = [rest] if rest.shape[0] else []
        self._next = hi
        if out.shape[0] != need:
            raise DataError(f"{self.role} {self.path}: file ends at row {lo + out.shape[0]}, "
                            f"expected {self.n_rows} rows")
        return out

    def touch(self, lo, hi):
        """Read (decode) rows lo .. hi ahead, in the background thread."""
        self._ready[(lo, hi)] = self._read(lo, hi)

    def chunk(self, lo, hi):
        got = self._ready.pop((lo, hi), None)
        return got if got is not None else self._read(lo, hi)


class ParquetWriter:
    """Per-sample losses, one row group per chunk, column ``loss``."""

    def __init__(self, path, shape, dtype):
        pa, pq = _pa()
        self.pa = pa
        vt = pa.from_numpy_dtype(np.dtype(dtype))
        shape = tuple(shape) or (1,)  # one 1-D sample's loss: one row
        self.width = shape[1] if len(shape) == 2 else None
        if len(shape) > 2:
            raise UsageError("per-sample losses of more than 2 dimensions cannot be written "
                             "to Parquet; use a .npy OUTPUT")
        t = pa.list_(vt, self.width) if self.width is not None else vt
        self.schema = pa.schema([("loss", t)])
        self.writer = pq.ParquetWriter(path, self.schema)
        if shape[0] == 0:
            self.writer.write_table(self.schema.empty_table())

    def write(self, lo, values):
        pa = self.pa
        v = np.ascontiguousarray(values).reshape((-1,) + np.shape(values)[1:])
        if self.width is not None:
            arr = pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), self.width)
        else:
            arr = pa.array(v)
        self.writer.write_table(pa.Table.from_arrays([arr], schema=self.schema))

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None
