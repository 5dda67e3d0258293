"""Scoring: every scorer (model and baselines), full-catalogue evaluation, top-K lists, cold
items, similar items and the trending fallback, and the outcome metrics of published lists."""
