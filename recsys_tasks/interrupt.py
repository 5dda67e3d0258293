"""Stopping a run when the operator says so: Ctrl-C (SIGINT) or SIGTERM to `recsys run`.

The signal handler only notes the stop (raising from a handler could leave a lock held); long
loops (every training step) and every stage's start call `raise_if_stopped`, which raises
RunInterrupted: never retried, so the run fails ("interrupted") and readers keep their lists.
"""

from __future__ import annotations

import signal
import threading

from recsys_tasks.errors import RunInterrupted

_STOP: dict[str, int | None] = {"signal": None}


def request_stop(signum: int) -> None:
    _STOP["signal"] = signum


def stop_requested() -> int | None:
    return _STOP["signal"]


_ARMED = {"armed": False}


def stop_on_signals() -> None:
    """For `recsys run`: Ctrl-C (SIGINT) or SIGTERM only note the stop (`request_stop`); the
    running stage stops at its next training step, any later one before it starts, with
    RunInterrupted: never retried, so the run fails ("interrupted") and readers keep theirs."""
    _ARMED["armed"] = True
    rearm()


def rearm() -> None:
    """Install the handlers again (Airflow's task runner installs its own when a task starts)."""
    if _ARMED["armed"] and threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda received, frame: request_stop(received))


_REPORTED = {"done": False}


def report_once() -> bool:
    """After a stop: True the first time a task's failure is reported, then False, so the tasks
    that fail at their start after it (mapped shards, say) add no alert of their own."""
    first = not _REPORTED["done"]
    _REPORTED["done"] = True
    return first


def raise_if_stopped() -> None:
    if _STOP["signal"] is not None:
        raise RunInterrupted(f"interrupted by {signal.Signals(_STOP['signal']).name}")
