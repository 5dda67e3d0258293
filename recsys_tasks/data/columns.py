"""Which source column feeds which canonical column.

Owns the canonical column names, the one table of names people commonly give them (`ALIASES`),
and `resolve_columns`, which every kind of source (CSV and Parquet headers, SQL tables) uses to
choose its columns. The order of precedence: an explicit mapping (`RECSYS_SOURCE_COLUMNS`), then
the canonical name itself, then a single alias. Two aliases for one canonical column are an
error naming both, never a guess.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from recsys_tasks.errors import SourceError

CANONICAL_COLUMNS = ("user_id", "item_id", "ts", "event_type", "value")

# Compared after `normalise` (case, `_`, `-` and spaces ignored), so `visitor_id` also covers
# `visitorid` and `VisitorId`, and each canonical name's own spellings (`userId`, `ITEM ID`,
# `event-type`) count as aliases too. No name may appear in two families (a test checks).
ALIASES: dict[str, tuple[str, ...]] = {
    # `session_id` is deliberately not here: a session is not a person. Read as users, sessions
    # would cut every history at session boundaries and recommend per session, a silent change of
    # meaning; and logs that carry a visitor and a session column would be refused as ambiguous.
    # Session-based data sets opt in with RECSYS_SOURCE_COLUMNS="user_id=session_id".
    "user_id": ("user", "uid", "visitor_id", "visitor", "customer_id", "customer", "client_id",
                "member_id", "account_id", "reviewer_id"),
    "item_id": ("item", "movie_id", "product_id", "product", "asin", "sku", "article_id",
                "content_id", "track_id", "song_id", "book_id", "video_id", "isbn"),
    "ts": ("timestamp", "time", "event_time", "event_timestamp", "created_at",
           "datetime", "date", "event_date", "occurred_at", "unix_time", "unix_review_time"),
    "event_type": ("event", "event_name", "action", "action_type", "type", "behavior", "behaviour",
                   "behavior_type", "interaction_type"),
    "value": ("rating", "score", "weight", "stars", "overall"),
}

SETTING = "RECSYS_SOURCE_COLUMNS"  # where a person says which column is which


def normalise(name: object) -> str:
    """`Event-Time` -> `eventtime`: the form names are compared in."""
    return re.sub(r"[\s_\-]+", "", str(name)).lower()


_FAMILY = {normalise(alias): canonical for canonical, aliases in ALIASES.items() for alias in (canonical, *aliases)}


def resolve_columns(columns: Iterable[object], explicit: Mapping[str, str], origin: str) -> dict[str, str]:
    """{canonical: source column} for every canonical column the source has.

    `explicit` ({canonical: source}) always wins, and its columns are no alias for anything
    else; a column named exactly like a canonical one beats its aliases.
    """
    present = [str(c) for c in columns]
    mapping: dict[str, str] = {}
    for canonical, source in explicit.items():
        if source not in present:
            raise SourceError(
                f"{origin}: {SETTING} maps {canonical}={source}, but there is no column {source!r}; "
                f"found {', '.join(present)}"
            )
        mapping[canonical] = source
    claimed = set(explicit.values())
    for canonical in CANONICAL_COLUMNS:
        if canonical in mapping:
            continue
        if canonical in present:
            mapping[canonical] = canonical
            continue
        candidates = [c for c in present if c not in claimed and _FAMILY.get(normalise(c)) == canonical]
        if len(candidates) > 1:
            names = ", ".join(repr(c) for c in candidates[:-1]) + f" and {candidates[-1]!r}"
            raise SourceError(
                f"{origin}: columns {names} could each be {canonical}; say which one with "
                f"{SETTING}, e.g. {SETTING}=\"{canonical}={candidates[0]}\""
            )
        if candidates:
            mapping[canonical] = candidates[0]
    return mapping


def renamed(mapping: Mapping[str, str]) -> dict[str, str]:
    """The entries of a mapping that rename something: what a run reports as `column_mapping`."""
    return {canonical: source for canonical, source in mapping.items() if canonical != source}
