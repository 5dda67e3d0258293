"""The results database, and every SQL statement of the project: table names and shapes
(`tables`), DDL (`schema`), the run and stage tables (`runs`), the atomic publish and
retirement (`publish`), what readers read (`readers`), outcomes and erasure.

Callers write `from recsys_tasks import db` and `db.publish_recommendations(...)`."""

from recsys_tasks.db.erasure import count_source_events, delete_users, tables_mentioning
from recsys_tasks.db.outcomes import read_outcomes, write_outcomes
from recsys_tasks.db.publish import publish_recommendations
from recsys_tasks.db.readers import (
    item_titles,
    listed_counts,
    read_current,
    read_current_for,
    run_listing,
    sample_users,
    similar_items,
    user_list,
    users_listing,
)
from recsys_tasks.db.runs import (
    current_run_id,
    get_run,
    metric_history,
    recent_runs,
    record_run,
    record_stage,
    run_dates,
    run_statuses,
    stage_timings,
)
from recsys_tasks.db.schema import apply_schema, schema_is_current, statements
from recsys_tasks.db.tables import (
    FALLBACK_COLUMNS,
    ITEM_COLUMNS,
    RESULT_COLUMNS,
    SIMILAR_COLUMNS,
    Tables,
    columns_of,
    has_table,
    make_engine,
    sql_file,
    sql_identifier,
    sqlite_file,
)

__all__ = [
    "FALLBACK_COLUMNS", "ITEM_COLUMNS", "RESULT_COLUMNS", "SIMILAR_COLUMNS", "Tables", "apply_schema", "columns_of",
    "count_source_events", "current_run_id", "delete_users", "get_run", "has_table", "item_titles", "listed_counts",
    "make_engine",
    "metric_history", "publish_recommendations", "read_current", "read_current_for", "read_outcomes", "recent_runs",
    "record_run", "record_stage", "run_dates", "run_statuses", "run_listing", "sample_users", "schema_is_current",
    "similar_items",
    "sql_file", "sql_identifier", "sqlite_file", "stage_timings", "statements", "tables_mentioning", "user_list", "users_listing",
    "write_outcomes",
]
