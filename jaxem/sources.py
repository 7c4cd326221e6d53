"""Data sources: data given as a sequence of row blocks instead of one array, for data larger
than memory (a ``.npy`` file, a CSV or Parquet file read in chunks) or made on the fly.

A `Source` can be iterated any number of times, each time from its first block: exact EM over a
source (`jaxem.streaming`) reads it once per iteration, online EM (`jaxem.online`) once or a few
times. Each block is ``(X_b, weights_b)``: ``X_b`` a NumPy array ``(n_b, ...)`` of the shape one
data set has for the model (``(n_b, n_features)`` for mixtures; ``(n_b, T, n_features)`` for a
hidden Markov model's sequences), ``weights_b`` its sample weights (None: all ones). Blocks may
differ in their number of rows only: their width and dtype are those of the first block
(`check_block` says which block broke this).

Supported:

- `array`: an array in memory or a ``numpy.memmap``, cut into blocks;
- `npy`: a ``.npy`` file, a block at a time at its offset (the process holds one block; the
  operating system's page cache keeps what fits for the next pass);
- `csv`: a CSV file read ``block_rows`` lines at a time (a header row skipped; with
  ``missing=True`` empty cells and ``NA``/``NaN`` are missing values);
- `parquet`: a Parquet file read in record batches (needs ``pyarrow``, the ``parquet`` extra);
- `blocks`: any list of blocks, or a function returning a fresh iterator of them (a generator
  function reading a database, a network stream, several files).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

Block = tuple[np.ndarray, "np.ndarray | None"]


class Source:
    """Row blocks, read afresh on every iteration (``for X_b, weights_b in source``).

    Args:
        make_blocks: a function returning a new iterator of ``(X_b, weights_b)`` blocks.
        description: what the source reads, for messages and progress (a file name).
        n_rows: the number of rows when known beforehand (a progress bar's total), else None.
    """

    def __init__(
        self,
        make_blocks: Callable[[], Iterator[Any]],
        description: str = "a source",
        n_rows: int | None = None,
    ):
        self._make_blocks = make_blocks
        self.description = description
        self.n_rows = n_rows

    def __iter__(self) -> Iterator[Block]:
        for index, block in enumerate(self._make_blocks()):
            yield as_block(block, index, self.description)

    def __repr__(self) -> str:
        rows = "" if self.n_rows is None else f", {self.n_rows} rows"
        return f"Source({self.description}{rows})"


def as_block(block: Any, index: int, description: str = "the source") -> Block:
    """``(X_b, weights_b)`` from a block given as an array or a pair; ``TypeError`` naming the
    block otherwise."""
    if isinstance(block, tuple) and len(block) == 2:
        X, weights = block
    else:
        X, weights = block, None
    X = np.asarray(X)
    if (
        X.ndim < 1
        or X.dtype == object
        or not (np.issubdtype(X.dtype, np.number) or X.dtype == bool)
    ):
        raise TypeError(
            f"block {index} of {description}: expected a numeric array (n_rows, ...) or a pair "
            f"(X, weights), got {type(block).__name__}"
            + (f" of dtype {X.dtype}" if X.dtype != object else "")
        )
    if weights is not None:
        weights = np.asarray(weights)
        if weights.shape != X.shape[: weights.ndim] or weights.ndim == 0:
            raise ValueError(
                f"block {index} of {description}: weights of shape {weights.shape} for rows of "
                f"shape {X.shape}"
            )
    return X, weights


def check_block(X: np.ndarray, index: int, first: np.ndarray, description: str) -> None:
    """``ValueError`` naming block ``index`` when its width (every axis but the first) or dtype
    differs from the ``first`` block's."""
    if X.shape[1:] != first.shape[1:]:
        raise ValueError(
            f"block {index} of {description} has rows of shape {X.shape[1:]}, block 0 had "
            f"{first.shape[1:]}: every block must have the same width"
        )
    if X.dtype != first.dtype:
        raise ValueError(
            f"block {index} of {description} has dtype {X.dtype}, block 0 had {first.dtype}: "
            "every block must have the same dtype"
        )


def _check_block_rows(block_rows: Any, name: str = "block_rows") -> int:
    if isinstance(block_rows, bool) or not isinstance(block_rows, (int, np.integer)):
        raise TypeError(f"{name} must be a positive integer, got {block_rows!r}")
    if block_rows < 1:
        raise ValueError(f"{name} must be a positive integer, got {block_rows}")
    return int(block_rows)


def array(X: Any, block_rows: int, weights: Any = None) -> Source:
    """``X`` ``(n_samples, ...)`` (in memory or a ``numpy.memmap``) in blocks of ``block_rows``
    rows (the last one shorter), with its sample weights ``(n_samples, ...)`` or None."""
    block_rows = _check_block_rows(block_rows)
    if not hasattr(X, "shape"):
        X = np.asarray(X)
    n = X.shape[0]

    def make_blocks():
        for start in range(0, n, block_rows):
            rows = slice(start, start + block_rows)
            w = None if weights is None else np.asarray(weights[rows])
            yield np.ascontiguousarray(X[rows]), w

    return Source(make_blocks, f"an array of {n} rows", n)


def npy(path: str | os.PathLike, block_rows: int, weights: Any = None) -> Source:
    """The array in the ``.npy`` file ``path``, read ``block_rows`` rows at a time: only the
    block in use is in memory. Blocks are read with plain file reads at their offsets rather
    than through a memory map, so that the file's pages, once used, do not count in the
    process's memory (they stay in the operating system's page cache, which serves the next
    pass). ``weights`` ``(n_samples, ...)``: in memory, or a ``numpy.memmap``."""
    block_rows = _check_block_rows(block_rows)
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    with open(path, "rb") as f:
        if f.read(6) != b"\x93NUMPY":
            raise ValueError(f"{path}: not a .npy file (as np.save writes)")
    try:
        mapped = np.load(path, mmap_mode="r")  # the header only: shape, dtype, data offset
    except ValueError as e:
        raise ValueError(f"{path}: not a .npy file ({e})") from None
    shape, dtype, offset = mapped.shape, mapped.dtype, mapped.offset
    fortran_order = mapped.ndim > 1 and not mapped.flags.c_contiguous
    del mapped
    if fortran_order or not shape or dtype.hasobject:
        raise ValueError(
            f"{path}: expected an array of rows in C order (as np.save writes it), got shape "
            f"{shape}{' in Fortran order' if fortran_order else ''} of dtype {dtype}"
        )
    n = shape[0]
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize

    def make_blocks():
        with open(path, "rb", buffering=0) as f:
            for start in range(0, n, block_rows):
                rows = min(block_rows, n - start)
                X = np.empty((rows,) + tuple(shape[1:]), dtype)
                f.seek(offset + start * row_bytes)
                if f.readinto(memoryview(X).cast("B")) != rows * row_bytes:
                    raise ValueError(f"{path}: the file ends before its {n} rows")
                w = None if weights is None else np.asarray(weights[start : start + rows])
                yield X, w

    return Source(make_blocks, path, n)


MISSING_CELLS = ("", "NA", "NaN", "nan", "N/A")


def csv(
    path: str | os.PathLike,
    block_rows: int,
    *,
    header: bool = True,
    delimiter: str = ",",
    columns: Iterable[int] | None = None,
    missing: bool = False,
    dtype: Any = np.float64,
) -> Source:
    """The numeric CSV file ``path``, ``block_rows`` lines at a time.

    Args:
        header: whether the first line names the columns (it is skipped).
        delimiter: the field separator.
        columns: the column indices to read (default: all).
        missing: read empty cells and ``NA``, ``NaN``, ``N/A`` as missing values (NaN), for a
            model with missing values; without it such a cell is an error naming its lines.
        dtype: the blocks' floating dtype.
    """
    block_rows = _check_block_rows(block_rows)
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    usecols = None if columns is None else [int(c) for c in columns]

    def parse(lines: list[str], first_line: int) -> np.ndarray:
        try:
            if missing:
                return np.genfromtxt(
                    lines,
                    delimiter=delimiter,
                    usecols=usecols,
                    dtype=dtype,
                    missing_values=MISSING_CELLS,
                    filling_values=np.nan,
                    invalid_raise=True,
                    ndmin=2,
                )
            return np.loadtxt(lines, delimiter=delimiter, usecols=usecols, dtype=dtype, ndmin=2)
        except ValueError as e:
            last = first_line + len(lines) - 1
            raise ValueError(
                f"{path}, lines {first_line}-{last}: {e}"
                + ("" if missing else " (empty or NA cells: pass missing=True)")
            ) from None

    def make_blocks():
        with open(path, encoding="utf-8-sig") as f:
            line = 1
            if header:
                names = next(f, "").strip()
                if names and all(is_number(cell) for cell in names.split(delimiter)):
                    raise ValueError(
                        f"{path}: the first line ({names[:60]}) holds numbers only: it looks "
                        "like data, not a header row; pass header=False"
                    )
                line = 2
            while True:
                lines = [row for row in itertools.islice(f, block_rows) if row.strip()]
                if not lines:
                    return
                yield parse(lines, line), None
                line += len(lines)

    return Source(make_blocks, path)


def is_number(cell: str) -> bool:
    """Whether the text ``cell`` reads as a number (``float`` accepts it)."""
    try:
        float(cell)
    except ValueError:
        return False
    return True


def parquet(
    path: str | os.PathLike, block_rows: int, columns: list[str] | None = None, dtype: Any = None
) -> Source:
    """The numeric columns ``columns`` (default: all) of the Parquet file ``path``, read in
    record batches of at most ``block_rows`` rows (needs ``pyarrow``); nulls are NaN, missing
    values for a model that has them. ``dtype``: the blocks' dtype (default float64)."""
    block_rows = _check_block_rows(block_rows)
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(
            "reading Parquet needs pyarrow: pip install 'jaxem[parquet]' (or pyarrow)"
        ) from None
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    dtype = np.dtype(np.float64 if dtype is None else dtype)
    n_rows = pq.ParquetFile(path).metadata.num_rows

    def make_blocks():
        table = pq.ParquetFile(path)
        for batch in table.iter_batches(batch_size=block_rows, columns=columns):
            X = np.column_stack(
                [
                    column.to_numpy(zero_copy_only=False).astype(dtype, copy=False)
                    for column in batch.columns
                ]
            )
            yield X, None

    return Source(make_blocks, path, n_rows)


def blocks(data: Iterable[Any] | Callable[[], Iterable[Any]], n_rows: int | None = None) -> Source:
    """A source from a list (or tuple) of blocks, each an array or a pair ``(X_b, weights_b)``,
    or from a function returning a fresh iterable of them (called once per pass: a generator
    function). A one-shot iterator (a generator object) is refused: EM reads its data many
    times."""
    if callable(data):
        return Source(lambda: iter(data()), "a function's blocks", n_rows)
    if isinstance(data, Iterator):
        raise TypeError(
            "blocks: a one-shot iterator can be read once, and EM reads its data once per "
            "iteration: pass a list of blocks, or a function returning a fresh iterator (the "
            "generator function itself, not a generator object)"
        )
    data = list(data)
    if n_rows is None:
        n_rows = sum(np.shape(b[0] if isinstance(b, tuple) else b)[0] for b in data)
    return Source(lambda: iter(data), f"a list of {len(data)} blocks", n_rows)


def first_rows(source: Source, n_rows: int) -> np.ndarray:
    """The first ``n_rows`` rows of ``source`` (fewer when it has fewer), as one array: data for
    a start (``model.init(key, jaxem.sources.first_rows(source, 10_000))``)."""
    n_rows = _check_block_rows(n_rows, "n_rows")
    taken, have = [], 0
    for X, _ in source:
        taken.append(X[: n_rows - have])
        have += len(taken[-1])
        if have >= n_rows:
            break
    if not taken:
        raise ValueError(f"{source.description} has no rows")
    return np.concatenate(taken)
