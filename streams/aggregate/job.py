"""The aggregation job: Spark's own stateful streaming from ``cdr.valid`` to the window tables.

Shape of the query (one Kafka scan and one decode per micro-batch, one checkpoint)::

    Kafka cdr.valid ─► decode (every writer schema id; observed: undecodable values)
        ─► explode: each CDR as one row per table it feeds (billing: caller, network: tower)
        ─► withWatermark("event_time", "10 minutes")
        ─► groupBy(window(event_time, "5 minutes"), table, key).agg(...)   append mode,
                                                         state in Spark's state store
        ─► foreachBatch(closed windows): billing_realtime/, network_realtime/ (Parquet),
                                         cdr.billing.5m, cdr.network.5m (Avro), gauges
    beside it, on the driver (``late.LateCapture``): the rows the watermark dropped
        ─► late/, cdr.late; undecodable values ─► undecodable/

Windows, watermark and window state are Spark's: ``tables.aggregate`` is the plain
DataFrame function (also used by the replay); Spark's state store (RocksDB with
changelog checkpointing by default, ``KAPPA_AGGREGATE_STATE_STORE``) keeps the open
windows under the checkpoint, which, like the outputs, may be any Hadoop URL. Each
window row is emitted once, in append mode, when the watermark passes its end;
``foreachBatch`` only writes what Spark emitted. A batch redone after a crash
emits the same rows; the Parquet sink replaces its own files (``sinks``) and the
Kafka topics are compacted by window and key.

The job's parts: ``query`` (the plan and its start), ``window_sink`` (the
``foreachBatch`` sink), ``handle`` (a started query, its capture and recovery),
``run`` (the run loop) and ``reset``. This module gathers the entry points.

Spark behaviours the job works with (pinned by ``tests/streams/aggregate``):

- ``run(until_idle=True)`` (``kappa aggregate --available-now``) is Spark's own
  ``availableNow`` trigger: it reads what the topic holds at the start, in as many
  batches as the read limit asks for, then runs the no-data batch that emits the
  windows the last watermark closed, and stops;
- Spark 4.1.1's Kafka source fails the progress report of a batch re-run after a
  restart (its output and commit are already written); ``recoverable`` restarts once.
- a restarted query runs the no-data batch that closes the windows of its last
  batch's watermark only once new data arrives; every start logs that batch in the
  checkpoint first (``Checkpoint.plan_closing_batch``), so a stop or a crash between
  the two holds no window back and a drain writes them all.
"""

from streams.aggregate.handle import AggregateQuery
from streams.aggregate.query import check_source, start
from streams.aggregate.reset import ResetReport, reset
from streams.aggregate.run import run
from streams.aggregate.window_sink import BatchCounts

__all__ = [
    "AggregateQuery",
    "BatchCounts",
    "ResetReport",
    "check_source",
    "reset",
    "run",
    "start",
]
