"""Recipe (a) of docs/ARCHITECTURE.md, a new validation rule, followed in process.

The steps are applied for the length of a test (``monkeypatch`` undoes them, the fixture
removes the suites it made from the process's GX context): a ``Rule`` appended to
``schemas.rules.ALL_RULES``, an expectation tagged with its name appended by
``streams.validate.suite.expectations``, its name in ``DISABLEABLE``. The real suite and the
real routing then judge records: a record breaking the new rule, and only it, becomes a dead
letter carrying the rule, the column and the value observed.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastavro import schemaless_reader

from schemas import SchemaName, WireEncoder, load_schema, parsed_schema, rules
from streams.validate import headers as hdr
from streams.validate import suite as suite_module
from streams.validate.exceptions import BadRuleNameError
from streams.validate.outputs import Outputs
from streams.validate.suite import CdrSuite, Failure, SuiteConfig
from tests.fixtures.validate import NOW_MS, Judge, valid_record

# Step 1: the rule, declared the way schemas/rules.py declares its rules.
VOICE_MIN_SEC = 1
VOICE_DURATION = rules.Rule(
    "voice_duration", "duration_sec", "a VOICE call lasts at least 1 second"
)


def _with_voice_duration(original: Callable[[SuiteConfig], list[Any]]) -> Any:
    """Step 2: ``expectations(config)`` with the new rule's expectation appended, tagged
    with its name, and only when the suite version has it on (step 3)."""

    def expectations(config: SuiteConfig) -> list[Any]:
        import great_expectations.expectations as gxe
        from great_expectations.expectations.row_conditions import Column

        out = original(config)
        if config.enabled(VOICE_DURATION.name):
            out.append(
                gxe.ExpectColumnValuesToBeBetween(
                    column="duration_sec",
                    min_value=VOICE_MIN_SEC,
                    row_condition=Column("call_type") == "VOICE",
                    meta={"rule": VOICE_DURATION.name},
                )
            )
        return out

    return expectations


@pytest.fixture
def with_new_rule(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., CdrSuite]]:
    """The recipe applied; yields a factory of suites (``SuiteConfig`` keywords)."""
    assert VOICE_DURATION.name not in rules.RULE_NAMES
    all_rules = (*rules.ALL_RULES, VOICE_DURATION)
    monkeypatch.setattr(rules, "ALL_RULES", all_rules)
    monkeypatch.setattr(rules, "RULE_NAMES", tuple(r.name for r in all_rules))
    monkeypatch.setattr(
        suite_module, "DISABLEABLE", suite_module.DISABLEABLE | {VOICE_DURATION.name}
    )
    monkeypatch.setattr(
        suite_module, "expectations", _with_voice_duration(suite_module.expectations)
    )
    made: list[str] = []

    def make(**config: Any) -> CdrSuite:
        cfg = SuiteConfig(version="docs-recipe-rule", **config)
        made.append(cfg.name)
        return CdrSuite(cfg)

    yield make
    gx = suite_module.gx_runtime()
    for name in made:
        gx.suites.pop(name, None)
        with contextlib.suppress(Exception):
            gx.context.suites.delete(name)


def _dead_letter(value: bytes) -> dict[str, Any]:
    assert value[:1] == b"\x00"
    return schemaless_reader(  # type: ignore[no-any-return]
        io.BytesIO(value[5:]), parsed_schema(SchemaName.DEAD_LETTER), None
    )


def test_a_new_rule_routes_a_failing_record_with_its_reason(
    judge: Judge, gx_suite: CdrSuite, with_new_rule: Callable[..., CdrSuite]
) -> None:
    strict = with_new_rule()
    records = [
        valid_record(duration_sec=60),
        valid_record(duration_sec=0),  # a VOICE call of no length: the new rule fails it
        valid_record(call_type="SMS", duration_sec=0),  # the rule is on VOICE only
        valid_record(duration_sec=0, signal_strength=9),  # two rules, both reported
    ]
    before = judge(records, suite=gx_suite)
    assert [d.source.offset for d in before.dead] == [3]

    routed = judge(records, suite=strict)
    assert [v.source.offset for v in routed.valid] == [0, 2]
    dead = {d.source.offset: d for d in routed.dead}
    assert dead[1].rules == ("voice_duration",)
    assert dead[1].failures == (Failure("voice_duration", "duration_sec", "0"),)
    assert set(dead[3].rules) == {"voice_duration", "signal_range"}

    # Routing needs nothing more: the dead letter written to cdr.dlq names the rule.
    outputs = Outputs(
        "cdr.valid",
        "cdr.dlq",
        WireEncoder(load_schema(SchemaName.CDR), 1),
        WireEncoder(load_schema(SchemaName.DEAD_LETTER), 2),
    )
    value, _key, _ts, headers = outputs.dead(dead[1], strict.version, NOW_MS)
    letter = _dead_letter(value)
    assert letter["failures"] == [
        {"rule": "voice_duration", "column": "duration_sec", "observed": "0"}
    ]
    assert letter["suite_version"] == "docs-recipe-rule"
    assert letter["source_offset"] == 1
    assert (hdr.SUITE, b"docs-recipe-rule") in headers


def test_a_suite_version_can_switch_the_new_rule_off(
    judge: Judge, with_new_rule: Callable[..., CdrSuite]
) -> None:
    relaxed = with_new_rule(disabled=frozenset({VOICE_DURATION.name}))
    routed = judge([valid_record(duration_sec=0)], suite=relaxed)
    assert len(routed.valid) == 1
    assert not routed.dead


def test_a_rule_missing_from_all_rules_is_unknown() -> None:
    """Step 1 is needed: the suite's configuration only knows the rules of ``ALL_RULES``
    (and ``kappa dlq tail --rule`` offers only those)."""
    assert VOICE_DURATION.name not in rules.RULE_NAMES  # the fixture above left nothing
    with pytest.raises(BadRuleNameError, match="unknown"):
        SuiteConfig(disabled=frozenset({VOICE_DURATION.name}))
