"""Custom GX expectations, defined on first use (defining one registers its metric and
the expectation with GX), never at import time.

- The values of two columns differ in every row. GX's own
  ``ExpectSelectColumnValuesToBeUniqueWithinRecord`` says the same but runs a
  row-wise ``DataFrame.apply`` (about 20 µs a row); this one is a vectorised
  ``column_A != column_B``.
- GX's ``ExpectColumnValuesToMatchRegex``, judged once per distinct value: its
  metric is GX's own ``column.astype(str).str.contains(regex)``, except that on a
  categorical column it runs on the categories and maps the answers back through
  the codes (the validator's phone numbers repeat: a few thousand distinct values
  per 100k rows). Same answers, a fraction of the regex calls.
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


@cache
def expect_column_values_to_match_regex_per_value() -> type[Any]:
    import numpy as np
    import pandas as pd
    from great_expectations.execution_engine import PandasExecutionEngine  # type: ignore[attr-defined]
    from great_expectations.expectations.core.expect_column_values_to_match_regex import (
        ExpectColumnValuesToMatchRegex,
    )
    from great_expectations.expectations.metrics import map_metric_provider as mmp

    ColumnMapMetricProvider = mmp.ColumnMapMetricProvider  # type: ignore[attr-defined]  # noqa: N806
    column_condition_partial = mmp.column_condition_partial  # type: ignore[attr-defined]

    class ColumnValuesMatchRegexPerValue(ColumnMapMetricProvider):  # type: ignore[misc,valid-type]
        condition_metric_name = "column_values.kappa_match_regex"
        condition_value_keys = ("regex",)

        @column_condition_partial(engine=PandasExecutionEngine)  # type: ignore[untyped-decorator]
        def _pandas(cls, column: Any, regex: str, **kwargs: Any) -> Any:  # noqa: N805
            if not isinstance(column.dtype, pd.CategoricalDtype):
                return column.astype(str).str.contains(regex)
            values = pd.Series(column.cat.categories).astype(str)
            # One more "category" for a missing code: astype(str) would make it "nan".
            values = pd.concat([values, pd.Series(["nan"])], ignore_index=True)
            matches = values.str.contains(regex).to_numpy(dtype=bool)
            codes = column.cat.codes.to_numpy()
            return pd.Series(
                matches[np.where(codes < 0, len(matches) - 1, codes)], index=column.index
            )

    class ExpectColumnValuesToMatchRegexPerValue(ExpectColumnValuesToMatchRegex):  # type: ignore[misc]
        """GX's regex expectation, its regex run once per distinct value of a categorical."""

        map_metric = "column_values.kappa_match_regex"

    _ = ColumnValuesMatchRegexPerValue
    return ExpectColumnValuesToMatchRegexPerValue
