"""A custom GX expectation: the values of two columns differ in every row.

GX's own ``ExpectSelectColumnValuesToBeUniqueWithinRecord`` says the same but
runs a row-wise ``DataFrame.apply`` (about 20 µs a row); this one is a
vectorised ``column_A != column_B``. Defined on first use (defining it
registers the metric and the expectation with GX), never at import time.
"""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def expect_column_pair_values_to_differ() -> type[Any]:
    from typing import ClassVar, Literal

    from great_expectations.execution_engine import PandasExecutionEngine  # type: ignore[attr-defined]
    from great_expectations.expectations.expectation import ColumnPairMapExpectation
    from great_expectations.expectations.metrics import map_metric_provider as mmp

    ColumnPairMapMetricProvider = mmp.ColumnPairMapMetricProvider  # type: ignore[attr-defined]  # noqa: N806
    column_pair_condition_partial = mmp.column_pair_condition_partial  # type: ignore[attr-defined]

    class ColumnPairValuesDiffer(ColumnPairMapMetricProvider):  # type: ignore[misc,valid-type]
        condition_metric_name = "column_pair_values.kappa_differ"
        condition_domain_keys = (
            "batch_id",
            "table",
            "column_A",
            "column_B",
            "row_condition",
            "condition_parser",
            "ignore_row_if",
        )
        condition_value_keys = ()

        @column_pair_condition_partial(engine=PandasExecutionEngine)  # type: ignore[untyped-decorator]
        def _pandas(cls, column_A: Any, column_B: Any, **kwargs: Any) -> Any:  # noqa: N803, N805
            return column_A != column_B

    class ExpectColumnPairValuesToDiffer(ColumnPairMapExpectation):  # type: ignore[misc]
        """Expect the values of column_A and column_B to differ in every row."""

        ignore_row_if: Literal["both_values_are_missing", "either_value_is_missing", "neither"] = (
            "either_value_is_missing"
        )
        library_metadata: ClassVar[dict[str, Any]] = {
            "maturity": "experimental",
            "tags": [],
            "contributors": ["telecom-kappa"],
        }
        map_metric = "column_pair_values.kappa_differ"
        success_keys = ("column_A", "column_B", "ignore_row_if", "mostly")
        args_keys = ("column_A", "column_B")

    _ = ColumnPairValuesDiffer
    return ExpectColumnPairValuesToDiffer
