"""Bounded replay of an event-time range of ``cdr.valid`` into Parquet.

The Kappa "batch": the log read by message timestamp, filtered on event time
exactly, through the aggregation's own transforms (``streams.aggregate``).
"""
