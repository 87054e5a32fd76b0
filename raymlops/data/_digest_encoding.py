"""How the dataset digest encodes one Arrow column: one unambiguous byte string per value.

Private to ``raymlops.data.digest``, whose docstring gives the table of encodings.
Columns are encoded with pyarrow compute and numpy, not with a Python loop per value
(except the fallback for nested types).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raymlops.errors import DataError

TAG_NULL = 0x00
TAG_INT = 0x01
TAG_FLOAT = 0x02
TAG_BOOL = 0x03
TAG_STRING = 0x04
TAG_BINARY = 0x05
TAG_DECIMAL = 0x06
TAG_DATE = 0x07
TAG_TIMESTAMP = 0x08
TAG_TIME = 0x09
TAG_DURATION = 0x0A
TAG_OTHER = 0x0F

_CANONICAL_NAN = 0x7FF8000000000000
_MS_PER_DAY = 86_400_000
_NS_ZEROS = {"s": 9, "ms": 6, "us": 3, "ns": 0}
_PREFIX = 9  # tag byte + 8-byte length
_EMPTY = pa.scalar(b"", pa.large_binary())
_NULL_ENCODING = pa.scalar(bytes([TAG_NULL]) + bytes(8), pa.large_binary())


def _is_string(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t)
                or pa.types.is_string_view(t))


def _is_binary(t: pa.DataType) -> bool:
    return bool(pa.types.is_binary(t) or pa.types.is_large_binary(t)
                or pa.types.is_fixed_size_binary(t) or pa.types.is_binary_view(t))


#: (type check, family) in order; timestamps and dictionaries are handled before these


def _valid_mask(arr: pa.Array) -> np.ndarray:
    if arr.null_count == 0:
        return np.ones(len(arr), dtype=bool)
    return np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool)


def _prefixes(tags: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """An (n, 9) uint8 matrix: each row is a tag byte and an 8-byte big-endian length."""
    out = np.empty((len(tags), _PREFIX), dtype=np.uint8)
    out[:, 0] = tags
    out[:, 1:] = lengths.astype(">u8").view(np.uint8).reshape(-1, 8)
    return out


def _large_binary(lengths: np.ndarray, data: np.ndarray | pa.Buffer) -> pa.Array:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    buf = data if isinstance(data, pa.Buffer) else pa.py_buffer(np.ascontiguousarray(data))
    return pa.Array.from_buffers(pa.large_binary(), len(lengths),
                                 [None, pa.py_buffer(offsets), buf])


def _fixed(tag: int, valid: np.ndarray, payload: np.ndarray) -> pa.Array:
    """Encodings of a fixed-width column from its (n, w) big-endian payload bytes."""
    n, width = payload.shape
    full = np.empty((n, _PREFIX + width), dtype=np.uint8)
    full[:, :_PREFIX] = _prefixes(np.array([tag], dtype=np.uint8), np.array([width]))
    full[:, _PREFIX:] = payload
    encoded = _large_binary(np.full(n, _PREFIX + width, dtype=np.int64), full)
    if valid.all():
        return encoded
    return pc.if_else(pa.array(valid), encoded, _NULL_ENCODING)


def _variable(tag: int, valid: np.ndarray, payload: pa.Array) -> pa.Array:
    """Encodings of a column from its payload bytes (a binary-like array; nulls ignored)."""
    payload = payload.cast(pa.large_binary())
    if not valid.all():
        payload = pc.if_else(pa.array(valid), payload, _EMPTY)
    lengths = np.asarray(pc.binary_length(payload).to_numpy(zero_copy_only=False),
                         dtype=np.int64)
    prefix = _prefixes(np.where(valid, tag, TAG_NULL).astype(np.uint8), lengths)
    prefix_arr = _large_binary(np.full(len(valid), _PREFIX, dtype=np.int64), prefix)
    return pc.binary_join_element_wise(prefix_arr, payload, _EMPTY)


def _int_text(arr: pa.Array) -> pa.Array:
    """Exact decimal text of an integer array (Arrow's cast is exact for all widths)."""
    return arr.cast(pa.string())


def _scaled_text(ints: pa.Array, zeros: int) -> pa.Array:
    """Decimal text of ``ints * 10**zeros``, exactly: the digits with zeros appended."""
    text = _int_text(ints)
    if zeros == 0:
        return text
    return pc.if_else(pc.equal(ints, 0), "0", pc.binary_join_element_wise(
        text, "0" * zeros, ""))


def _normalized_decimal(d: decimal.Decimal) -> str:
    text = format(d.normalize(), "f")
    return "0" if text in {"-0", "0"} else text


def _decimal_text(arr: pa.Array) -> pa.Array:
    text = arr.cast(pa.string())
    plain = pc.replace_substring_regex(text, r"\.?0*$", "")
    text = pc.if_else(pc.match_substring(text, "."), plain, text)
    sci = pc.fill_null(pc.match_substring(text, "E"), False)
    if pc.any(sci).as_py():  # tiny or negative-scale values: Arrow writes an exponent
        rows = np.flatnonzero(sci.to_numpy(zero_copy_only=False))
        fixed = [_normalized_decimal(arr[int(i)].as_py()) for i in rows]
        values = text.to_pylist()
        for i, value in zip(rows, fixed, strict=True):
            values[i] = value
        text = pa.array(values, pa.string())
    return text


def _json_default(o: object) -> object:
    if isinstance(o, bytes):
        return {"$bytes": o.hex()}
    if isinstance(o, decimal.Decimal):
        return {"$decimal": _normalized_decimal(o)}
    if isinstance(o, dt.datetime | dt.date | dt.time):
        return {"$" + type(o).__name__: o.isoformat()}
    if isinstance(o, dt.timedelta):
        return {"$timedelta": [o.days, o.seconds, o.microseconds]}
    return {"$" + type(o).__name__: str(o)}


def _other_text(arr: pa.Array) -> pa.Array:
    values = [None if v is None else json.dumps(
        v, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_default)
        for v in arr.to_pylist()]
    return pa.array(values, pa.string())


def _date_days(arr: pa.Array) -> pa.Array:
    if pa.types.is_date32(arr.type):
        return arr.view(pa.int32())
    ms = np.asarray(arr.view(pa.int64()).fill_null(0).to_numpy(), dtype=np.int64)
    days, rest = np.divmod(ms, _MS_PER_DAY)
    if rest.any():
        raise DataError("a date64 value is not a whole day; store it as a timestamp[ms]")
    return pa.array(days, pa.int64())


def _float_payload(arr: pa.Array) -> np.ndarray:
    values = np.asarray(arr.cast(pa.float64()).fill_null(0.0).to_numpy(), dtype=np.float64)
    bits = values.astype(">f8").view(">u8")
    bits[np.isnan(values)] = _CANONICAL_NAN
    return bits.view(np.uint8).reshape(len(arr), 8)


def _bool_payload(arr: pa.Array) -> np.ndarray:
    values = np.asarray(arr.fill_null(False).to_numpy(zero_copy_only=False), dtype=np.uint8)
    return values.reshape(len(arr), 1)


def _null_payload(arr: pa.Array) -> np.ndarray:
    return np.empty((len(arr), 0), dtype=np.uint8)


def _temporal_text(arr: pa.Array) -> pa.Array:
    ints = arr.view(pa.int32() if pa.types.is_time32(arr.type) else pa.int64())
    return _scaled_text(ints, _NS_ZEROS[arr.type.unit])


def _same(arr: pa.Array) -> pa.Array:
    return arr


#: (type check, tag, payload as an (n, width) uint8 matrix) for fixed-width encodings
_FIXED: list[tuple[Callable[[pa.DataType], bool], int, Callable[[pa.Array], np.ndarray]]] = [
    (pa.types.is_null, TAG_NULL, _null_payload),
    (pa.types.is_floating, TAG_FLOAT, _float_payload),
    (pa.types.is_boolean, TAG_BOOL, _bool_payload),
]

#: (type check, tag, payload as a binary-like array) for variable-width encodings
_VARIABLE: list[tuple[Callable[[pa.DataType], bool], int, Callable[[pa.Array], pa.Array]]] = [
    (pa.types.is_integer, TAG_INT, _int_text),
    (_is_string, TAG_STRING, _same),
    (_is_binary, TAG_BINARY, _same),
    (pa.types.is_decimal, TAG_DECIMAL, _decimal_text),
    (pa.types.is_date, TAG_DATE, lambda arr: _int_text(_date_days(arr))),
    (pa.types.is_timestamp, TAG_TIMESTAMP, _temporal_text),
    (pa.types.is_time, TAG_TIME, _temporal_text),
    (pa.types.is_duration, TAG_DURATION, _temporal_text),
]


def _encode(arr: pa.Array) -> pa.Array:
    """Each value's encoding (tag + length + payload) as a large_binary array."""
    t = arr.type
    if pa.types.is_dictionary(t):
        return _encode(arr.dictionary_decode())
    valid = _valid_mask(arr)
    if not isinstance(t, pa.ExtensionType):
        for check, tag, fixed in _FIXED:
            if check(t):
                return _fixed(tag, valid, fixed(arr))
        for check, tag, variable in _VARIABLE:
            if check(t):
                return _variable(tag, valid, variable(arr))
    return _variable(TAG_OTHER, valid, _other_text(arr))
