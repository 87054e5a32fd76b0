"""A PII scanner for the tests: does any file a run wrote hold a raw value?

Raw bytes are searched for each value; Parquet files are decoded first (their pages are
compressed, so a byte search misses most values), and so are JSON files in MLflow's
``dataframe_split`` shape. ``columns`` maps a column name to a pattern its raw values
match (a four-digit birth year): a decoded cell of that column that matches is a hit,
and so is the column name followed by such a value in any text (``"birth_year": 1975``).
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Scan:
    hits: list[tuple[str, str]] = field(default_factory=list)  # (file, what was found)
    files: int = 0
    parquet_files: int = 0


def _walk_json(node: Any, columns: dict[str, re.Pattern[str]], where: str,
               scan: Scan) -> None:
    if isinstance(node, dict):
        names, data = node.get("columns"), node.get("data")
        if isinstance(names, list) and isinstance(data, list):
            for row in data:
                if isinstance(row, list):
                    for name, value in zip(names, row, strict=False):
                        pattern = columns.get(str(name))
                        if pattern is not None and pattern.match(str(value)):
                            scan.hits.append((where, f"{name}={value}"))
        for key, value in node.items():
            pattern = columns.get(str(key))
            if pattern is not None and not isinstance(value, dict | list) and \
                    pattern.match(str(value)):
                scan.hits.append((where, f"{key}={value}"))
            _walk_json(value, columns, where, scan)
    elif isinstance(node, list):
        for item in node:
            _walk_json(item, columns, where, scan)


def _scan_parquet(path: Path, values: list[bytes], columns: dict[str, re.Pattern[str]],
                  scan: Scan) -> None:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    scan.parquet_files += 1
    for name in table.column_names:
        cells = [str(v) for v in table.column(name).to_pylist() if v is not None]
        pattern = columns.get(name)
        for cell in cells:
            if pattern is not None and pattern.match(cell):
                scan.hits.append((str(path), f"{name}={cell}"))
                break
            raw = cell.encode()
            found = next((v for v in values if v in raw), None)
            if found is not None:
                scan.hits.append((str(path), f"{name} holds {found.decode()!r}"))
                break


def scan_for(values: list[str], root: Path, *, skip: list[Path] = (),  # type: ignore[assignment]
             extra: list[Path] = (),  # type: ignore[assignment]
             columns: dict[str, re.Pattern[str]] | None = None) -> Scan:
    """Every file under ``root`` (but ``skip``) and ``extra``, searched for ``values``."""
    columns = columns or {}
    raw_values = [v.encode() for v in values if v]
    near = [re.compile(re.escape(name).encode()
                       + rb"""["']?\s*[:=]\s*["']?(\d[\d.]*)(?![\d.\-])""")
            for name in columns]
    scan = Scan()
    for folder in extra:  # a folder asked for must be there, or the scan proves nothing
        if not folder.is_dir() or not any(p.is_file() for p in folder.rglob("*")):
            raise AssertionError(f"{folder} holds no files to scan")
    skipped = [p.resolve() for p in skip]
    paths = [p for folder in (root, *extra) if folder.exists() for p in folder.rglob("*")
             if p.is_file() and not any(s in p.resolve().parents for s in skipped)]
    for path in paths:
        scan.files += 1
        if path.suffix == ".parquet":
            _scan_parquet(path, raw_values, columns, scan)
            continue
        try:
            blob = path.read_bytes()
        except OSError:
            continue
        found = next((v for v in raw_values if v in blob), None)
        if found is not None:
            scan.hits.append((str(path), found.decode()))
        for name, pattern in zip(columns, near, strict=True):
            for match in pattern.finditer(blob):
                if columns[name].match(match[1].decode()):
                    scan.hits.append((str(path), match[0].decode(errors="replace")))
        if path.suffix == ".json" and columns:
            with contextlib.suppress(ValueError):
                _walk_json(json.loads(blob), columns, str(path), scan)
    return scan
