"""Credentials never leave the process: one function masks them in any text or structure.

Database URLs (`postgresql+psycopg://user:PASSWORD@host/db`), URLs with credentials in the
query string (`?password=...`, `X-Amz-Signature=...`) and `key=value` secrets in free text
are masked before anything is logged, stored in the run table, written as an artifact or
printed by the CLI.
"""

from __future__ import annotations

import logging
import re
from typing import Any

MASK = "***"

# scheme://user:password@host -> scheme://user:***@host (the user name stays: it helps debugging)
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:@/\s'\"]*):(?P<password>[^@/\s'\"]+)@")
# password=..., secret: ..., token=..., aws_secret_access_key=... in query strings, options or prose
_KEY_VALUE = re.compile(
    r"(?P<key>\b[\w\-]*(?:password|passwd|pwd|secret|token|signature|credential|api[_\-]?key|access[_\-]?key)[\w\-]*)"
    r"(?P<sep>\s*[=:]\s*)(?P<value>[^\s&;,'\"}]+)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """`text` with every credential replaced by `***`."""
    if not text:
        return text
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    return _KEY_VALUE.sub(lambda m: f"{m['key']}{m['sep']}{MASK}", text)


def redact_url_passwords(text: str) -> str:
    """Only `scheme://user:password@` masked: safe on data (item ids) that free text rules could alter."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text) if "://" in text else text


def redact_obj(value: Any, urls_only: bool = False) -> Any:
    """`redact` applied to every string in a JSON-like structure (dicts, lists, tuples);
    `urls_only` masks URL passwords and secret-named keys only, leaving other text as it is."""
    if isinstance(value, str):
        return redact_url_passwords(value) if urls_only else redact(value)
    if isinstance(value, dict):
        return {
            k: MASK if _is_secret_key(k) and isinstance(v, str) and v else redact_obj(v, urls_only) for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return type(value)(redact_obj(v, urls_only) for v in value)
    return value


def _is_secret_key(key: Any) -> bool:
    return isinstance(key, str) and _KEY_VALUE.fullmatch(f"{key}=x") is not None


def install_log_redaction() -> None:
    """Mask credentials in every log record this package emits, whatever handler prints it.

    A record factory rather than a logger filter: filters on `recsys_tasks` do not see the
    records of its child loggers. Installing it twice is harmless."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_recsys_redacting", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if isinstance(record.name, str) and record.name.startswith("recsys_tasks"):
            try:
                message = record.getMessage()
            except Exception:  # a malformed record is the logging module's problem to report
                return record
            record.msg, record.args = redact(message), ()
        return record

    factory._recsys_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
