"""Nightly sequential recommendation: data in, models trained and judged, top-K published.

Plain Python, usable without Airflow; `airflow_adapter` is the one module that knows Airflow.
"""

__version__ = "0.1.0"

from recsys_tasks.redact import install_log_redaction  # noqa: E402

install_log_redaction()  # every log line of the package is masked, whoever configures logging
