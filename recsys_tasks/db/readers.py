"""What readers read: the reader view, one user's list through `sql/reader_query.sql`, an
item's similar items, and samples for pages. Nothing here writes, or applies the schema."""

from __future__ import annotations

from typing import Any

import pandas as pd
import sqlalchemy as sa

from recsys_tasks.db.runs import pointer_run
from recsys_tasks.db.tables import Tables, sql_file


def read_current(engine: sa.Engine, tables: Tables, user_id: str | None = None) -> pd.DataFrame:
    """What a downstream application sees (all users, or one user's list as the reader query gives it)."""
    with engine.connect() as conn:
        if user_id is None:
            return pd.read_sql(sa.text(f"SELECT * FROM {tables.view} ORDER BY user_id, rank"), conn)
        return pd.read_sql(sa.text(sql_file("reader_query.sql", tables)), conn, params={"user_id": user_id})


def user_list(engine: sa.Engine, tables: Tables, user_id: str) -> tuple[list[dict[str, Any]], str | None]:
    """One user's list, or the run's fallback list for a user without one, in one statement
    (`sql/reader_query.sql`: one snapshot, so both parts come from the same run), and the run
    they come from (the pointer's, when even the fallback is empty)."""
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(sa.text(sql_file("reader_query.sql", tables)), {"user_id": user_id}).mappings()]
        return rows, (rows[0]["run_id"] if rows else pointer_run(conn, tables))


def item_titles(engine: sa.Engine, tables: Tables, run_id: str, item_ids: list[str]) -> dict[str, str]:
    """The titles of these items in the run's catalogue snapshot (items without one left out)."""
    if not item_ids:
        return {}
    statement = sa.text(
        f"SELECT item_id, title FROM {tables.items} WHERE run_id = :r AND item_id IN :items AND title IS NOT NULL"
    ).bindparams(sa.bindparam("items", expanding=True))
    with engine.connect() as conn:
        return {str(i): str(t) for i, t in conn.execute(statement, {"r": run_id, "items": sorted(set(item_ids))}).all()}


def read_current_for(
    engine: sa.Engine, tables: Tables, user_ids: list[str], chunk: int = 500,
    columns: tuple[str, ...] = ("user_id", "rank", "item_id"),
) -> pd.DataFrame:
    """The published rows of these users (`columns` of the reader view)."""
    statement = sa.text(f"SELECT {', '.join(columns)} FROM {tables.view} WHERE user_id IN :users").bindparams(
        sa.bindparam("users", expanding=True)
    )
    with engine.connect() as conn:
        parts = [
            pd.read_sql(statement, conn, params={"users": user_ids[lo : lo + chunk]})
            for lo in range(0, len(user_ids), chunk)
        ]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(columns))


def sample_users(engine: sa.Engine, tables: Tables, n: int = 6) -> list[str]:
    """The first `n` users of the reader view, by id."""
    with engine.connect() as conn:
        statement = sa.text(f"SELECT DISTINCT user_id FROM {tables.view} ORDER BY user_id LIMIT :n")
        return [str(u) for u in conn.execute(statement, {"n": n}).scalars()]


def similar_items(engine: sa.Engine, tables: Tables, item_id: str, limit: int = 20) -> list[dict[str, Any]]:
    """An item's published neighbours, best first."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(f"SELECT rank, similar_item_id, score FROM {tables.similar_view} WHERE item_id = :i "
                    "ORDER BY rank LIMIT :n"),
            {"i": item_id, "n": limit},
        ).mappings().all()
    return [dict(r) for r in rows]


def listed_counts(engine: sa.Engine, tables: Tables) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What the current lists hold: users per (model_version, strategy, variant), and the
    distinct items of each group (for coverage)."""
    keys = "model_version, strategy, variant"
    with engine.connect() as conn:
        users = pd.read_sql(sa.text(
            f"SELECT {keys}, COUNT(DISTINCT user_id) AS listed_users FROM {tables.view} GROUP BY {keys}"), conn)
        items = pd.read_sql(sa.text(f"SELECT DISTINCT {keys}, item_id FROM {tables.view}"), conn)
    return users, items


def run_listing(engine: sa.Engine, tables: Tables, run_id: str) -> tuple[set[str], set[str]]:
    """The users a run published lists for, and the items those lists hold."""
    with engine.connect() as conn:
        users = set(conn.execute(sa.text(f"SELECT DISTINCT user_id FROM {tables.results} WHERE run_id = :r"),
                                 {"r": run_id}).scalars())
        items = set(conn.execute(sa.text(f"SELECT DISTINCT item_id FROM {tables.results} WHERE run_id = :r"),
                                 {"r": run_id}).scalars())
    return users, items


def users_listing(engine: sa.Engine, tables: Tables, run_id: str, items: list[str], chunk: int = 500) -> set[str]:
    """The users whose list in `run_id` holds any of `items`."""
    found: set[str] = set()
    with engine.connect() as conn:
        for lo in range(0, len(items), chunk):
            statement = sa.text(f"SELECT DISTINCT user_id FROM {tables.results} WHERE run_id = :r AND item_id IN :items"
                                ).bindparams(sa.bindparam("items", expanding=True))
            found |= set(conn.execute(statement, {"r": run_id, "items": items[lo : lo + chunk]}).scalars())
    return found
