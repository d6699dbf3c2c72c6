"""Stream jobs: the validator (GX suite, dedup, DLQ routing) and the aggregation job."""
