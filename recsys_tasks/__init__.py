"""Nightly sequential recommendation: data in, models trained and judged, top-K published.

Plain Python, usable without Airflow; `airflow_adapter` is the one module that knows Airflow.
"""

__version__ = "0.1.0"
