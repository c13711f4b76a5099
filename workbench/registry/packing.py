"""Token stats packed into one compact blob per response.

Layout (little-endian), T tokens:

    header   u8 format version, u8 flags, u32 T
    lengths  T x u8 (or T x u16 with FLAG_WIDE_LENGTHS): UTF-8 byte length of each token text
    text     the token texts' UTF-8 bytes, concatenated
    logp_old, logp_new, entropy      T x float16 each
    ratio                            T x float32 (GSPO clips at 3e-4 around 1: float16 cannot see that)
    clipped_low, clipped_high        ceil(T/8) bytes each, bit i = token i
    ref_logp   (FLAG_REF_LOGP)       T x float16
    advantage  (FLAG_ADVANTAGE_CONSTANT) one float32 | (FLAG_ADVANTAGE_PER_TOKEN) T x float16
  format 2 only, after the above:
    u8 extended flags
    sampler    (EXT_SAMPLER)         T x float16: logp_sampler - logp_old, the mismatch itself (a float16
                                     of a small difference keeps its digits; of the log-prob, it would not)
    masked     (EXT_MASKED)          ceil(T/8) bytes
    penalized  (EXT_PENALIZED)       ceil(T/8) bytes
    epochs     (EXT_EPOCHS)          u8 E, then E x (T x float32 ratio, low bits, high bits): the epochs
                                     before the last (the last is the ratio and flags above)

A blob of stats without any format-2 field is written as format 1, byte for byte what earlier versions
wrote; both formats are read. That is 10.25 bytes per token plus the text, so a typical sub-word token
costs about 15 bytes (+2 for the sampler's log-prob, +4.25 per earlier epoch). float16 keeps three
significant digits of a log-prob or an entropy, which is what a reader looks at; values beyond
float16's range (|x| > 65504) are stored as infinities.
"""

from __future__ import annotations

import array
import math
import struct
import sys

from workbench.registry.records import EpochTokens, TokenStats

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
FLAG_REF_LOGP = 1
FLAG_ADVANTAGE_CONSTANT = 2
FLAG_ADVANTAGE_PER_TOKEN = 4
FLAG_WIDE_LENGTHS = 8
EXT_SAMPLER = 1
EXT_MASKED = 2
EXT_PENALIZED = 4
EXT_EPOCHS = 8
FLOAT16_MAX = 65504.0
_HEADER = struct.Struct("<BBI")


def _float16(values: list[float]) -> bytes:
    """[T] floats -> 2T bytes; out-of-range magnitudes saturate to +-inf."""
    try:
        return struct.pack(f"<{len(values)}e", *values)
    except OverflowError:
        saturated = [v if abs(v) <= FLOAT16_MAX or math.isnan(v) else math.copysign(math.inf, v) for v in values]
        return struct.pack(f"<{len(saturated)}e", *saturated)


def _float32(values: list[float]) -> bytes:
    packed = array.array("f", values)
    if sys.byteorder != "little":
        packed.byteswap()
    return packed.tobytes()


def _bits(flags: list[bool]) -> bytes:
    """[T] booleans -> ceil(T/8) bytes, bit i of the little-endian integer = flags[i]."""
    digits = "".join("1" if flag else "0" for flag in reversed(flags))
    return int(digits or "0", 2).to_bytes((len(flags) + 7) // 8, "little")


def _unbits(data: bytes, count: int) -> list[bool]:
    digits = bin(int.from_bytes(data, "little"))[2:].zfill(count)
    return [digit == "1" for digit in reversed(digits[-count:])] if count else []


def _text(tokens: list[str]) -> tuple[bytes, bytes, bool]:
    """Token texts -> (lengths, concatenated UTF-8, wide): u8 lengths unless a token exceeds 255 bytes."""
    joined = "".join(tokens)
    if joined.isascii():
        lengths = [len(token) for token in tokens]
        data = joined.encode("ascii")
    else:
        encoded = [token.encode("utf-8") for token in tokens]
        lengths = [len(chunk) for chunk in encoded]
        data = b"".join(encoded)
    if max(lengths, default=0) > 255:
        return struct.pack(f"<{len(lengths)}H", *lengths), data, True
    return bytes(lengths), data, False


def pack_token_stats(stats: TokenStats) -> bytes:
    """TokenStats of T tokens -> one blob (layout in the module docstring). ValueError on ragged lists."""
    count = len(stats.tokens)
    columns = {
        "logp_old": stats.logp_old,
        "logp_new": stats.logp_new,
        "ratio": stats.ratio,
        "entropy": stats.entropy,
        "clipped_low": stats.clipped_low,
        "clipped_high": stats.clipped_high,
        "ref_logp": stats.ref_logp,
        "advantage": stats.advantage,
        "logp_sampler": stats.logp_sampler,
        "masked": stats.masked,
        "penalized": stats.penalized,
    }
    for index, epoch in enumerate(stats.epochs or ()):
        columns |= {f"epochs[{index}].ratio": epoch.ratio, f"epochs[{index}].clipped_low": epoch.clipped_low,
                    f"epochs[{index}].clipped_high": epoch.clipped_high}
    for name, values in columns.items():
        if values is not None and len(values) != count:
            raise ValueError(f"token stats: {name} has {len(values)} values but there are {count} tokens")
    if len(stats.epochs or ()) > 255:
        raise ValueError(f"token stats: {len(stats.epochs)} earlier epochs; at most 255 are stored")
    flags = 0
    lengths, text, wide = _text(stats.tokens)
    if wide:
        flags |= FLAG_WIDE_LENGTHS
    parts = [
        lengths,
        text,
        _float16(stats.logp_old),
        _float16(stats.logp_new),
        _float16(stats.entropy),
        _float32(stats.ratio),
        _bits(stats.clipped_low),
        _bits(stats.clipped_high),
    ]
    if stats.ref_logp is not None:
        flags |= FLAG_REF_LOGP
        parts.append(_float16(stats.ref_logp))
    if stats.advantage is not None:
        if count and all(value == stats.advantage[0] for value in stats.advantage):
            flags |= FLAG_ADVANTAGE_CONSTANT
            parts.append(_float32(stats.advantage[:1]))
        else:
            flags |= FLAG_ADVANTAGE_PER_TOKEN
            parts.append(_float16(stats.advantage))
    extended, extra = _extended(stats)
    if not extended:
        return _HEADER.pack(1, flags, count) + b"".join(parts)
    return _HEADER.pack(FORMAT_VERSION, flags, count) + b"".join(parts) + bytes([extended]) + b"".join(extra)


# Half float16's smallest subnormal: a difference below it is stored as 0.
FLOAT16_ZERO = 2.0**-25


def _difference(sampler: float, old: float) -> float:
    """sampler - old as stored: a difference float16 rounds to zero is +0.0, never -0.0 (unpacking gives
    sampler = old, whose difference is +0.0), so unpacking and packing again gives the same bytes."""
    difference = sampler - old
    return difference if abs(difference) > FLOAT16_ZERO else 0.0


def _extended(stats: TokenStats) -> tuple[int, list[bytes]]:
    """The format-2 fields present: (extended flags, their bytes in layout order)."""
    flags, parts = 0, []
    if stats.logp_sampler is not None:
        flags |= EXT_SAMPLER
        parts.append(_float16([_difference(s, o) for s, o in zip(stats.logp_sampler, stats.logp_old, strict=True)]))
    if stats.masked is not None:
        flags |= EXT_MASKED
        parts.append(_bits(stats.masked))
    if stats.penalized is not None:
        flags |= EXT_PENALIZED
        parts.append(_bits(stats.penalized))
    if stats.epochs:
        flags |= EXT_EPOCHS
        parts.append(bytes([len(stats.epochs)]))
        for epoch in stats.epochs:
            parts += [_float32(epoch.ratio), _bits(epoch.clipped_low), _bits(epoch.clipped_high)]
    return flags, parts


class _Reader:
    """Walks a blob front to back."""

    def __init__(self, blob: bytes) -> None:
        self.blob = memoryview(blob)
        self.offset = 0

    def take(self, size: int) -> bytes:
        if self.offset + size > len(self.blob):
            raise ValueError(f"token stats blob is truncated ({len(self.blob)} bytes)")
        chunk = self.blob[self.offset : self.offset + size].tobytes()
        self.offset += size
        return chunk

    def float16(self, count: int) -> list[float]:
        return list(struct.unpack(f"<{count}e", self.take(2 * count)))

    def float32(self, count: int) -> list[float]:
        values = array.array("f")
        values.frombytes(self.take(4 * count))
        if sys.byteorder != "little":
            values.byteswap()
        return values.tolist()


def unpack_token_stats(blob: bytes) -> TokenStats:
    """The inverse of pack_token_stats (values come back at their stored precision)."""
    reader = _Reader(blob)
    version, flags, count = _HEADER.unpack(reader.take(_HEADER.size))
    if version not in READABLE_VERSIONS:
        raise ValueError(f"token stats blob has format {version}; this version reads formats "
                         f"{', '.join(map(str, READABLE_VERSIONS))}")
    if flags & FLAG_WIDE_LENGTHS:
        lengths = list(struct.unpack(f"<{count}H", reader.take(2 * count)))
    else:
        lengths = list(reader.take(count))
    text = reader.take(sum(lengths))
    tokens = []
    offset = 0
    for length in lengths:
        tokens.append(text[offset : offset + length].decode("utf-8"))
        offset += length
    logp_old = reader.float16(count)
    logp_new = reader.float16(count)
    entropy = reader.float16(count)
    ratio = reader.float32(count)
    bit_bytes = (count + 7) // 8
    clipped_low = _unbits(reader.take(bit_bytes), count)
    clipped_high = _unbits(reader.take(bit_bytes), count)
    ref_logp = reader.float16(count) if flags & FLAG_REF_LOGP else None
    advantage = None
    if flags & FLAG_ADVANTAGE_CONSTANT:
        advantage = reader.float32(1) * count
    elif flags & FLAG_ADVANTAGE_PER_TOKEN:
        advantage = reader.float16(count)
    logp_sampler = masked = penalized = epochs = None
    if version >= 2:
        extended = reader.take(1)[0]
        if extended & EXT_SAMPLER:
            logp_sampler = [old + delta for old, delta in zip(logp_old, reader.float16(count), strict=True)]
        if extended & EXT_MASKED:
            masked = _unbits(reader.take(bit_bytes), count)
        if extended & EXT_PENALIZED:
            penalized = _unbits(reader.take(bit_bytes), count)
        if extended & EXT_EPOCHS:
            epochs = []
            for _ in range(reader.take(1)[0]):
                ratio_e = reader.float32(count)
                low_e = _unbits(reader.take(bit_bytes), count)
                epochs.append(EpochTokens(ratio_e, low_e, _unbits(reader.take(bit_bytes), count)))
    return TokenStats(tokens=tokens, logp_old=logp_old, logp_new=logp_new, ratio=ratio, entropy=entropy,
                      clipped_low=clipped_low, clipped_high=clipped_high, ref_logp=ref_logp, advantage=advantage,
                      logp_sampler=logp_sampler, masked=masked, penalized=penalized, epochs=epochs)
