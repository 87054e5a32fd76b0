"""The dataset digest: full strength, typed, and independent of row order and batching."""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import itertools
import json
import math
import random
import re
import struct
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from raymlops.data import digest as dg
from raymlops.data.digest import (
    DigestPartial,
    P,
    digest_table,
    finish_digest,
    partial_digest,
    partial_from_text,
    partial_to_text,
    type_families,
)
from raymlops.errors import DataError

D = decimal.Decimal

# --- an independent, straightforward reference: pure Python, one value at a time ------

_NS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}


def _ref_family(t: pa.DataType) -> str:
    if pa.types.is_dictionary(t):
        return _ref_family(t.value_type)
    checks = [
        (pa.types.is_null, "null"), (pa.types.is_integer, "int"),
        (pa.types.is_floating, "float"), (pa.types.is_boolean, "bool"),
        (lambda x: pa.types.is_string(x) or pa.types.is_large_string(x), "string"),
        (lambda x: (pa.types.is_binary(x) or pa.types.is_large_binary(x)
                    or pa.types.is_fixed_size_binary(x)), "binary"),
        (pa.types.is_decimal, "decimal"), (pa.types.is_date, "date"),
        (pa.types.is_time, "time[ns]"), (pa.types.is_duration, "duration[ns]"),
    ]
    if pa.types.is_timestamp(t):
        return "timestamp[ns]" if t.tz is None else f"timestamp[ns,{t.tz}]"
    for check, family in checks:
        if check(t):
            return family
    return "other"


def _ref_json_default(o: object) -> object:
    if isinstance(o, bytes):
        return {"$bytes": o.hex()}
    if isinstance(o, D):
        return {"$decimal": _ref_decimal(o)}
    raise TypeError(type(o))


def _ref_decimal(d: decimal.Decimal) -> str:
    text = format(d.normalize(), "f")
    return "0" if text == "-0" else text


def _ref_value(value: Any, t: pa.DataType) -> bytes:
    """tag + 8-byte big-endian length + payload, following the module's documentation."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    if value is None:
        return b"\x00" + (0).to_bytes(8, "big")
    if pa.types.is_integer(t):
        tag, payload = 0x01, str(value).encode()
    elif pa.types.is_floating(t):
        f = float(value)
        payload = (b"\x7f\xf8" + bytes(6)) if math.isnan(f) else struct.pack(">d", f)
        tag = 0x02
    elif pa.types.is_boolean(t):
        tag, payload = 0x03, bytes([1 if value else 0])
    elif pa.types.is_string(t) or pa.types.is_large_string(t):
        tag, payload = 0x04, value.encode("utf-8")
    elif pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        tag, payload = 0x05, bytes(value)
    elif pa.types.is_decimal(t):
        tag, payload = 0x06, _ref_decimal(value).encode()
    elif pa.types.is_date(t):
        tag, payload = 0x07, str((value - dt.date(1970, 1, 1)).days).encode()
    elif pa.types.is_timestamp(t):
        tag, payload = 0x08, str(value * _NS[t.unit]).encode()
    elif pa.types.is_time(t):
        tag, payload = 0x09, str(value * _NS[t.unit]).encode()
    elif pa.types.is_duration(t):
        tag, payload = 0x0A, str(value * _NS[t.unit]).encode()
    else:
        tag = 0x0F
        payload = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                             default=_ref_json_default).encode()
    return bytes([tag]) + len(payload).to_bytes(8, "big") + payload


def _values(col: pa.ChunkedArray) -> list[Any]:
    """Python values; the stored integers of timestamps, times and durations (as_py would
    round nanoseconds and cannot hold years beyond 9999)."""
    t = col.type
    if pa.types.is_timestamp(t) or pa.types.is_duration(t) or pa.types.is_time64(t):
        return col.cast(pa.int64()).to_pylist()
    if pa.types.is_time32(t):
        return col.cast(pa.int32()).to_pylist()
    return col.to_pylist()


def reference_digest(table: pa.Table) -> str:
    names = sorted(table.column_names)
    cols = [(_values(table.column(n)), table.column(n).type) for n in names]
    total = 0
    for i in range(table.num_rows):
        row = b"".join(_ref_value(vals[i], t) for vals, t in cols)
        total = (total + int.from_bytes(hashlib.sha256(row).digest(), "big")) % P
    doc = {"v": 2, "columns": [[n, _ref_family(table.schema.field(n).type)] for n in names],
           "rows": table.num_rows, "sum": format(total, "064x")}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


# --- fixtures --------------------------------------------------------------------------

def known_table() -> pa.Table:
    return pa.table({
        "id": pa.array([1, 2**53 + 1, None, -7], pa.int64()),
        "x": pa.array([1.5, float("nan"), None, -0.0], pa.float64()),
        "nothing": pa.nulls(4),
        "name": pa.array(["a", "", None, "héllo"], pa.string()),
        "flag": pa.array([True, False, None, True], pa.bool_()),
        "price": pa.array([D("1.50"), D("-0.01"), None, D("100.00")], pa.decimal128(9, 2)),
        "at": pa.array([0, 1_700_000_000_123_456_789, None, -1], pa.timestamp("ns", "UTC")),
    })


#: The digest of known_table(); a change here is a change of every stored digest.
KNOWN_DIGEST = "sha256:587eab4fe8067ce9587a1f9fe636fd4fadb2244d5fd4b0485f6737661c57f135"


def random_table(rows: int = 300, seed: int = 7) -> pa.Table:
    rng = random.Random(seed)

    def maybe(v: Any) -> Any:
        return None if rng.random() < 0.15 else v

    floats = [1.0, 0.0, -0.0, math.inf, -math.inf, math.nan, 1e-300, 2.0**53]
    words = ["", "a", "ab", "b", "Zürich", "日本", "a\x00b"]
    return pa.table({
        "i64": pa.array([maybe(rng.randint(-2**63, 2**63 - 1)) for _ in range(rows)], pa.int64()),
        "u64": pa.array([maybe(rng.randint(0, 2**64 - 1)) for _ in range(rows)], pa.uint64()),
        "i8": pa.array([maybe(rng.randint(-128, 127)) for _ in range(rows)], pa.int8()),
        "f64": pa.array([maybe(rng.choice([*floats, rng.uniform(-1e6, 1e6)]))
                         for _ in range(rows)], pa.float64()),
        "f32": pa.array([maybe(rng.choice([1.5, -2.25, math.nan, rng.random()]))
                         for _ in range(rows)], pa.float32()),
        "f16": pa.array(np.array([rng.choice([0.5, 1.0, 65504.0]) for _ in range(rows)],
                                 dtype=np.float16)),
        "b": pa.array([maybe(rng.random() < 0.5) for _ in range(rows)], pa.bool_()),
        "s": pa.array([maybe(rng.choice(words) * rng.randint(0, 3)) for _ in range(rows)]),
        "ls": pa.array([maybe(rng.choice(words)) for _ in range(rows)], pa.large_string()),
        "cat": pa.array([maybe(rng.choice(words)) for _ in range(rows)]).dictionary_encode(),
        "bin": pa.array([maybe(rng.randbytes(rng.randint(0, 9))) for _ in range(rows)]),
        "fsb": pa.array([maybe(rng.randbytes(3)) for _ in range(rows)], pa.binary(3)),
        "dec": pa.array([maybe(D(rng.randint(-10**12, 10**12)).scaleb(-rng.randint(0, 6)))
                         for _ in range(rows)], pa.decimal128(20, 8)),
        "tiny": pa.array([maybe(D(rng.randint(-99, 99)).scaleb(-10)) for _ in range(rows)],
                         pa.decimal256(40, 12)),
        "day": pa.array([maybe(rng.randint(-10**5, 10**5)) for _ in range(rows)], pa.date32()),
        "day64": pa.array([maybe(rng.randint(-10**5, 10**5) * 86_400_000)
                           for _ in range(rows)], pa.date64()),
        # seconds far beyond the int64-nanosecond range: converted exactly, never overflowing
        "ts_s": pa.array([maybe(rng.randint(-10**15, 10**15)) for _ in range(rows)],
                         pa.timestamp("s", "Europe/Zurich")),
        "ts_ns": pa.array([maybe(rng.randint(-2**62, 2**62)) for _ in range(rows)],
                          pa.timestamp("ns")),
        "t32": pa.array([maybe(rng.randint(0, 86_399_999)) for _ in range(rows)],
                        pa.time32("ms")),
        "dur": pa.array([maybe(rng.randint(-10**12, 10**12)) for _ in range(rows)],
                        pa.duration("us")),
        "lst": pa.array([maybe([rng.randint(0, 5) for _ in range(rng.randint(0, 3))])
                         for _ in range(rows)], pa.list_(pa.int64())),
        "st": pa.array([maybe({"k": rng.choice(words), "v": rng.random()})
                        for _ in range(rows)]),
        "empty": pa.nulls(rows),
    })


def one(name: str, values: list[Any], t: pa.DataType | None = None) -> str:
    return digest_table(pa.table({name: pa.array(values, t)}))


def combine(parts: list[DigestPartial]) -> DigestPartial:
    return sum(parts, DigestPartial())


# --- known answer and reference agreement -------------------------------------------------

def test_known_answer() -> None:
    got = digest_table(known_table())
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", got)
    assert got == KNOWN_DIGEST


def test_agrees_with_reference_on_known_table() -> None:
    assert digest_table(known_table()) == reference_digest(known_table())


@pytest.mark.parametrize("seed", [1, 2])
def test_agrees_with_reference_on_random_table(seed: int) -> None:
    table = random_table(seed=seed)
    assert digest_table(table) == reference_digest(table)


def test_agrees_with_reference_across_internal_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    table = random_table(rows=100)
    monkeypatch.setattr(dg, "CHUNK_ROWS", 7)
    assert digest_table(table) == reference_digest(table)
    assert digest_table(table.to_batches()[0]) == reference_digest(table)


def test_families() -> None:
    fam = type_families(random_table(rows=3).schema)
    assert fam["i64"] == fam["u64"] == fam["i8"] == "int"
    assert fam["f64"] == fam["f16"] == "float"
    assert fam["s"] == fam["ls"] == fam["cat"] == "string"
    assert fam["bin"] == fam["fsb"] == "binary"
    assert fam["day"] == fam["day64"] == "date"
    assert fam["ts_s"] == "timestamp[ns,Europe/Zurich]"
    assert fam["ts_ns"] == "timestamp[ns]"
    assert (fam["t32"], fam["dur"], fam["lst"], fam["st"], fam["empty"]) == (
        "time[ns]", "duration[ns]", "other", "other", "null")


# --- things a weak digest confuses ----------------------------------------------------------

def test_ids_beyond_float64_precision_differ() -> None:
    assert one("id", [2**53], pa.int64()) != one("id", [2**53 + 1], pa.int64())
    assert one("id", [2**64 - 1], pa.uint64()) != one("id", [2**64 - 2], pa.uint64())


def test_int_and_float_differ() -> None:
    assert one("x", [1], pa.int64()) != one("x", [1.0], pa.float64())
    # same family and same JSON header: only the typed row encoding tells them apart
    ints = partial_digest(pa.table({"x": pa.array([1], pa.int64())}))
    floats = partial_digest(pa.table({"x": pa.array([1.0], pa.float64())}))
    assert ints.total != floats.total


def test_null_and_empty_string_differ() -> None:
    assert one("s", [None], pa.string()) != one("s", [""], pa.string())


def test_null_and_nan_differ_but_all_nans_agree() -> None:
    assert one("x", [None], pa.float64()) != one("x", [math.nan], pa.float64())
    other_nan = np.array([0x7FF8_0000_0000_0001, 0xFFF8_0000_0000_0000],
                         dtype=np.uint64).view(np.float64)
    assert one("x", list(other_nan)) == one("x", [math.nan, math.nan], pa.float64())


def test_value_boundaries_between_columns_matter() -> None:
    left = pa.table({"a": ["ab"], "b": ["c"]})
    right = pa.table({"a": ["a"], "b": ["bc"]})
    assert digest_table(left) != digest_table(right)


def test_duplicated_row_changes_digest() -> None:
    table = pa.table({"a": [1, 2], "b": ["x", "y"]})
    doubled = pa.concat_tables([table, table.slice(0, 1)])
    assert digest_table(table) != digest_table(doubled)
    # and not only through the row count: the sum differs too
    assert partial_digest(table).total != partial_digest(doubled).total


def test_renaming_a_column_changes_digest() -> None:
    assert one("a", [1, 2]) != one("b", [1, 2])


def test_swapping_values_between_columns_changes_digest() -> None:
    assert (digest_table(pa.table({"a": [1], "b": [2]}))
            != digest_table(pa.table({"a": [2], "b": [1]})))


def test_timezone_is_part_of_the_digest() -> None:
    assert one("t", [0], pa.timestamp("s")) != one("t", [0], pa.timestamp("s", "UTC"))


# --- things that must agree ---------------------------------------------------------------------

def test_integer_widths_agree() -> None:
    values = [0, 5, -3, None, 2**31 - 1]
    assert one("x", values, pa.int32()) == one("x", values, pa.int64())
    assert one("x", [5, None], pa.uint8()) == one("x", [5, None], pa.int64())


def test_float_widths_agree() -> None:
    assert one("x", [1.5, None], pa.float32()) == one("x", [1.5, None], pa.float64())
    half = pa.array(np.array([1.5], dtype=np.float16))
    assert digest_table(pa.table({"x": half})) == one("x", [1.5], pa.float64())


def test_string_kinds_agree() -> None:
    values = ["a", None, "", "ü"]
    plain = one("s", values, pa.string())
    assert one("s", values, pa.large_string()) == plain
    assert one("s", values, pa.string_view()) == plain
    encoded = pa.table({"s": pa.array(values).dictionary_encode()})
    assert digest_table(encoded) == plain


def test_binary_kinds_agree() -> None:
    values = [b"ab", None, b"\x00\x01"]
    assert one("b", values, pa.binary()) == one("b", values, pa.large_binary())
    assert one("b", [b"ab"], pa.binary(2)) == one("b", [b"ab"], pa.binary())


def test_decimals_normalize() -> None:
    assert (one("d", [D("1.50"), D("-2")], pa.decimal128(5, 2))
            == one("d", [D("1.5"), D("-2.0")], pa.decimal256(10, 1)))
    assert one("d", [D("10")], pa.decimal128(5, 0)) != one("d", [D("1")], pa.decimal128(5, 0))
    # Arrow writes these with an exponent ("1.23E+4", "1.0E-7"); they still normalize
    assert (one("d", [D("12300"), D("0")], pa.decimal128(5, -2))
            == one("d", [D("12300"), D("0")], pa.decimal128(10, 0)))
    assert one("d", [D("1E-7")], pa.decimal128(20, 9)) == one("d", [D("1E-7")], pa.decimal128(9, 8))
    assert one("d", [D("1.5")], pa.decimal32(5, 2)) == one("d", [D("1.5")], pa.decimal64(9, 1))


def test_time_units_agree() -> None:
    assert one("t", [1, None], pa.timestamp("s")) == one("t", [10**9, None], pa.timestamp("ns"))
    assert one("t", [1], pa.duration("ms")) == one("t", [1000], pa.duration("us"))
    assert one("t", [1], pa.time32("s")) == one("t", [10**9], pa.time64("ns"))
    assert (one("d", [dt.date(2024, 2, 29)], pa.date32())
            == one("d", [dt.date(2024, 2, 29)], pa.date64()))


def test_date64_that_is_not_a_whole_day_is_an_error() -> None:
    with pytest.raises(DataError, match="whole day"):
        one("d", [86_400_001], pa.date64())


# --- order and batching -----------------------------------------------------------------

def test_shuffled_and_resplit_copy_gives_the_same_digest() -> None:
    table = random_table(rows=400, seed=3)
    whole = digest_table(table)
    families = type_families(table.schema)

    order = list(range(table.num_rows))
    random.Random(11).shuffle(order)
    shuffled = table.take(pa.array(order))
    cuts = [0, 1, 57, 58, 200, 399, 400]
    parts = [partial_digest(shuffled.slice(a, b - a)) for a, b in itertools.pairwise(cuts)]
    assert sum(p.rows for p in parts) == table.num_rows

    assert finish_digest(combine(parts), families) == whole
    assert finish_digest(combine(parts[::-1]), families) == whole
    as_text = [partial_to_text(p) for p in parts]
    assert finish_digest(combine([partial_from_text(s) for s in as_text[3:] + as_text[:3]]),
                         families) == whole
    # the partials also survive a trip through a pandas / Arrow column of text
    column = pd.DataFrame({"partial": as_text})["partial"]
    assert finish_digest(combine([partial_from_text(s) for s in column]), families) == whole
    assert combine(parts) == partial_digest(table)


def test_chunked_table_with_differently_split_columns() -> None:
    a = pa.chunked_array([[1, 2], [3, 4, 5]])
    b = pa.chunked_array([["p"], ["q", "r", "s"], ["t"]])
    table = pa.Table.from_arrays([a, b], names=["a", "b"])
    flat = pa.table({"a": [1, 2, 3, 4, 5], "b": ["p", "q", "r", "s", "t"]})
    assert digest_table(table) == digest_table(flat)


def test_column_order_does_not_matter() -> None:
    assert (digest_table(pa.table({"a": [1], "b": ["x"]}))
            == digest_table(pa.table({"b": ["x"], "a": [1]})))


def test_all_null_batch_combines_with_typed_batches() -> None:
    typed = pa.table({"k": [1, 2], "x": pa.array([None, None], pa.float64())})
    untyped = pa.table({"k": [1, 2], "x": pa.nulls(2)})
    assert partial_digest(typed) == partial_digest(untyped)
    families = type_families(typed.schema)
    assert finish_digest(partial_digest(untyped), families) == digest_table(typed)


def test_empty_batches() -> None:
    empty = pa.table({"a": pa.array([], pa.int64())})
    assert partial_digest(empty) == DigestPartial(0, 0)
    assert partial_digest(pd.DataFrame({"a": pd.Series([], dtype="int64")})) == DigestPartial()
    table = pa.table({"a": [1, 2]})
    assert partial_digest(table) + partial_digest(empty) == partial_digest(table)


# --- pandas -------------------------------------------------------------------------------------

def test_pandas_input_matches_arrow() -> None:
    frame = pd.DataFrame({
        "i": pd.Series([1, 2**53 + 1, -3], dtype="int64"),
        "f": [0.5, np.nan, 2.0],
        "s": ["a", None, "c"],
        "b": [True, False, True],
        "t": pd.to_datetime(["2024-01-01", "2024-06-30 12:00:00.000000001", "1969-12-31"],
                            format="ISO8601"),
    })
    seconds = [1_704_067_200, 1_719_748_800, -86_400]
    arrow = pa.table({
        "i": pa.array([1, 2**53 + 1, -3], pa.int64()),
        "f": pa.array([0.5, None, 2.0], pa.float64()),  # pandas NaN becomes an Arrow null
        "s": pa.array(["a", None, "c"], pa.string()),
        "b": pa.array([True, False, True]),
        "t": pa.array([seconds[0] * 10**9, seconds[1] * 10**9 + 1, seconds[2] * 10**9],
                      pa.timestamp("ns")),
    })
    assert digest_table(frame) == digest_table(arrow)
    assert partial_digest(frame) == partial_digest(arrow)
    assert digest_table(frame.iloc[::-1]) == digest_table(arrow)


# --- partials ---------------------------------------------------------------------------------

def test_partial_text_round_trip_and_validation() -> None:
    p = DigestPartial(12, P - 1)
    assert partial_from_text(partial_to_text(p)) == p
    assert (DigestPartial(1, P - 1) + DigestPartial(2, 5)) == DigestPartial(3, 4)
    for bad in ["", "12", "12:xyz", "-1:" + "0" * 64, "1:" + "0" * 63, "1:" + "G" * 64]:
        with pytest.raises(ValueError):
            partial_from_text(bad)
    with pytest.raises(ValueError):
        DigestPartial(1, P)


def test_duplicate_column_names_are_an_error() -> None:
    table = pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["a", "a"])
    with pytest.raises(DataError, match="duplicate"):
        digest_table(table)
