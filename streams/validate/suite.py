"""The GX Core 1.x expectation suite for raw CDRs, and how its results map back to rows.

One ephemeral GX context per process (built on first use, never at import):
a pandas datasource with one dataframe asset and a whole-dataframe batch
definition, onto which each micro-batch DataFrame is handed as a batch
parameter. No stores, no Data Docs, no checkpoints on the hot path: the suite
runs with ``result_format`` COMPLETE and the ``unexpected_index_list`` of each
expectation names the failing rows. Every expectation carries its rule name in
``meta``; that name is what the dead letter, the metrics and the reports carry.

Rules GX does not judge per row (``undecodable``, ``schema``,
``duplicate_call_id``) are decided in ``routing`` and ``dedup``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import warnings
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pandas as pd

from schemas import rules
from streams.validate.exceptions import BadRuleNameError, SuiteError
from streams.validate.gx_custom import (
    expect_column_pair_values_to_differ,
    expect_column_values_to_match_regex_per_value,
)

log = logging.getLogger(__name__)

FRAME_COLUMNS: tuple[str, ...] = (*rules.REQUIRED_COLUMNS, "data_volume_kb")
# Rules a suite version may switch off. The others guard what a strict Cdr can hold.
DISABLEABLE: frozenset[str] = frozenset(
    {
        rules.DUPLICATE_CALL_ID.name,
        rules.PHONE_FORMAT.name,
        rules.DURATION_RANGE.name,
        rules.SIGNAL_RANGE.name,
        rules.EVENT_TIME_FUTURE.name,
        rules.SMS_DURATION.name,
        rules.SELF_CALL.name,
        rules.DATA_VOLUME.name,
    }
)
# Not switchable either: call_id_format (cdr.valid's key is the call_id),
# tower_id_format, event_time_past (cdr.valid's message timestamp is the event time).
MAX_EVENT_TIME_PARAM = "max_event_time_ms"
# The contract's pattern, anchored with \Z: pandas matches with Python's re, whose "$"
# also matches before a trailing newline ("+94712345678\n" would pass).
PHONE_REGEX = rules.PHONE_PATTERN.removesuffix("$") + r"\Z"
CALL_ID_REGEX = rules.CALL_ID_PATTERN.removesuffix("$") + r"\Z"
TOWER_ID_REGEX = rules.TOWER_ID_PATTERN.removesuffix("$") + r"\Z"
# Every failing row's index, and nothing GX would build only for people to read: no
# partial value counts, no unexpected rows, no index query string.
_RESULT_FORMAT: dict[str, Any] = {
    "result_format": "COMPLETE",
    "partial_unexpected_count": 0,
    "include_unexpected_rows": False,
    "return_unexpected_index_query": False,
}


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed rule of one record: the rule, the column it looked at, the value found."""

    rule: str
    column: str | None
    observed: str | None


@dataclass(frozen=True)
class SuiteConfig:
    version: str = "1"
    future_tolerance_ms: int = 15 * 60_000
    disabled: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        unknown = self.disabled - set(rules.RULE_NAMES)
        if unknown:
            msg = f"unknown rule(s) {sorted(unknown)}; rules are {', '.join(rules.RULE_NAMES)}"
            raise BadRuleNameError(msg)
        locked = self.disabled - DISABLEABLE
        if locked:
            msg = (
                f"rule(s) {sorted(locked)} cannot be switched off: a strict Cdr needs them; "
                f"these can: {', '.join(sorted(DISABLEABLE))}"
            )
            raise BadRuleNameError(msg)

    def enabled(self, rule: str) -> bool:
        return rule not in self.disabled

    @property
    def name(self) -> str:
        digest = hashlib.sha1(repr(sorted(self.disabled)).encode(), usedforsecurity=False)
        return f"cdr_raw-v{self.version}-{digest.hexdigest()[:8]}"


def expectations(config: SuiteConfig) -> list[Any]:
    """The suite's expectations, each tagged with its rule name in ``meta``."""
    import great_expectations.expectations as gx_expectations
    from great_expectations.expectations.row_conditions import Column

    gxe: Any = gx_expectations

    def tag(rule: rules.Rule) -> dict[str, str]:
        return {"rule": rule.name}

    out: list[Any] = [
        gxe.ExpectColumnValuesToNotBeNull(column=c, meta=tag(rules.NOT_NULL))
        for c in rules.REQUIRED_COLUMNS
    ]
    out.append(
        gxe.ExpectColumnValuesToBeInSet(
            column="call_type", value_set=list(rules.CALL_TYPES), meta=tag(rules.CALL_TYPE_DOMAIN)
        )
    )
    match = expect_column_values_to_match_regex_per_value()
    out += [
        match(column="call_id", regex=CALL_ID_REGEX, meta=tag(rules.CALL_ID_FORMAT)),
        match(column="tower_id", regex=TOWER_ID_REGEX, meta=tag(rules.TOWER_ID_FORMAT)),
        gxe.ExpectColumnValuesToBeBetween(
            column="event_time", min_value=rules.EVENT_TIME_MIN_MS, meta=tag(rules.EVENT_TIME_PAST)
        ),
    ]
    on = config.enabled
    if on(rules.PHONE_FORMAT.name):
        out += [
            match(column=c, regex=PHONE_REGEX, meta=tag(rules.PHONE_FORMAT))
            for c in ("caller_num", "callee_num")
        ]
    if on(rules.DURATION_RANGE.name):
        out.append(
            gxe.ExpectColumnValuesToBeBetween(
                column="duration_sec",
                min_value=0,
                max_value=rules.DURATION_MAX_SEC,
                meta=tag(rules.DURATION_RANGE),
            )
        )
    if on(rules.SIGNAL_RANGE.name):
        out.append(
            gxe.ExpectColumnValuesToBeBetween(
                column="signal_strength",
                min_value=rules.SIGNAL_MIN,
                max_value=rules.SIGNAL_MAX,
                meta=tag(rules.SIGNAL_RANGE),
            )
        )
    if on(rules.EVENT_TIME_FUTURE.name):
        out.append(
            gxe.ExpectColumnValuesToBeBetween(
                column="event_time",
                max_value={"$PARAMETER": MAX_EVENT_TIME_PARAM},
                meta=tag(rules.EVENT_TIME_FUTURE),
            )
        )
    if on(rules.SMS_DURATION.name):
        out.append(
            gxe.ExpectColumnValuesToBeBetween(
                column="duration_sec",
                min_value=0,
                max_value=0,
                row_condition=Column("call_type") == "SMS",
                meta=tag(rules.SMS_DURATION),
            )
        )
    if on(rules.SELF_CALL.name):
        differ = expect_column_pair_values_to_differ()
        out.append(differ(column_A="caller_num", column_B="callee_num", meta=tag(rules.SELF_CALL)))
    if on(rules.DATA_VOLUME.name):
        out.append(
            gxe.ExpectColumnValuesToBeBetween(
                column="data_volume_kb",
                min_value=0,
                max_value=rules.DATA_VOLUME_MAX_KB,
                row_condition=Column("call_type") == "DATA",
                meta=tag(rules.DATA_VOLUME),
            )
        )
        out.append(
            gxe.ExpectColumnValuesToBeBetween(
                column="data_volume_kb",
                min_value=0,
                max_value=0,
                row_condition=Column("call_type").is_in(["VOICE", "SMS"]),
                meta=tag(rules.DATA_VOLUME),
            )
        )
    return out


class _Gx:
    """The process's one ephemeral GX context, datasource and batch definition."""

    def __init__(self) -> None:
        started = time.monotonic()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import great_expectations
            from great_expectations.data_context.types.base import ProgressBarsConfig

            gx: Any = great_expectations
            self.gx = gx
            self.context = gx.get_context(mode="ephemeral")
            self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
            source = self.context.data_sources.add_pandas("micro_batches")
            asset = source.add_dataframe_asset("cdr_raw")
            self.batch_definition = asset.add_batch_definition_whole_dataframe("whole_batch")
        self.suites: dict[str, Any] = {}
        self.lock = threading.Lock()
        log.info("gx context ready seconds=%.2f", time.monotonic() - started)

    def suite(self, config: SuiteConfig) -> Any:
        name = config.name
        if name not in self.suites:
            suite = self.gx.ExpectationSuite(name=name, meta={"suite_version": config.version})
            for exp in expectations(config):
                suite.add_expectation(exp)
            self.suites[name] = self.context.suites.add(suite)
        return self.suites[name]


@cache
def gx_runtime() -> _Gx:
    return _Gx()


class CdrSuite:
    """Runs the suite on a micro-batch frame and says which rows failed which rules."""

    def __init__(self, config: SuiteConfig) -> None:
        self.config = config
        self._gx = gx_runtime()
        self._suite = self._gx.suite(config)

    @property
    def version(self) -> str:
        return self.config.version

    def run(
        self, frame: pd.DataFrame, judged_at_ms: int
    ) -> dict[int, list[tuple[str, str | None]]]:
        """Row position -> [(rule, column)] for every failed expectation."""
        if frame.empty:
            return {}
        params = {MAX_EVENT_TIME_PARAM: judged_at_ms + self.config.future_tolerance_ms}
        with self._gx.lock, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            batch = self._gx.batch_definition.get_batch(batch_parameters={"dataframe": frame})
            result = batch.validate(
                self._suite,
                expectation_parameters=params,
                result_format=_RESULT_FORMAT,
            )
        failed: dict[int, list[tuple[str, str | None]]] = {}
        for res in result.results:
            if res.success:
                continue
            cfg = res.expectation_config
            rule = str(cfg.meta.get("rule", cfg.type))
            if res.exception_info and res.exception_info.get("raised_exception"):
                msg = f"expectation {cfg.type} ({rule}) raised: {res.exception_info}"
                raise SuiteError(msg)
            column = cfg.kwargs.get("column") or cfg.kwargs.get("column_B")
            for idx in res.result.get("unexpected_index_list") or ():
                failed.setdefault(int(idx), []).append((rule, column))
        return failed
