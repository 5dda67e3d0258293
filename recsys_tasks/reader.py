"""The reader kit: what an application calls to read the published lists.

    from recsys_tasks.reader import Reader

    reader = Reader("postgresql+psycopg://app@db/recsys")   # a login role granted recsys_reader
    reader.recommend("u42", k=10)   # the user's list, or the fallback list for an unknown user
    reader.detailed("u42", k=10)    # the user's list with item titles and attributes (no fallback)
    reader.similar("i7", k=10)      # an item's similar items
    reader.current_run()            # the run readers see: run_id, model_version, rows, users, when
    for page in reader.pages(50_000):  # every row of that run, a page at a time (exports, caches)
        ...

It reads only the reader views (the role `recsys_reader` may read nothing else) and imports
nothing but SQLAlchemy (and the database's driver): no pandas, torch or Airflow, so an app can
install it alone (`pip install --no-deps recsys-tasks sqlalchemy psycopg[binary]`). Every call is
one short statement, so a publish never waits on a reader (docs/production.md). Each row is a
dict; `reason` says why the item is there (`history`: like `because_item_id`, an item of the
user's history; `new_item`; `popular`; `control`; `trending`: the fallback list) and
`probability` what its score means (docs/readers.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

# one user's list or, for a user without one, the run's fallback list, in one statement (one
# snapshot, so both parts come from the same run); sql/reader_query.sql is this text for apps
# written in other languages (tests/unit/test_reader_kit.py keeps the two equal)
READER_QUERY = """\
SELECT rank, item_id, score, probability, reason, because_item_id, because_score, strategy, variant,
       model_version, run_id, generated_at
FROM {current_view}
WHERE user_id = :user_id
UNION ALL
SELECT rank, item_id, score, CAST(NULL AS DOUBLE PRECISION), 'trending', CAST(NULL AS VARCHAR(250)),
       CAST(NULL AS DOUBLE PRECISION), 'fallback', 'model', CAST(NULL AS VARCHAR(100)), run_id, generated_at
FROM {fallback_view}
WHERE NOT EXISTS (SELECT 1 FROM {current_view} WHERE user_id = :user_id)
ORDER BY rank"""


class RunChangedError(RuntimeError):
    """A publish replaced the run being read page by page."""


class Reader:
    """Reads the published lists through the reader views (names as a deployment's defaults)."""

    def __init__(self, url: str | sa.Engine, *, current_view: str = "recommendations_current",
                 fallback_view: str = "recommendations_fallback", similar_view: str = "similar_items_current",
                 runs_view: str = "recsys_runs_public", detailed_view: str = "recommendations_detailed") -> None:
        for name in (current_view, fallback_view, similar_view, runs_view, detailed_view):
            if not name.replace("_", "").isalnum():
                raise ValueError(f"{name!r} is not a plain view name")
        self.engine = url if isinstance(url, sa.Engine) else sa.create_engine(url)
        self.current_view, self.fallback_view = current_view, fallback_view
        self.similar_view, self.runs_view, self.detailed_view = similar_view, runs_view, detailed_view

    def _rows(self, statement: str, **params: Any) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.text(statement), params).mappings()]

    def recommend(self, user_id: str, k: int = 10) -> list[dict[str, Any]]:
        """The user's top-k, best first; a user without a list (new or unknown) gets the
        fallback list (`reason` "trending"). Empty only before the first publish."""
        query = READER_QUERY.format(current_view=self.current_view, fallback_view=self.fallback_view)
        return self._rows(query, user_id=str(user_id))[:k]

    def detailed(self, user_id: str, k: int = 10) -> list[dict[str, Any]]:
        """The user's own list with names: every column of `recommend` plus `title`, `attributes`,
        `available` (as of the run) and `because_title`. Catalogue text: escape it where shown."""
        return self._rows(f"SELECT * FROM {self.detailed_view} WHERE user_id = :user_id ORDER BY rank LIMIT :k",
                          user_id=str(user_id), k=int(k))

    def similar(self, item_id: str, k: int = 10) -> list[dict[str, Any]]:
        """The item's most similar available items, best first (empty for an unknown or
        unavailable item: the lists never name an item the catalogue marks unavailable)."""
        return self._rows(
            f"SELECT rank, similar_item_id, score, run_id FROM {self.similar_view} WHERE item_id = :item_id "
            "ORDER BY rank LIMIT :k", item_id=str(item_id), k=int(k),
        )

    def current_run(self) -> dict[str, Any] | None:
        """The run readers see now (run_id, model_version, rows_written, users, published_at);
        None before the first publish."""
        shown = self._rows(f"SELECT run_id FROM {self.fallback_view} WHERE rank = 1")
        if not shown:
            shown = self._rows(f"SELECT run_id FROM {self.current_view} WHERE rank = 1 LIMIT 1")
        if not shown:
            return None
        rows = self._rows(
            f"SELECT run_id, status, model_version, rows_written, users, items, published_at FROM {self.runs_view} "
            "WHERE run_id = :run_id", run_id=shown[0]["run_id"],
        )
        return rows[0] if rows else {"run_id": shown[0]["run_id"]}

    def pages(self, rows: int = 50_000, run_id: str | None = None) -> Iterator[list[dict[str, Any]]]:
        """Every published row of one run (`run_id`, default the current one), `rows` at a time
        in (user_id, rank) order, each page one short statement: never the whole view at once.
        Raises RunChangedError when a newer publish replaced the run before the last page."""
        run_id = run_id or (self.current_run() or {}).get("run_id")
        if run_id is None:
            return
        after_user, after_rank = "", 0
        while True:
            page = self._rows(
                f"SELECT user_id, rank, item_id, score, probability, reason, because_item_id, strategy, variant, "
                f"model_version FROM {self.current_view} WHERE run_id = :run_id AND "
                "(user_id > :u OR (user_id = :u AND rank > :r)) ORDER BY user_id, rank LIMIT :n",
                run_id=run_id, u=after_user, r=after_rank, n=int(rows),
            )
            if page:
                yield page
                after_user, after_rank = page[-1]["user_id"], page[-1]["rank"]
            if len(page) < rows:
                if (self.current_run() or {}).get("run_id") != run_id:
                    raise RunChangedError(f"run {run_id} was replaced while it was read; read the new run from the start")
                return

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
