"""Nightly sequential recommendation: data in, models trained and judged, top-K published.

Plain Python, usable without Airflow, in layers (docs/architecture.md): config, db, storage,
data, scoring, learning, pipeline, then `airflow_adapter` (the only code that knows Airflow) and
ops.
"""

__version__ = "0.2.0"  # CHANGELOG.md; with the commit: config.environment.code_version()

from recsys_tasks.redact import install_log_redaction  # noqa: E402

install_log_redaction()  # every log line of the package is masked, whoever configures logging
