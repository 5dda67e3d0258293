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
