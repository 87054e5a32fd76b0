"""Reading and writing tables with Ray Data, atomically where it matters."""

from __future__ import annotations

import glob
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from raymlops.errors import DataError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    import ray.data

TABLE_SUFFIXES = (".csv", ".parquet", ".pq", ".csv.gz")


def resolve_files(pattern: str, *, key: str) -> list[str]:
    """Expand a path, directory or glob into the table files it names, sorted."""
    path = Path(pattern)
    if path.is_dir():
        files = sorted(str(p) for p in path.rglob("*") if p.is_file() and _is_table(p.name))
    elif any(ch in pattern for ch in "*?["):
        files = sorted(p for p in glob.glob(pattern, recursive=True) if _is_table(p))  # noqa: PTH207
    else:
        files = [str(path)] if path.is_file() else []
    if not files:
        raise DataError(
            f"{key}: no CSV or Parquet file matches {pattern!r}; check the path "
            "(relative paths are taken from the current directory, {workdir} is expanded)"
        )
    kinds = {_kind(f) for f in files}
    if len(kinds) > 1:
        raise DataError(f"{key}: {pattern!r} mixes CSV and Parquet files; point it at one kind")
    return files


def _is_table(name: str) -> bool:
    return name.lower().endswith(TABLE_SUFFIXES)


def _kind(name: str) -> str:
    return "parquet" if name.lower().endswith((".parquet", ".pq")) else "csv"


def read_local_table(pattern: str, *, key: str) -> pd.DataFrame:
    """A table small enough for one process (reports, schemas, replays), read with pandas."""
    import pandas as pd

    files = resolve_files(pattern, key=key)
    reader = pd.read_parquet if _kind(files[0]) == "parquet" else pd.read_csv
    return pd.concat([reader(f) for f in files], ignore_index=True)


def read_parquet(paths: str | list[str]) -> ray.data.Dataset:
    """``ray.data.read_parquet`` on Ray Data's per-file reader (datasource v1).

    Ray 2.60's default reader (datasource v2) lists a folder in one ``ListFiles`` task
    and hands every file it found to a single ``ReadFiles`` task: 64 files became one
    task, so nothing ran in parallel, and a fused ``write_parquet`` (which collects its
    task's blocks before writing) held the whole dataset in one worker. Its listing task
    also asks for a whole CPU, which a node with fractional Serve replicas may never
    free. The v1 reader makes a read task per file and streams blocks, so memory stays
    bounded by the block size whatever the input size (benchmarks/preprocess_vs_pandas.py
    shows it). The setting is switched only for this call: the dataset keeps a copy of
    the context it was made with.
    """
    import ray.data

    context = ray.data.DataContext.get_current()
    before = context.use_datasource_v2
    context.use_datasource_v2 = False
    try:
        return ray.data.read_parquet(paths)
    finally:
        context.use_datasource_v2 = before


def read_table(files: list[str]) -> ray.data.Dataset:
    import ray.data

    if _kind(files[0]) == "parquet":
        return read_parquet(files)
    return ray.data.read_csv(files)


def write_parquet_atomic(ds: ray.data.Dataset, target: Path) -> Path:
    """Write ``ds`` as a Parquet folder that appears only once it is complete."""
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    ds.write_parquet(str(tmp))
    tmp.mkdir(parents=True, exist_ok=True)  # an empty dataset writes no file
    shutil.rmtree(target, ignore_errors=True)
    tmp.replace(target)
    return target


def count_rows(path: Path) -> int:
    """Rows in a Parquet folder, from the files' metadata (no data read, no Ray job)."""
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in sorted(path.glob("*.parquet")))


def arrow_schema(path: Path) -> pa.Schema | None:
    """The Arrow schema of a Parquet folder, unified over every file's footer: a part in
    which a column holds only nulls has the type ``null`` there, and must not decide it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted(path.glob("*.parquet"))
    if not files:
        return None
    return pa.unify_schemas([pq.read_schema(f) for f in files], promote_options="permissive")


def parquet_schema(path: Path) -> dict[str, str]:
    """Column name -> Arrow type of a Parquet folder (unified over its files)."""
    schema = arrow_schema(path)
    if schema is None:
        return {}
    return {name: str(schema.field(name).type) for name in schema.names}


def read_parquet_dir(path: Path) -> ray.data.Dataset:
    if not path.is_dir():
        raise DataError(f"{path} is missing; rerun the stage that writes it")
    return read_parquet(str(path))
