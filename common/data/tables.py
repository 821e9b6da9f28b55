"""Table files (CSV or Parquet): read them as text, check and type them against the public
schema (:mod:`fedsynth.common.data.cells`), write them atomically in the declared form.

Reading detects the usual export mistakes up front (missing or empty file, another
delimiter, ragged rows) before any cell is checked.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fedsynth.common.atomic import atomic_path
from fedsynth.common.data.cells import MAX_FIELD_CHARS, ValidationReport, coerce, for_output
from fedsynth.common.data.schema import Column, Schema
from fedsynth.common.errors import DataError


# What write_table writes, by the end of the file name: a file never holds another format than
# its name says (CSV text in ``synth.xlsx``).
TABLE_SUFFIXES = {".csv": "csv", ".csv.gz": "csv.gz", ".parquet": "parquet", ".pq": "parquet"}


def table_format(path: str | Path, option: str | None = None) -> str:
    """``csv``, ``csv.gz`` or ``parquet``, from ``path``'s name; any other name is refused, the
    error naming ``option`` (e.g. ``--out``) when given."""
    name = Path(path).name.lower()
    for suffix in sorted(TABLE_SUFFIXES, key=len, reverse=True):  # .csv.gz before .csv
        if name.endswith(suffix) and len(name) > len(suffix):
            return TABLE_SUFFIXES[suffix]
    where = f"{option} {path}" if option else str(path)
    raise DataError(f"{where}: unsupported file type; a table is a {', '.join(TABLE_SUFFIXES)} file "
                    "(the format is chosen by the file name)")


def read_raw(path: str | Path, schema: Schema | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet file with every cell as a string (Parquet keeps its types).

    Detects the usual export mistakes up front: missing file, empty file, a delimiter other
    than a comma, ragged (truncated) rows.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected a CSV or Parquet file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty")
    if table_format(path) == "parquet":  # an unknown extension is refused, never guessed to be CSV
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises many kinds
            raise DataError(f"{path}: cannot read as Parquet ({exc})") from None
    return _read_csv(path, schema)


def _read_csv(path: Path, schema: Schema | None) -> pd.DataFrame:
    compression = "gzip" if path.suffix == ".gz" else None
    try:
        opener = gzip.open if compression else open
        with opener(path, "rt", encoding="utf-8", newline="") as fh:  # type: ignore[operator]
            head = fh.read(64_000)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not UTF-8 text (byte {exc.start}: {exc.object[exc.start:exc.start+1]!r}); "
            "re-export as UTF-8 CSV"
        ) from None
    first_line = head.splitlines()[0] if head.strip() else ""
    if not first_line.strip():
        raise DataError(f"{path}: no header line (file is blank)")
    if "," not in first_line and schema is not None and len(schema.columns) > 1:
        for delim, name in ((";", "semicolon"), ("\t", "tab"), ("|", "pipe")):
            if delim in first_line:
                raise DataError(
                    f"{path}: the header is split by {name}s, not commas; fedsynth reads "
                    f"comma-separated files (header: {first_line[:120]!r})"
                )
    csv.field_size_limit(MAX_FIELD_CHARS * 10)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False,
                         skipinitialspace=True, on_bad_lines="error", compression=compression,
                         encoding="utf-8")
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: malformed CSV, a row has the wrong number of fields ({exc})") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty") from None
    if df.empty:
        raise DataError(f"{path}: header only, no data rows")
    # A truncated last line shows up as a row whose trailing fields are empty strings.
    return df


def load_table(path: str | Path, schema: Schema) -> pd.DataFrame:
    """Read ``path``, validate it against ``schema`` and return typed, schema-ordered columns.

    Raises DataError listing every violation; returns nothing partial.
    """
    raw = read_raw(path, schema)
    df, report = coerce(raw, schema, str(path))
    report.raise_if_bad()
    return df


def validate_file(path: str | Path, schema: Schema) -> ValidationReport:
    raw = read_raw(path, schema)
    return coerce(raw, schema, str(path))[1]


def write_table(frames: pd.DataFrame | Iterable[pd.DataFrame], path: str | Path,
                metadata: dict[str, str] | None = None, schema: Schema | None = None) -> int:
    """Write CSV (gzipped for ``.csv.gz``) or Parquet atomically, by the file name (see
    :func:`table_format`; other names are refused before anything is written); returns the
    rows written. Parquet gets ``metadata`` as key-value pairs.

    ``frames`` is one DataFrame or an iterable of them (e.g. :meth:`Synthesizer.iter_sample`),
    written one at a time so that memory holds a single chunk whatever the table's size.
    """
    path = Path(path)
    fmt = table_format(path)
    chunks = [frames] if isinstance(frames, pd.DataFrame) else frames
    parquet = fmt == "parquet"
    if schema is not None:
        chunks = (for_output(df, schema, text=not parquet) for df in chunks)
    with atomic_path(path) as tmp:
        if parquet:
            return _write_parquet(chunks, tmp, metadata, schema)
        rows = 0
        with _csv_file(tmp, gzipped=fmt == "csv.gz") as fh:
            for i, df in enumerate(chunks):
                df.to_csv(fh, index=False, header=i == 0)
                rows += len(df)
        return rows


@contextmanager
def _csv_file(path: Path, gzipped: bool) -> Iterator[io.TextIOBase]:
    """A UTF-8 text file for CSV; gzipped with no timestamp, so equal rows give equal bytes."""
    with open(path, "wb") as raw:
        binary = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if gzipped else raw
        with binary, io.TextIOWrapper(binary, encoding="utf-8", newline="") as fh:
            yield fh


def _write_parquet(chunks: Iterable[pd.DataFrame], tmp: Path, metadata: dict[str, str] | None,
                   schema: Schema | None) -> int:
    writer, rows = None, 0
    try:
        for df in chunks:
            if writer is None:
                # Column types from the schema where known, so that a first chunk with an
                # all-missing column does not fix its type as null for the chunks after it.
                table = pa.Table.from_pandas(df, preserve_index=False, schema=_arrow_schema(df, schema))
                if metadata:
                    meta = dict(table.schema.metadata or {})
                    meta.update({k.encode(): v.encode() for k, v in metadata.items()})
                    table = table.replace_schema_metadata(meta)
                writer = pq.ParquetWriter(tmp, table.schema)
            else:
                table = pa.Table.from_pandas(df, preserve_index=False, schema=writer.schema)
            writer.write_table(table)
            rows += len(df)
    finally:
        if writer is not None:
            writer.close()
    return rows


def _arrow_schema(df: pd.DataFrame, schema: Schema | None) -> pa.Schema | None:
    if schema is None:
        return None
    declared = {c.name: _arrow_type(c) for c in schema.columns}
    declared.update({c.name: pa.int64() if c.regex_format is None else pa.string() for c in schema.ids})
    if not set(df.columns) <= set(declared):
        return None
    return pa.schema([(name, declared[name]) for name in df.columns])


def _arrow_type(col: Column) -> pa.DataType:
    if col.type == "categorical":
        return pa.string()
    if col.type == "boolean":
        return pa.bool_()
    if col.type == "datetime":
        return pa.timestamp("ns")
    return pa.int64() if col.subtype == "int" else pa.float64()
