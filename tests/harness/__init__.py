"""The test harness: a running local stack for tests and benchmarks, and its container form."""
