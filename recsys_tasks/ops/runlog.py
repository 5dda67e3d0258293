"""What `recsys run` shows: the project's progress on the terminal, Airflow's own log in a file.

An in-process DAG run (`dag.test`) prints Airflow's whole task log: state updates, XCom pushes,
its own warnings and, while a retry waits, "No tasks to run" every second. `recsys run` sends
all of that (file descriptors 1 and 2, so child processes and C libraries too) to a file, and
shows on the terminal only the project's progress: stage starts and ends, epochs with their ETA,
shards, the gate's verdict, retries. `-v` shows everything as before.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

PROGRESS_LOGGER = "recsys_tasks"  # the project's loggers; Airflow's are not under it


def log_path(home: Path) -> Path:
    """Where this invocation's Airflow log goes: $RECSYS_HOME/logs/run-<UTC time>-<pid>.log (two
    runs started in the same second never share a file)."""
    return home / "logs" / f"run-{datetime.now(UTC):%Y%m%dT%H%M%S}-{os.getpid()}.log"


@contextmanager
def progress_only(path: Path) -> Iterator[Path]:
    """Inside: fds 1 and 2 write to `path`; `recsys_tasks` log records at INFO and above also go
    to the terminal, one short line each."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(saved_out), "w", buffering=1, encoding="utf-8", errors="replace")
    handler = logging.StreamHandler(terminal)
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    handler.addFilter(lambda record: record.levelno >= logging.WARNING or getattr(record, "progress", False))
    progress = logging.getLogger(PROGRESS_LOGGER)
    progress.addHandler(handler)
    if progress.level == logging.NOTSET or progress.level > logging.INFO:
        progress.setLevel(logging.INFO)
    with open(path, "ab") as log_file:
        os.dup2(log_file.fileno(), 1)
        os.dup2(log_file.fileno(), 2)
    try:
        yield path
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        os.close(saved_out)
        os.close(saved_err)
        progress.removeHandler(handler)
        terminal.close()
