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


def _scan_parquet(path: Path, pattern: re.Pattern[bytes] | None,
                  columns: dict[str, re.Pattern[str]], scan: Scan) -> None:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    scan.parquet_files += 1
    for name in table.column_names:
        cells = [str(v) for v in table.column(name).to_pylist() if v is not None]
        shape = columns.get(name)
        if shape is not None:
            bad = next((cell for cell in cells if shape.match(cell)), None)
            if bad is not None:
                scan.hits.append((str(path), f"{name}={bad}"))
        found = _found("\n".join(cells).encode(), pattern)
        if found is not None:
            scan.hits.append((str(path), f"{name} holds {found.decode()!r}"))


def trie_pattern(values: list[bytes]) -> re.Pattern[bytes] | None:
    """One regex that matches any of ``values``, built from their trie: Python's regex
    engine tries a plain alternation member by member at every position (a search per
    value took minutes on Ray's logs); a trie shares the prefixes and fails fast."""
    trie: dict[int, Any] = {}
    for value in values:
        node = trie
        for byte in value:
            node = node.setdefault(byte, {})
        node[-1] = {}

    def build(node: dict[int, Any]) -> bytes:
        ends = -1 in node
        branches = [re.escape(bytes([b])) + build(child) for b, child in sorted(node.items())
                    if b != -1]
        if not branches:
            return b""
        body = branches[0] if len(branches) == 1 and not ends else \
            b"(?:" + b"|".join(branches) + b")"
        return body + (b"?" if ends else b"")

    return re.compile(build(trie)) if values else None


def _found(blob: bytes, pattern: re.Pattern[bytes] | None) -> bytes | None:
    if pattern is None:
        return None
    match = pattern.search(blob)
    return match[0] if match else None


def scan_for(values: list[str], root: Path, *, skip: list[Path] = (),  # type: ignore[assignment]
             extra: list[Path] = (),  # type: ignore[assignment]
             columns: dict[str, re.Pattern[str]] | None = None) -> Scan:
    """Every file under ``root`` (but ``skip``) and ``extra``, searched for ``values``.

    A value found inside a longer one counts (the search is for bytes, as a leak would
    be, whatever surrounds them). The files are read in a child process: closing a
    descriptor of a SQLite file drops every POSIX lock this process holds on it (the
    tests hold lineage and MLflow connections), and another process may then truncate
    the WAL under a live reader (sqlite.org/howtocorrupt.html, 2.2; a test then read
    "database disk image is malformed"). A child's descriptors are its own."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    for folder in extra:  # a folder asked for must be there, or the scan proves nothing
        if not folder.is_dir() or not any(p.is_file() for p in folder.rglob("*")):
            raise AssertionError(f"{folder} holds no files to scan")
    skipped = [p.resolve() for p in skip]
    paths = [str(p) for folder in (root, *extra) if folder.exists() for p in folder.rglob("*")
             if p.is_file() and not any(s in p.resolve().parents for s in skipped)]
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
        return child.submit(_scan_files, paths, values, columns or {}).result()


def _scan_files(paths: list[str], values: list[str],
                columns: dict[str, re.Pattern[str]]) -> Scan:
    pattern = trie_pattern(sorted({v.encode() for v in values if v}))
    near = [re.compile(re.escape(name).encode()
                       + rb"""["']?\s*[:=]\s*["']?(\d[\d.]*)(?![\d.\-])""")
            for name in columns]
    scan = Scan()
    for path in map(Path, paths):
        scan.files += 1
        if path.suffix == ".parquet":
            _scan_parquet(path, pattern, columns, scan)
            continue
        try:
            blob = path.read_bytes()
        except OSError:
            continue
        found = _found(blob, pattern)
        if found is not None:
            scan.hits.append((str(path), found.decode()))
        for name, context in zip(columns, near, strict=True):
            for match in context.finditer(blob):
                if columns[name].match(match[1].decode()):
                    scan.hits.append((str(path), match[0].decode(errors="replace")))
        if path.suffix == ".json" and columns:
            with contextlib.suppress(ValueError):
                _walk_json(json.loads(blob), columns, str(path), scan)
    return scan


def session_logs() -> Path:
    """This process's Ray's logs. Not /tmp/ray/session_latest: that is whichever Ray on
    the machine started last (the other pytest worker's, or a test's own head)."""
    from ray._private.worker import _global_node

    assert _global_node is not None, "no Ray in this process"
    return Path(_global_node.get_session_dir_path()) / "logs"
