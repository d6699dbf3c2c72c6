"""A deterministic generator of realistic CDRs, with fault injection.

Pure: no I/O. For a seed (and a simulated clock) it yields the same records in
the same order. Each record says what it is (``kind``): ``valid``, ``late`` (a
valid record whose event time lags the clock by more than the aggregation's
watermark), or the name of the rule it was made to fail (see
``schemas.rules``); undecodable values also name their flavour.

Keys: the ``call_id`` as UTF-8. A duplicate therefore lands on the partition of
its first copy, which keeps the validator's dedup state partition-local.

Streams: the subscribers and towers come from the seed alone; ``stream`` (0, 1, ...)
picks one of several independent record sequences over that population, each as
deterministic as the seed's own (stream 0). ``kappa produce --workers N`` runs
streams 0..N-1 side by side.
"""

from __future__ import annotations

import hashlib
import random
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from producers.clock import Clock
from schemas import rules
from schemas.codec import varint as _varint

Encode = Callable[[dict[str, Any]], bytes]

TOWER_COUNT = 50
SUBSCRIBER_COUNT = 5000
CALL_TYPE_WEIGHTS = (("VOICE", 0.60), ("SMS", 0.25), ("DATA", 0.15))
SIGNAL_WEIGHTS = (0.05, 0.10, 0.25, 0.35, 0.25)  # bars 1..5
# Behind the clock by more than watermark (10 min) + window (5 min): the window has closed.
LATE_MIN_MS, LATE_MAX_MS = 16 * 60_000, 45 * 60_000
FUTURE_MS = 24 * 3600_000
UNKNOWN_SCHEMA_ID = 0x7FFF_FFF0

# Every fault the generator can inject: the rule each is made to fail.
UNDECODABLE_FLAVOURS = ("random_bytes", "truncated_avro", "unknown_schema_id", "wrong_magic_byte")
FAULT_KINDS: tuple[str, ...] = (
    *(f"undecodable:{f}" for f in UNDECODABLE_FLAVOURS),
    rules.SCHEMA.name,
    rules.NOT_NULL.name,
    rules.PHONE_FORMAT.name,
    rules.CALL_TYPE_DOMAIN.name,
    rules.DURATION_RANGE.name,
    rules.SIGNAL_RANGE.name,
    rules.EVENT_TIME_FUTURE.name,
    rules.SMS_DURATION.name,
    rules.SELF_CALL.name,
    rules.DATA_VOLUME.name,
)


@dataclass(frozen=True, slots=True)
class Generated:
    key: bytes | None
    value: bytes
    kind: str
    call_type: str | None
    event_time_ms: int
    timestamp_ms: int
    """The Kafka message timestamp: the event time, or the clock's time when the
    record has no usable event time."""

    @property
    def expected_rule(self) -> str | None:
        """The rule a validator must dead-letter this record under, or None if valid."""
        if self.kind in ("valid", "late"):
            return None
        return self.kind.split(":", 1)[0]


@dataclass(frozen=True)
class FaultRates:
    bad: float = 0.0
    duplicate: float = 0.0
    late: float = 0.0

    def check(self) -> None:
        for name, value in (
            ("--bad-rate", self.bad),
            ("--duplicate-rate", self.duplicate),
            ("--late-rate", self.late),
        ):
            if not 0.0 <= value <= 1.0:
                msg = f"{name} must be within 0..1, got {value}"
                raise ValueError(msg)
        if self.bad + self.duplicate + self.late > 1.0:
            msg = "--bad-rate + --duplicate-rate + --late-rate must not exceed 1"
            raise ValueError(msg)


class CdrGenerator:
    def __init__(
        self,
        *,
        seed: int,
        clock: Clock,
        encode: Encode,
        encode_legacy: Encode,
        faults: FaultRates = FaultRates(),
        fast_header: bytes | None = None,
        towers: int = TOWER_COUNT,
        subscribers: int = SUBSCRIBER_COUNT,
        stream: int = 0,
    ) -> None:
        faults.check()
        self._rng = random.Random(seed)
        self._clock = clock
        self._encode = encode
        self._encode_legacy = encode_legacy
        self._faults = faults
        rng = self._rng
        self.towers = [f"TOWER_{i:03d}" for i in range(1, towers + 1)]
        # A few towers are in poor coverage: their signal is drawn one bar lower.
        self._weak_tower_idx = frozenset(rng.sample(range(towers), max(1, towers // 10)))
        numbers: set[str] = set()
        while len(numbers) < subscribers:
            numbers.add(f"+947{rng.randrange(10**8):08d}")
        self.subscribers = sorted(numbers)
        if stream:  # the same population, another sequence of records
            self._rng = random.Random(stream_seed(seed, stream))
        self._recent_ids: deque[str] = deque(maxlen=1000)
        self._index = 0
        self._cum_types = _cumulative(CALL_TYPE_WEIGHTS)
        # The fast path writes CdrRaw bytes from pre-encoded parts; ``fast_header``
        # is the Confluent header of the CdrRaw schema id (None: encode dicts).
        self._fast_header = fast_header
        self._enc_subs = [_nullable_string(x) for x in self.subscribers]
        self._enc_towers = [_nullable_string(x) for x in self.towers]

    def __iter__(self) -> Iterator[Generated]:
        return self

    def __next__(self) -> Generated:
        return self.next()

    def next(self) -> Generated:
        rng = self._rng
        now_ms = self._clock.event_time_ms(self._index)
        self._index += 1
        draw = rng.random()
        f = self._faults
        if draw < f.bad:
            return self._fault(self._as_dict(self._draw(now_ms)), now_ms)
        values = self._draw(now_ms)
        if draw < f.bad + f.duplicate and self._recent_ids:
            values[0] = rng.choice(self._recent_ids)
            return self._emit(values, rules.DUPLICATE_CALL_ID.name)
        if draw < f.bad + f.duplicate + f.late:
            values[5] = now_ms - rng.randrange(LATE_MIN_MS, LATE_MAX_MS)
            self._recent_ids.append(values[0])
            return self._emit(values, "late")
        self._recent_ids.append(values[0])
        return self._emit(values, "valid")

    # -- records -----------------------------------------------------------------

    def _draw(self, now_ms: int) -> list[Any]:
        """[call_id, caller, callee, call_type, duration, event_time, tower, signal, volume]"""
        rng = self._rng
        rnd = rng.random
        n_subs = len(self.subscribers)
        caller = int(rnd() * n_subs)
        callee = int(rnd() * n_subs)
        while callee == caller:
            callee = int(rnd() * n_subs)
        u = rnd()
        call_type = next(t for t, c in self._cum_types if u < c)
        tower = int(rnd() * len(self.towers))
        if call_type == "VOICE":
            duration = min(rules.DURATION_MAX_SEC, 1 + int(rng.expovariate(1 / 150)))
            volume = 0
        elif call_type == "SMS":
            duration = 0
            volume = 0
        else:
            duration = 30 + int(rnd() * 1800)
            volume = 1 + int(rng.expovariate(1 / 4000))
        signal = 1 + _pick(rnd(), SIGNAL_WEIGHTS)
        if tower in self._weak_tower_idx and signal > 1:
            signal -= 1
        # Network elements report slightly out of order: up to 5 s of jitter.
        event_time = now_ms - int(rnd() * 5000)
        n = rng.getrandbits(128)
        n = (n & _UUID_CLEAR) | _UUID_SET  # version 4, RFC 4122 variant
        h = f"{n:032x}"
        call_id = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        return [call_id, caller, callee, call_type, duration, event_time, tower, signal, volume]

    def _as_dict(self, v: list[Any]) -> dict[str, Any]:
        return {
            "call_id": v[0],
            "caller_num": self.subscribers[v[1]],
            "callee_num": self.subscribers[v[2]],
            "call_type": v[3],
            "duration_sec": v[4],
            "event_time": v[5],
            "tower_id": self.towers[v[6]],
            "signal_strength": v[7],
            "data_volume_kb": v[8],
        }

    def _emit(self, v: list[Any], kind: str) -> Generated:
        """A well-formed record: straight to bytes from pre-encoded parts when possible."""
        header = self._fast_header
        if header is None:
            return self._out(self._as_dict(v), kind, v[5])
        call_id = v[0]
        body = b"".join(
            (
                header,
                b"\x02\x48",
                call_id.encode(),
                self._enc_subs[v[1]],
                self._enc_subs[v[2]],
                _ENC_TYPE[v[3]],
                _nullable_long(v[4]),
                b"\x02" + _varint(v[5]),
                self._enc_towers[v[6]],
                _ENC_SIGNAL[v[7]],
                _nullable_long(v[8]),
            )
        )
        return Generated(call_id.encode(), body, kind, v[3], v[5], v[5])

    def _out(self, record: dict[str, Any], kind: str, now_ms: int) -> Generated:
        event_time = record.get("event_time")
        ts = event_time if isinstance(event_time, int) else now_ms
        call_id = record.get("call_id")
        return Generated(
            key=call_id.encode() if isinstance(call_id, str) else None,
            value=self._encode(record),
            kind=kind,
            call_type=record.get("call_type"),
            event_time_ms=ts,
            timestamp_ms=ts,
        )

    def _fault(self, record: dict[str, Any], now_ms: int) -> Generated:
        """``record`` broken by one fault kind, drawn uniformly from ``FAULT_KINDS``.

        Each kind's draws come from the one seeded ``rng`` in a fixed order (the kind,
        then the kind's own draws), so a seed gives the same faults record for record.
        """
        kind = FAULT_KINDS[int(self._rng.random() * len(FAULT_KINDS))]
        if kind.startswith("undecodable:"):
            return self._undecodable(record, kind, now_ms)
        if kind == rules.SCHEMA.name:
            return self._legacy(record, kind)
        _BREAK[kind](self, record, now_ms)
        out = self._out(record, kind, now_ms)
        if kind == rules.EVENT_TIME_FUTURE.name:
            # The message timestamp stays near the clock: brokers refuse timestamps
            # far in the future, and the event time itself is what is judged.
            return Generated(out.key, out.value, kind, out.call_type, record["event_time"], now_ms)
        return out

    # -- one method per fault kind: each breaks ``record`` in place ------------------

    def _legacy(self, record: dict[str, Any], kind: str) -> Generated:
        """The record under the legacy schema (a string timestamp, no callee or volume):
        it decodes, but not as a CdrRaw."""
        legacy = {
            "call_id": record["call_id"],
            "caller_num": record["caller_num"],
            "call_type": record["call_type"],
            "duration_sec": record["duration_sec"],
            "timestamp": str(record["event_time"]),
            "tower_id": record["tower_id"],
            "signal_strength": record["signal_strength"],
        }
        ts = record["event_time"]
        return Generated(
            record["call_id"].encode(),
            self._encode_legacy(legacy),
            kind,
            record["call_type"],
            ts,
            ts,
        )

    def _null_column(self, record: dict[str, Any], now_ms: int) -> None:
        """not_null: one required column, drawn, is None."""
        record[self._rng.choice(_NULLABLE_COLUMNS)] = None

    def _bad_phone(self, record: dict[str, Any], now_ms: int) -> None:
        """phone_format: caller or callee is not +947 and eight digits."""
        rng = self._rng
        column = rng.choice(("caller_num", "callee_num"))
        record[column] = rng.choice(_BAD_PHONES)

    def _bad_call_type(self, record: dict[str, Any], now_ms: int) -> None:
        """call_type_domain: a type outside VOICE/SMS/DATA; duration and volume stay plausible
        so that no other rule fires first."""
        record["call_type"] = self._rng.choice(("VIDEO", "voice", "MMS", ""))
        record["duration_sec"] = 60
        record["data_volume_kb"] = 0

    def _bad_duration(self, record: dict[str, Any], now_ms: int) -> None:
        """duration_range: a VOICE call outside 0..7200 s (a voice call, so that the SMS and
        data-volume rules do not fire instead)."""
        record["call_type"] = "VOICE"
        record["data_volume_kb"] = 0
        record["duration_sec"] = self._rng.choice((-1, -60, 7201, 86_400))

    def _bad_signal(self, record: dict[str, Any], now_ms: int) -> None:
        """signal_range: bars outside 1..5."""
        record["signal_strength"] = self._rng.choice((0, -1, 6, 99))

    def _future_event_time(self, record: dict[str, Any], now_ms: int) -> None:
        """event_time_future: an event time a day or two ahead of the clock."""
        record["event_time"] = now_ms + FUTURE_MS + int(self._rng.random() * FUTURE_MS)

    def _sms_with_duration(self, record: dict[str, Any], now_ms: int) -> None:
        """sms_duration: an SMS with a duration."""
        record["call_type"] = "SMS"
        record["data_volume_kb"] = 0
        record["duration_sec"] = 1 + int(self._rng.random() * 300)

    def _self_call(self, record: dict[str, Any], now_ms: int) -> None:
        """self_call: the callee is the caller."""
        record["callee_num"] = record["caller_num"]

    def _bad_data_volume(self, record: dict[str, Any], now_ms: int) -> None:
        """data_volume: a negative volume on DATA, a positive one on anything else."""
        if record["call_type"] == "DATA":
            record["data_volume_kb"] = -1 - int(self._rng.random() * 1000)
        else:
            record["data_volume_kb"] = 1 + int(self._rng.random() * 1000)

    def _undecodable(self, record: dict[str, Any], kind: str, now_ms: int) -> Generated:
        rng = self._rng
        flavour = kind.split(":", 1)[1]
        good = self._encode(record)
        if flavour == "random_bytes":
            value = rng.randbytes(8 + int(rng.random() * 64))
        elif flavour == "truncated_avro":
            value = good[: 5 + int(rng.random() * (len(good) - 6))]
        elif flavour == "unknown_schema_id":
            value = b"\x00" + UNKNOWN_SCHEMA_ID.to_bytes(4, "big") + good[5:]
        else:  # wrong_magic_byte
            value = bytes([2]) + good[1:]
        key = record["call_id"].encode()
        return Generated(key, value, kind, None, now_ms, now_ms)


def stream_seed(seed: int, stream: int) -> int:
    """The seed of record stream ``stream`` (> 0) of ``seed``: unrelated to any other
    seed's streams (a hash, not ``seed + stream``)."""
    digest = hashlib.sha256(f"kappa-cdr-stream:{seed}:{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


_NULLABLE_COLUMNS = (
    "caller_num",
    "callee_num",
    "call_type",
    "duration_sec",
    "tower_id",
    "signal_strength",
    "event_time",
)
_BAD_PHONES = ("0771234567", "+94812345678", "+9471234567", "+9470000000x", "+947123456789")

#: How each rule-breaking fault kind breaks a record (``schema`` and the undecodable
#: flavours produce their bytes themselves).
_BREAK: dict[str, Callable[[CdrGenerator, dict[str, Any], int], None]] = {
    rules.NOT_NULL.name: CdrGenerator._null_column,
    rules.PHONE_FORMAT.name: CdrGenerator._bad_phone,
    rules.CALL_TYPE_DOMAIN.name: CdrGenerator._bad_call_type,
    rules.DURATION_RANGE.name: CdrGenerator._bad_duration,
    rules.SIGNAL_RANGE.name: CdrGenerator._bad_signal,
    rules.EVENT_TIME_FUTURE.name: CdrGenerator._future_event_time,
    rules.SMS_DURATION.name: CdrGenerator._sms_with_duration,
    rules.SELF_CALL.name: CdrGenerator._self_call,
    rules.DATA_VOLUME.name: CdrGenerator._bad_data_volume,
}


_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID_SET = (0x4000 << 64) | (0x8000 << 48)


def _nullable_string(value: str) -> bytes:
    raw = value.encode()
    return b"\x02" + _varint(len(raw)) + raw


_ENC_TYPE = {t: _nullable_string(t) for t, _ in CALL_TYPE_WEIGHTS}
_ENC_SIGNAL = {i: b"\x02" + _varint(i) for i in range(1, 6)}
_ENC_SMALL = [b"\x02" + _varint(i) for i in range(8192)]


def _nullable_long(value: int) -> bytes:
    if 0 <= value < 8192:
        return _ENC_SMALL[value]
    return b"\x02" + _varint(value)


def _cumulative(weights: tuple[tuple[str, float], ...]) -> list[tuple[str, float]]:
    total, out = 0.0, []
    for name, w in weights:
        total += w
        out.append((name, total))
    out[-1] = (out[-1][0], 1.0)
    return out


def _pick(u: float, weights: tuple[float, ...]) -> int:
    acc = 0.0
    for i, w in enumerate(weights):
        acc += w
        if u < acc:
            return i
    return len(weights) - 1
