"""Exceptions with messages an operator can act on.

`retryable = False` marks errors that another attempt cannot fix (bad data, bad config, a
rejected model); the Airflow adapter fails such tasks at once instead of retrying them.
"""

from __future__ import annotations


class RecsysError(Exception):
    retryable = True


class ConfigError(RecsysError):
    retryable = False


class RunInterrupted(RecsysError):
    """The operator stopped the run (Ctrl-C or SIGTERM to `recsys run`): never retried."""

    retryable = False


# A stop the operator asked for: the signal handler only notes it (raising from a handler could
# leave a lock held); long loops (every training step) and every stage's start check it.
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
    import signal
    import threading

    if _ARMED["armed"] and threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda received, frame: request_stop(received))


def raise_if_stopped() -> None:
    if _STOP["signal"] is not None:
        import signal

        raise RunInterrupted(f"interrupted by {signal.Signals(_STOP['signal']).name}")


class SourceError(RecsysError):
    """The interaction source cannot be read or parsed."""

    retryable = False


class SourceNotLandedError(SourceError):
    """The source is not there (yet): a file, object or table the producer has not written.
    Retried, since tonight's export may still be on its way."""

    retryable = True


class DataValidationError(RecsysError):
    """The interaction log failed its expectations; `report_uri` holds the full report."""

    retryable = False

    def __init__(self, message: str, report_uri: str | None = None):
        super().__init__(message)
        self.report_uri = report_uri


class ArtifactNotFoundError(RecsysError):
    retryable = False


class ArtifactError(RecsysError):
    """An artifact exists but cannot be trusted or read: altered, planted, truncated or foreign."""

    retryable = False


class GateRejectedError(RecsysError):
    """Promoting a version the gate rejected, without saying so explicitly."""

    retryable = False


class PublishError(RecsysError):
    pass


class StalePublishError(PublishError):
    """Readers already see a run that started after this one: publishing would go back in time."""

    retryable = False
