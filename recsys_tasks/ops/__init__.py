"""Operator tools: the `recsys` CLI, the benchmark, the console's data, run reports and the
erasure of users."""
