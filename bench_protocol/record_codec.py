"""How a cell record is stored in Redis: compact, and read back as it was recorded.

A record's raw series (``latencies_ms`` and each list of ``phase_latencies_ms``) are the
evidence behind its statistics and grow with the iterations: a fast cell keeps thousands. In
Redis they are float32 (about 7 significant digits: more than a timer's resolution at these
magnitudes), byte-shuffled (the sign, exponent and high mantissa bytes of similar numbers
compress to almost nothing) and LZMA-compressed; the record's compact JSON is zlib-compressed
with a preset dictionary of a typical record's keys and strings (``record_dictionary.json``,
fixed for this format), so a record's fields cost little more than their numbers:

    b"bcr1" + uint32 length of zJSON + zJSON + lzma(shuffled float32 bytes)

where each series in the JSON is a placeholder ``{"$f32": count}``, filled in order on reading.
The low mantissa bytes of real timings are noise and do not compress: about 2.5-3 bytes per
value remain, so a 1,000-iteration record costs under 4 KB.
Values that are not such a record (older plain-JSON records) are read as JSON. ``results.json``
holds the series as plain numbers again, each the shortest decimal of its float32.
"""

from __future__ import annotations

import functools
import json
import lzma
import struct
import zlib
from pathlib import Path

MAGIC = b"bcr1"
PLACEHOLDER = "$f32"
# Raw LZMA2 (no container headers), a window far above any record's size.
_LZMA = dict(format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": 9, "dict_size": 1 << 20}])


@functools.lru_cache(maxsize=1)
def _zdict() -> bytes:
    return (Path(__file__).parent / "record_dictionary.json").read_bytes()


def _slots(record: dict, is_slot):
    """(container, key) of every raw-series slot in ``record`` whose value ``is_slot`` accepts,
    in a fixed order: ``latencies_ms``, then each of ``phase_latencies_ms``."""
    if is_slot(record.get("latencies_ms")):
        yield record, "latencies_ms"
    phases = record.get("phase_latencies_ms")
    if isinstance(phases, dict):
        for key, value in phases.items():
            if is_slot(value):
                yield phases, key


def _is_series(value) -> bool:
    return isinstance(value, list)


def _is_placeholder(value) -> bool:
    return isinstance(value, dict) and PLACEHOLDER in value


def encode(record: dict) -> bytes:
    import numpy as np

    rec = dict(record)
    if isinstance(rec.get("phase_latencies_ms"), dict):
        rec["phase_latencies_ms"] = dict(rec["phase_latencies_ms"])
    arrays = []
    for holder, key in list(_slots(rec, _is_series)):
        arr = np.asarray(holder[key], dtype="<f4")
        arrays.append(arr)
        holder[key] = {PLACEHOLDER: int(arr.size)}
    head = json.dumps(rec, separators=(",", ":"), allow_nan=False).encode()
    packer = zlib.compressobj(9, zdict=_zdict())
    zhead = packer.compress(head) + packer.flush()
    raw = np.concatenate(arrays) if arrays else np.empty(0, dtype="<f4")
    shuffled = raw.view(np.uint8).reshape(-1, 4).T.tobytes()  # byte 0 of every value, then byte 1...
    return MAGIC + struct.pack("<I", len(zhead)) + zhead + (lzma.compress(shuffled, **_LZMA) if shuffled else b"")


def shortest_floats(arr) -> list[float]:
    """float32 values as Python floats, each the shortest decimal that reads back as the same
    float32 (12.3456, not 12.345600128173828)."""
    import numpy as np

    arr = np.asarray(arr, dtype="<f4")
    out = np.empty(arr.size, dtype=np.float64)
    todo = np.arange(arr.size)
    for digits in range(6, 10):  # 9 significant digits always round-trip a float32
        if not todo.size:
            break
        text = np.char.mod(f"%.{digits}g", arr[todo].astype(np.float64))
        cand = text.astype(np.float64)
        exact = cand.astype("<f4") == arr[todo]
        if digits == 9:
            exact[:] = True
        out[todo[exact]] = cand[exact]
        todo = todo[~exact]
    return out.tolist()


def decode(value) -> dict:
    """A stored record (bytes from Redis, or a JSON string) as the record it was."""
    if isinstance(value, str):
        return json.loads(value)
    if not value.startswith(MAGIC):
        return json.loads(value)
    import numpy as np

    (n_head,) = struct.unpack_from("<I", value, len(MAGIC))
    at = len(MAGIC) + 4
    unpacker = zlib.decompressobj(zdict=_zdict())
    rec = json.loads(unpacker.decompress(value[at:at + n_head]) + unpacker.flush())
    tail = value[at + n_head:]
    shuffled = np.frombuffer(lzma.decompress(tail, **_LZMA) if tail else b"", dtype=np.uint8)
    values = shuffled.reshape(4, -1).T.copy().view("<f4").ravel() if shuffled.size else np.empty(0, dtype="<f4")
    at = 0
    for holder, key in list(_slots(rec, _is_placeholder)):
        n = holder[key][PLACEHOLDER]
        holder[key] = shortest_floats(values[at:at + n])
        at += n
    return rec
