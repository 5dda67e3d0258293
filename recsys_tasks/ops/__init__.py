"""Operator tools: the `recsys` CLI, the benchmark, the console's data, reports, failure
notices and erasure of users."""
