"""billing() and network_health() on batch DataFrames, against plain-Python aggregates."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
from pyspark.sql import SparkSession

from streams.aggregate.transforms import (
    BILLING_SCHEMA,
    CDR_SCHEMA,
    NETWORK_SCHEMA,
    RateCard,
    billing,
    network_health,
)
from tests.streams.aggregate import expected
from tests.streams.aggregate.dataset import STEPS, T0, cdr

pytestmark = pytest.mark.spark

RATES = RateCard(voice_per_minute=2.0, sms_each=1.0, data_per_mb=0.5)


def _frame(spark: SparkSession, records: list[dict[str, Any]]) -> Any:
    cols = [f.name for f in CDR_SCHEMA.fields]
    return spark.createDataFrame([tuple(r[c] for c in cols) for r in records], CDR_SCHEMA)


def _random_records(n: int, seed: int) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        call_type = rnd.choice(["VOICE", "VOICE", "SMS", "DATA"])
        # Event times cluster on window boundaries: exact, one ms before, one ms after.
        base = T0 + timedelta(minutes=5 * rnd.randrange(6))
        t = base + timedelta(milliseconds=rnd.choice([-1, 0, 1, 150_000]))
        out.append(
            cdr(
                f"r{i}",
                rnd.choice(["+94770000001", "+94770000002", "+94770000003"]),
                call_type,
                0 if call_type == "SMS" else rnd.choice([0, 1, 59, 60, 61, 7200]),
                t,
                rnd.choice(["TWR-0001", "TWR-0002"]),
                rnd.randrange(1, 6),
                kb=rnd.randrange(0, 5000) if call_type == "DATA" else 0,
            )
        )
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_billing_and_network_equal_plain_python(spark: SparkSession, seed: int) -> None:
    records = [r.record for s in STEPS for r in s] + _random_records(300, seed)
    df = _frame(spark, records)
    bill = billing(df, RATES)
    net = network_health(df, low_signal_threshold=2)
    assert [f.name for f in bill.schema.fields] == [f.name for f in BILLING_SCHEMA.fields]
    assert [f.name for f in net.schema.fields] == [f.name for f in NETWORK_SCHEMA.fields]
    assert expected.frame_to_table(bill.toPandas(), "caller_num") == expected.billing(records)
    assert expected.frame_to_table(net.toPandas(), "tower_id") == expected.network(records)


def test_window_boundaries_are_half_open(spark: SparkSession) -> None:
    t = T0 + timedelta(minutes=5)
    records = [
        cdr("x", "+94770000001", "VOICE", 61, t - timedelta(milliseconds=1), "T", 3),
        cdr("y", "+94770000001", "VOICE", 61, t, "T", 3),
    ]
    rows = billing(_frame(spark, records), RATES).orderBy("window_start").collect()
    assert [
        (r.window_start.minute, r.window_end.minute, r.calls, r.billable_minutes) for r in rows
    ] == [(0, 5, 1, 2), (5, 10, 1, 2)]
    assert rows[0].revenue == 4.0


@pytest.mark.parametrize("seed", [3])
def test_the_job_keyed_partial_equals_billing_and_network_health(
    spark: SparkSession, seed: int
) -> None:
    """The stream's one aggregation (``keyed_partial``, arithmetic window bounds) sliced
    and finished gives what the replay's ``billing``/``network_health`` give."""
    from pyspark.sql import functions as sf

    from streams.aggregate.transforms import (
        billing_final,
        billing_slice,
        keyed_partial,
        keys,
        network_final,
        network_slice,
    )

    df = _frame(spark, _random_records(300, seed))
    keyed = df.select("*", sf.explode(keys()).alias("k")).select("*", "k.kind", "k.key")
    partial = keyed_partial(keyed, expected.LOW_SIGNAL)
    got_billing = billing_final(billing_slice(partial), RATES).toPandas()
    got_network = network_final(network_slice(partial)).toPandas()
    assert expected.frame_to_table(got_billing, "caller_num") == expected.frame_to_table(
        billing(df, RATES).toPandas(), "caller_num"
    )
    assert expected.frame_to_table(got_network, "tower_id") == expected.frame_to_table(
        network_health(df, expected.LOW_SIGNAL).toPandas(), "tower_id"
    )
