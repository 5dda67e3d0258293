"""Nightly sequential recommendation: data in, models trained and judged, top-K published.

Plain Python, usable without Airflow, in layers (docs/architecture.md): config, db, storage,
data, scoring, learning, pipeline, then `airflow_adapter` (the only code that knows Airflow) and
ops.
"""

__version__ = "0.2.0"  # CHANGELOG.md; with the commit: config.environment.code_version()

# a log record's `extra` that makes it one of the lines `recsys run` shows on the terminal (ops/runlog.py)
PROGRESS = {"progress": True}

from recsys_tasks.redact import install_log_redaction  # noqa: E402

install_log_redaction()  # every log line of the package is masked, whoever configures logging
