"""A full-strength, order-independent content digest of a tabular dataset.

Construction
------------
1. Every value is encoded, by its Arrow type, as ``tag (1 byte) + length (8 bytes,
   big-endian) + payload``. The length prefix makes a concatenation of encodings
   unambiguous: ``("ab", "c")`` and ``("a", "bc")`` encode differently.
2. A row is the concatenation of its values' encodings, columns in sorted-name order.
   The row's digest is ``SHA-256(row bytes)``, read as a 256-bit big-endian integer.
3. The dataset's row digests are summed modulo the prime ``P = 2**256 - 189``. With the
   row count this is the *partial*: ``(rows, total)``.
4. The dataset digest is ``"sha256:" + SHA-256(canonical JSON)`` of
   ``{"v": 2, "columns": [[name, family], ...], "rows": n, "sum": "<64 hex digits>"}``
   with the columns sorted by name, keys sorted and no whitespace.

Why it is order-independent
---------------------------
Addition modulo ``P`` is commutative and associative, so the sum over a multiset of
rows is the same whatever order the rows come in and however they are split into
batches or files: the partials of the parts add up (``rows`` plus ``rows``, ``total``
plus ``total`` mod ``P``) to exactly the partial of the whole. A duplicated row adds its
digest twice, so the digest is of the *multiset* of rows, not of the set.

Strength
--------
Against accidental collisions (different data, same digest by chance) it has the full
width: the row digests behave as random 256-bit values, so two different multisets
collide with probability about ``2**-256``. This is AdHash (Bellare-Micciancio) with a
256-bit modulus, and against a *deliberate* adversary who chooses many rows freely an
additive hash is weaker than its width: Wagner's generalized-birthday algorithm finds
two multisets with equal sums in roughly ``2**(2*sqrt(256)) = 2**32`` work (with large
lists). Use it to detect changed or corrupted data, not as a defence against forged
datasets; a lattice hash (LtHash) or MuHash would be needed for that.

Value encodings (tag, payload)
------------------------------
======================================  =====  ==================================
Arrow type                              tag    payload
======================================  =====  ==================================
null value of any type (and ``null``)   0x00   empty
int8..int64, uint8..uint64              0x01   exact decimal text (``"-5"``)
float16/32/64                           0x02   IEEE-754 binary64, big-endian, of the
                                               value widened to float64 (exact); every
                                               NaN encodes as ``0x7FF8000000000000``;
                                               ``-0.0`` and ``0.0`` differ (their bits do)
bool                                    0x03   one byte, 0 or 1
string, large_string, string_view       0x04   UTF-8 bytes
binary, large_binary, fixed_size_binary,
binary_view                             0x05   raw bytes
decimal32/64/128/256                    0x06   normalized exact decimal text: plain
                                               notation, no exponent, no trailing
                                               fractional zeros (``1.50`` -> ``"1.5"``,
                                               ``1.2E+4`` -> ``"12000"``)
date32, date64                          0x07   days since the epoch, decimal text
timestamp (any unit, any tz)            0x08   nanoseconds since the epoch, decimal text
time32, time64                          0x09   nanoseconds since midnight, decimal text
duration                                0x0A   nanoseconds, decimal text
dictionary<_, V>                        as V   the decoded value
anything else (list, struct, map, ...)  0x0F   JSON text of ``to_pylist()``'s value (the
                                               fallback, see below)
======================================  =====  ==================================

Units are converted to nanoseconds exactly, by appending zeros to the decimal text of
the stored integer, so no value can overflow. A timestamp's time zone is part of the
column's *type family* (``timestamp[ns,UTC]``), not of each value. ``date64`` values must
be whole days, as the Arrow format requires; one that is not is an error rather than a
silently truncated value.

The fallback (lists, structs, maps, extension types) encodes each non-null value as
``json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=True)`` with
``bytes``, ``Decimal`` and date/time objects written as small tagged JSON objects. It is
exact for the value but weaker on type: ``list<int32>`` and ``list<int64>`` with the same
numbers encode alike. It runs a Python loop per value, so it is slow on large columns.

Families and schemas
--------------------
The families (:func:`type_families`) go into the final JSON, so a column's type family
(not its exact width) is part of the digest. :func:`finish_digest` takes the families
from the *dataset's* schema, not from one batch's: a batch in which a column is all
null may carry the Arrow type ``null``, whose values all encode as the null tag exactly
as the nulls of a typed column do, so its partial combines with the others; only its
family (``"null"``) would be wrong. All batches of one dataset must have the same
column names; a batch that lacks a column hashes to different rows.

Inputs are pyarrow ``Table`` or ``RecordBatch`` objects; a pandas ``DataFrame`` is first
converted with ``pa.Table.from_pandas(df, preserve_index=False)`` (so a float ``NaN`` in
pandas becomes an Arrow null, as pandas means it).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from raymlops.data._digest_encoding import (  # noqa: F401 - the tags are re-exported
    _EMPTY,
    TAG_BINARY,
    TAG_BOOL,
    TAG_DATE,
    TAG_DECIMAL,
    TAG_DURATION,
    TAG_FLOAT,
    TAG_INT,
    TAG_NULL,
    TAG_OTHER,
    TAG_STRING,
    TAG_TIME,
    TAG_TIMESTAMP,
    _encode,
    _is_binary,
    _is_string,
)
from raymlops.errors import DataError

__all__ = [
    "DigestPartial",
    "P",
    "digest_table",
    "finish_digest",
    "partial_digest",
    "partial_from_text",
    "partial_to_text",
    "type_families",
]

#: The modulus of the row-digest sum: the largest prime below 2**256.
P: int = 2**256 - 189

#: Version of the construction, written into the digested JSON.
VERSION = 2


#: Rows hashed per internal chunk: bounds the memory of the per-row byte strings.
CHUNK_ROWS = 1 << 16


#: What the digest functions accept.
Batch: TypeAlias = pa.Table | pa.RecordBatch | pd.DataFrame


@dataclass(frozen=True)
class DigestPartial:
    """The digest state of some rows: their count and their digests' sum modulo :data:`P`.

    Partials add (``a + b``) to the partial of the union of their rows; ``DigestPartial()``
    (no rows) is the identity, so ``sum(parts, DigestPartial())`` combines a list.
    """

    rows: int = 0
    total: int = 0

    def __post_init__(self) -> None:
        if self.rows < 0 or not 0 <= self.total < P:
            raise ValueError(f"not a digest partial: rows={self.rows}, total={self.total}")

    def __add__(self, other: DigestPartial) -> DigestPartial:
        if not isinstance(other, DigestPartial):
            return NotImplemented
        return DigestPartial(self.rows + other.rows, (self.total + other.total) % P)


def partial_to_text(p: DigestPartial) -> str:
    """``"<rows>:<64 hex digits>"``: a partial as text, to travel through a string column."""
    return f"{p.rows}:{p.total:064x}"


def partial_from_text(s: str) -> DigestPartial:
    """The inverse of :func:`partial_to_text`; raises ``ValueError`` on anything else."""
    rows, sep, total = s.partition(":")
    if not sep or not rows.isdigit() or len(total) != 64 or total.strip("0123456789abcdef"):
        raise ValueError(f"not a digest partial text: {s!r}")
    return DigestPartial(int(rows), int(total, 16))


def _family(t: pa.DataType) -> str:
    if pa.types.is_dictionary(t):
        return _family(t.value_type)
    if pa.types.is_timestamp(t):
        return f"timestamp[ns,{t.tz}]" if t.tz else "timestamp[ns]"
    return next((family for check, family in _FAMILIES if check(t)), "other")


_FAMILIES: list[tuple[Callable[[pa.DataType], bool], str]] = [
    (pa.types.is_null, "null"),
    (pa.types.is_integer, "int"),
    (pa.types.is_floating, "float"),
    (pa.types.is_boolean, "bool"),
    (_is_string, "string"),
    (_is_binary, "binary"),
    (pa.types.is_decimal, "decimal"),
    (pa.types.is_date, "date"),
    (pa.types.is_time, "time[ns]"),
    (pa.types.is_duration, "duration[ns]"),
]


def type_families(schema: pa.Schema) -> dict[str, str]:
    """Column name -> type family (``"int"``, ``"float"``, ``"timestamp[ns,UTC]"``, ...).

    Pass the dataset's schema to :func:`finish_digest`, not a single batch's (a batch may
    type an all-null column as ``null``).
    """
    return {field.name: _family(field.type) for field in schema}


# --- encoding --------------------------------------------------------------------------

def _sum_digests(rows: pa.Array) -> int:
    """The sum, modulo P, of SHA-256 of each element of a large_binary array."""
    n = len(rows)
    if n == 0:
        return 0
    _, offsets_buf, data_buf = rows.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[rows.offset:rows.offset + n + 1]
    bounds = offsets.tolist()
    data = memoryview(data_buf)
    sha256 = hashlib.sha256
    digests = b"".join([sha256(data[a:b]).digest()
                        for a, b in itertools.pairwise(bounds)])
    # 32-bit limbs summed in uint64 cannot overflow below 2**32 rows per call
    limbs = np.frombuffer(digests, dtype=">u4").reshape(n, 8).sum(axis=0, dtype=np.uint64)
    return sum(int(limb) << (32 * (7 - k)) for k, limb in enumerate(limbs)) % P


def _to_arrow(batch: Batch) -> pa.Table | pa.RecordBatch:
    if isinstance(batch, pd.DataFrame):
        return pa.Table.from_pandas(batch, preserve_index=False)
    if isinstance(batch, pa.Table | pa.RecordBatch):
        return batch
    raise TypeError(f"cannot digest a {type(batch).__name__}; pass a pyarrow Table, "
                    "RecordBatch or pandas DataFrame")


def _sorted_names(names: list[str]) -> list[str]:
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise DataError(f"cannot digest a table with duplicate column names: {dupes}")
    return sorted(names)


def partial_digest(batch: Batch) -> DigestPartial:
    """The digest partial of one batch (a pyarrow Table/RecordBatch or pandas DataFrame)."""
    data = _to_arrow(batch)
    names = _sorted_names(list(data.schema.names))
    data = data.select(names)
    chunks = (data.to_batches(max_chunksize=CHUNK_ROWS) if isinstance(data, pa.Table)
              else [data.slice(i, CHUNK_ROWS) for i in range(0, data.num_rows, CHUNK_ROWS)])
    total = 0
    rows = 0
    for chunk in chunks:
        if chunk.num_rows == 0:
            continue
        if not names:  # no columns: every row is the empty byte string
            total += chunk.num_rows * int.from_bytes(hashlib.sha256(b"").digest(), "big")
        else:
            encoded = [_encode(chunk.column(i)) for i in range(len(names))]
            joined = (encoded[0] if len(encoded) == 1
                      else pc.binary_join_element_wise(*encoded, _EMPTY))
            total += _sum_digests(joined)
        rows += chunk.num_rows
    return DigestPartial(rows, total % P)


def finish_digest(partial: DigestPartial, families: dict[str, str]) -> str:
    """``"sha256:<64 hex>"`` of the dataset whose rows' partial is ``partial``.

    ``families`` is :func:`type_families` of the *dataset's* schema (column name ->
    family), the same column names as the batches that made the partial.
    """
    payload: dict[str, Any] = {
        "v": VERSION,
        "columns": [[name, families[name]] for name in sorted(families)],
        "rows": partial.rows,
        "sum": f"{partial.total:064x}",
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(text.encode("ascii")).hexdigest()


def digest_table(table: Batch) -> str:
    """The digest of a whole table in one go: :func:`partial_digest` + :func:`finish_digest`."""
    data = _to_arrow(table)
    return finish_digest(partial_digest(data), type_families(data.schema))
