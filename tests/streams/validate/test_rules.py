"""Each rule at and around its boundaries, through the real GX suite (no Kafka)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import rules
from streams.validate.dedup import DedupState
from streams.validate.exceptions import BadRuleNameError
from streams.validate.suite import CdrSuite, SuiteConfig
from tests.fixtures.validate import NOW_MS, Judge, Wire, valid_record

TOLERANCE_MS = 15 * 60_000


def verdicts(judge: Judge, records: list[dict[str, Any]]) -> list[set[str]]:
    """The rules each record failed (empty: valid), judged as one batch."""
    routed = judge(records)
    out: dict[int, set[str]] = {v.source.offset: set() for v in routed.valid}
    out.update({d.source.offset: set(d.rules) for d in routed.dead})
    assert len(out) == len(records)
    return [out[i] for i in range(len(records))]


def check(judge: Judge, cases: list[tuple[dict[str, Any], bool]], rule: str) -> None:
    got = verdicts(judge, [rec for rec, _ in cases])
    for (rec, ok), rules_failed in zip(cases, got, strict=True):
        assert rules_failed == (set() if ok else {rule}), rec


def test_a_valid_record_is_valid_and_strict(judge: Judge) -> None:
    rec = valid_record()
    routed = judge([rec])
    assert len(routed.valid) == 1
    assert not routed.dead
    assert routed.valid[0].cdr == rec


def test_duration_range(judge: Judge) -> None:
    check(
        judge,
        [
            (valid_record(duration_sec=d), ok)
            for d, ok in [
                (-1, False),
                (0, True),
                (1, True),
                (7199, True),
                (7200, True),
                (7201, False),
                (86_400, False),
            ]
        ],
        "duration_range",
    )


def test_signal_range(judge: Judge) -> None:
    check(
        judge,
        [
            (valid_record(signal_strength=s), ok)
            for s, ok in [
                (-1, False),
                (0, False),
                (1, True),
                (3, True),
                (5, True),
                (6, False),
                (99, False),
            ]
        ],
        "signal_range",
    )


PHONE_CASES = [
    ("+94712345678", True),
    ("+94700000000", True),
    ("+94799999999", True),
    ("0771234567", False),
    ("+9471234567", False),
    ("+947123456789", False),
    ("+9470000000x", False),
    ("+94812345678", False),
    ("94712345678", False),
    ("", False),
    (" +94712345678", False),
    ("+94712345678\n", False),
]


@pytest.mark.parametrize("column", ["caller_num", "callee_num"])
def test_phone_format(judge: Judge, column: str) -> None:
    other = "callee_num" if column == "caller_num" else "caller_num"
    records = [valid_record(**{column: n, other: "+94733333333"}) for n, _ in PHONE_CASES]
    routed = judge(records)
    dead = {d.source.offset: d for d in routed.dead}
    for i, (number, ok) in enumerate(PHONE_CASES):
        assert (i not in dead) == ok, number
        if not ok:
            assert dead[i].rules == ("phone_format",)
            assert [(f.column, f.observed) for f in dead[i].failures] == [(column, number)]


def test_call_type_domain(judge: Judge) -> None:
    check(
        judge,
        [
            (
                valid_record(
                    call_type=t,
                    duration_sec=0 if t == "SMS" else 60,
                    data_volume_kb=10 if t == "DATA" else 0,
                ),
                ok,
            )
            for t, ok in [
                ("VOICE", True),
                ("SMS", True),
                ("DATA", True),
                ("voice", False),
                ("VIDEO", False),
                ("", False),
                ("MMS", False),
                ("VOICE ", False),
            ]
        ],
        "call_type_domain",
    )


def test_event_time_future(judge: Judge) -> None:
    check(
        judge,
        [
            (valid_record(event_time=NOW_MS + ahead), ok)
            for ahead, ok in [
                (-3600_000, True),
                (0, True),
                (TOLERANCE_MS - 1, True),
                (TOLERANCE_MS, True),
                (TOLERANCE_MS + 1, False),
                (24 * 3600_000, False),
            ]
        ],
        "event_time_future",
    )


def test_sms_duration(judge: Judge) -> None:
    check(
        judge,
        [
            (valid_record(call_type="SMS", duration_sec=d), ok)
            for d, ok in [(0, True), (1, False), (300, False)]
        ],
        "sms_duration",
    )


def test_self_call(judge: Judge) -> None:
    rec = valid_record(caller_num="+94711111111", callee_num="+94711111111")
    (dead,) = judge([rec]).dead
    assert dead.rules == ("self_call",)
    assert dead.failures[0].column == "callee_num"
    assert dead.failures[0].observed == "+94711111111"
    assert judge([valid_record(caller_num="+94711111111", callee_num="+94711111112")]).valid


def test_data_volume(judge: Judge) -> None:
    cases = [
        ("DATA", -1, False),
        ("DATA", 0, True),
        ("DATA", 1, True),
        ("DATA", None, True),
        ("VOICE", 0, True),
        ("VOICE", 1, False),
        ("VOICE", -1, False),
        ("VOICE", None, True),
        ("SMS", 0, True),
        ("SMS", 5, False),
    ]
    records = [
        valid_record(call_type=t, duration_sec=0 if t == "SMS" else 60, data_volume_kb=v)
        for t, v, _ in cases
    ]
    check(judge, [(rec, ok) for rec, (_, _, ok) in zip(records, cases, strict=True)], "data_volume")
    routed = judge([r for r, (_, _, ok) in zip(records, cases, strict=True) if ok])
    assert all(v.cdr["data_volume_kb"] >= 0 for v in routed.valid)
    assert all(v.cdr["data_volume_kb"] is not None for v in routed.valid)


def test_not_null_each_required_column(judge: Judge) -> None:
    routed = judge([valid_record(**{c: None}) for c in rules.REQUIRED_COLUMNS])
    assert not routed.valid
    for dead, column in zip(routed.dead, rules.REQUIRED_COLUMNS, strict=True):
        assert "not_null" in dead.rules
        assert any(
            f.rule == "not_null" and f.column == column and f.observed is None
            for f in dead.failures
        )


def test_every_failed_rule_is_reported(judge: Judge) -> None:
    rec = valid_record(
        call_type="SMS",
        duration_sec=7201,
        signal_strength=0,
        callee_num="+94711111111",
        caller_num="+94711111111",
    )
    (dead,) = judge([rec]).dead
    assert set(dead.rules) == {"duration_range", "signal_range", "sms_duration", "self_call"}
    observed = {(f.rule, f.column): f.observed for f in dead.failures}
    assert observed[("duration_range", "duration_sec")] == "7201"
    assert observed[("signal_range", "signal_strength")] == "0"


def test_schema_legacy_records(judge: Judge, wire: Wire) -> None:
    legacy = wire.legacy.encode(
        {
            "call_id": "c-1",
            "caller_num": "+94711111111",
            "call_type": "VOICE",
            "duration_sec": 10,
            "timestamp": "2026-01-01T00:00:00Z",
            "tower_id": "TOWER_001",
            "signal_strength": 3,
        }
    )
    (dead,) = judge([legacy]).dead
    assert dead.rules == ("schema",)
    assert {f.column for f in dead.failures} == {"callee_num", "event_time"}
    assert dead.call_id == "c-1"
    assert dead.schema_id == 2


def test_undecodable_kinds(judge: Judge) -> None:
    cases = [
        (None, "empty"),
        (b"", "empty"),
        (b"\x00\x00", "malformed_avro"),
        (b"\x02\x00\x00\x00\x01abc", "wrong_magic_byte"),
        (b"\x00\x7f\xff\xff\xf0\x02abc", "unknown_schema_id"),
    ]
    routed = judge([v for v, _ in cases])
    assert not routed.valid
    for dead, (_, kind) in zip(routed.dead, cases, strict=True):
        assert dead.rules == ("undecodable",)
        assert dead.failures[0].observed is not None
        assert dead.failures[0].observed.startswith(kind)


def test_truncated_avro_is_undecodable(judge: Judge, wire: Wire) -> None:
    good = wire.raw.encode(valid_record())
    cuts = [good[:cut] for cut in (5, 6, len(good) // 2, len(good) - 1)]
    routed = judge([*cuts, good + b"\x00"])
    assert not routed.valid
    assert all(d.rules == ("undecodable",) for d in routed.dead)


def test_duplicates_within_and_across_batches(judge: Judge) -> None:
    state = DedupState(24 * 3600_000)
    a, b = valid_record(), valid_record()
    first = judge([a, dict(a), b], dedup=state)
    assert [v.cdr["call_id"] for v in first.valid] == [a["call_id"], b["call_id"]]
    assert first.dead[0].rules == ("duplicate_call_id",)
    second = judge([dict(b), valid_record()], dedup=state)
    assert second.dead[0].rules == ("duplicate_call_id",)
    assert len(second.valid) == 1


def test_a_rejected_record_does_not_take_its_call_id(judge: Judge) -> None:
    state = DedupState(24 * 3600_000)
    bad = valid_record(signal_strength=0)
    fixed = dict(bad, signal_strength=2)
    routed = judge([bad, fixed], dedup=state)
    assert routed.dead[0].rules == ("signal_range",)
    assert [v.cdr["call_id"] for v in routed.valid] == [fixed["call_id"]]


def test_dedup_horizon_in_event_time() -> None:
    state = DedupState(horizon_ms=1000)
    state.add(0, "a", 10_000)
    assert state.seen(0, "a", 10_500)
    assert state.seen(0, "a", 11_000)
    assert not state.seen(0, "a", 11_001)
    assert not state.seen(1, "a", 10_000)  # partition-local
    state.add(0, "b", 12_000)
    assert state.evict() == 1
    assert not state.seen(0, "a")
    assert state.seen(0, "b")


def test_disabled_rules_are_checked() -> None:
    with pytest.raises(BadRuleNameError, match="unknown"):
        SuiteConfig(disabled=frozenset({"nope"}))
    with pytest.raises(BadRuleNameError, match="cannot be switched off"):
        SuiteConfig(disabled=frozenset({"not_null"}))


def test_a_suite_version_can_switch_a_rule_off(judge: Judge) -> None:
    relaxed = CdrSuite(SuiteConfig(version="relaxed", disabled=frozenset({"signal_range"})))
    rec = valid_record(signal_strength=0)
    assert judge([rec]).dead
    assert judge([rec], suite=relaxed).valid


# -- property: the GX suite agrees with a plain-Python statement of the rules ------------

PHONE = re.compile(rules.PHONE_PATTERN.strip("^$"))


def oracle(rec: dict[str, Any]) -> set[str]:
    out = set()
    if any(rec[c] is None for c in rules.REQUIRED_COLUMNS):
        out.add("not_null")
    for c in ("caller_num", "callee_num"):
        if rec[c] is not None and not PHONE.fullmatch(rec[c]):
            out.add("phone_format")
    if rec["call_type"] is not None and rec["call_type"] not in rules.CALL_TYPES:
        out.add("call_type_domain")
    d = rec["duration_sec"]
    if d is not None and not 0 <= d <= rules.DURATION_MAX_SEC:
        out.add("duration_range")
    s = rec["signal_strength"]
    if s is not None and not rules.SIGNAL_MIN <= s <= rules.SIGNAL_MAX:
        out.add("signal_range")
    if rec["event_time"] is not None and rec["event_time"] > NOW_MS + TOLERANCE_MS:
        out.add("event_time_future")
    if rec["call_type"] == "SMS" and d is not None and d != 0:
        out.add("sms_duration")
    if (
        rec["caller_num"] is not None
        and rec["callee_num"] is not None
        and rec["caller_num"] == rec["callee_num"]
    ):
        out.add("self_call")
    v = rec["data_volume_kb"]
    if v is not None and (
        (rec["call_type"] == "DATA" and v < 0) or (rec["call_type"] in ("VOICE", "SMS") and v != 0)
    ):
        out.add("data_volume")
    return out


phones = st.sampled_from(
    ["+94711111111", "+94722222222", "0771234567", "+9471234567", "x", "+94711111111\n"]
)
records = st.fixed_dictionaries(
    {
        "call_id": st.uuids().map(str) | st.none(),
        "caller_num": phones | st.none(),
        "callee_num": phones | st.none(),
        "call_type": st.sampled_from(["VOICE", "SMS", "DATA", "video", ""]) | st.none(),
        "duration_sec": st.integers(-5, 7205) | st.sampled_from([0, 7200, 7201, -1]) | st.none(),
        "event_time": st.integers(NOW_MS - 10**9, NOW_MS + 2 * TOLERANCE_MS)
        | st.sampled_from([NOW_MS + TOLERANCE_MS, NOW_MS + TOLERANCE_MS + 1])
        | st.none(),
        "tower_id": st.just("TOWER_007") | st.none(),
        "signal_strength": st.integers(-1, 7) | st.none(),
        "data_volume_kb": st.integers(-3, 3) | st.none(),
    }
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(batch=st.lists(records, min_size=1, max_size=40, unique_by=lambda r: r["call_id"]))
def test_suite_matches_the_rules_as_written(judge: Judge, batch: list[dict[str, Any]]) -> None:
    for rec, got in zip(batch, verdicts(judge, batch), strict=True):
        assert got == oracle(rec), rec
