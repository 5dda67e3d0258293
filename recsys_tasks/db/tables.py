"""Names and shapes of the results database: the tables and views a deployment owns, the
columns readers get, the engine (SQLite pragmas included) and the `sql/` files rendered."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from recsys_tasks.errors import ConfigError

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
RESULT_COLUMNS = ("run_id", "user_id", "rank", "item_id", "score", "model_version", "generated_at", "strategy", "variant",
                  "probability", "because_item_id", "because_score", "reason")
# columns that came after the first release, added to older tables in place: name -> DDL type
ADDED_COLUMNS = {
    "strategy": "VARCHAR(16) NOT NULL DEFAULT 'model'", "variant": "VARCHAR(16) NOT NULL DEFAULT 'model'",
    "probability": "DOUBLE PRECISION", "because_item_id": "VARCHAR(250)", "because_score": "DOUBLE PRECISION",
    "reason": "VARCHAR(16)",
}
ADDED_DEFAULTS = {"strategy": "model", "variant": "model"}  # the rest: NULL
# the lists published beside the users' (scoring.companions makes them)
FALLBACK_COLUMNS = ("rank", "item_id", "score")
SIMILAR_COLUMNS = ("item_id", "rank", "similar_item_id", "score")
ITEM_COLUMNS = ("item_id", "title", "attributes", "available")  # the run's catalogue snapshot

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def sql_identifier(name: str) -> str:
    """Table and view names are spliced into DDL, so only plain identifiers are allowed."""
    if not _IDENTIFIER.match(name):
        raise ConfigError(f"{name!r} is not a valid SQL table or view name")
    return name


@dataclass(frozen=True)
class Tables:
    results: str
    runs: str
    pointer: str
    view: str
    reader_role: str = "recsys_reader"
    stages: str = "recsys_runs_stages"
    runs_public: str = "recsys_runs_public"  # what readers may see of the run table
    outcomes: str = "recsys_outcomes"  # how published lists did (scoring.outcomes)
    # beside the users' lists, published in the same switch: the non-personal fallback list and
    # each item's similar items, in tables of their own behind pointer views
    fallback_view: str = "recommendations_fallback"
    similar_view: str = "similar_items_current"
    # the users' lists with each item's title, attributes and availability as of the run
    detailed_view: str = "recommendations_detailed"

    @property
    def items(self) -> str:
        return f"{self.results[:50]}_items"

    @property
    def fallback(self) -> str:
        return f"{self.results[:50]}_trending"

    @property
    def similar(self) -> str:
        return f"{self.results[:50]}_similar"

    @classmethod
    def from_config(cls, config: Any) -> Tables:
        """The names a `PipelineConfig` gives (each checked to be a plain identifier)."""
        return cls(
            results=sql_identifier(config.results_table),
            runs=sql_identifier(config.runs_table),
            pointer=sql_identifier(f"{config.results_table}_pointer"),
            view=sql_identifier(config.current_view),
            reader_role=sql_identifier(config.reader_role),
            stages=sql_identifier(f"{config.runs_table}_stages"),
            runs_public=sql_identifier(f"{config.runs_table}_public"),
            outcomes=sql_identifier(config.outcomes_table),
            fallback_view=sql_identifier(config.fallback_view),
            similar_view=sql_identifier(config.similar_view),
        )

    def all_names(self) -> set[str]:
        """Every table and view of a complete schema."""
        return {self.results, self.runs, self.stages, self.pointer, self.view, self.runs_public, self.outcomes,
                self.fallback, self.similar, self.fallback_view, self.similar_view, self.items, self.detailed_view}

    def render(self, sql: str, partition_by: str = "") -> str:
        return sql.format(
            results_table=self.results, runs_table=self.runs, pointer_table=self.pointer,
            current_view=self.view, reader_role=self.reader_role, stages_table=self.stages,
            runs_public=self.runs_public, outcomes_table=self.outcomes, partition_by=partition_by,
            fallback_table=self.fallback, fallback_view=self.fallback_view,
            similar_table=self.similar, similar_view=self.similar_view,
            items_table=self.items, detailed_view=self.detailed_view,
        )

    def partition(self, run_id: str) -> str:
        """PostgreSQL: the name of a run's partition (a hash of the run id: any run id, a valid name)."""
        return f"{self.results[:36]}_run_{hashlib.sha1(run_id.encode()).hexdigest()[:16]}"


def sql_file(name: str, tables: Tables, partition_by: str = "") -> str:
    """A statement of `sql/`, its names filled in and its comment lines dropped."""
    text = tables.render((SQL_DIR / name).read_text(), partition_by)
    return "\n".join(line for line in text.splitlines() if not line.strip().startswith("--"))


def sqlite_file(url: str) -> Path | None:
    """The database file behind a SQLite URL (None for other databases and in-memory SQLite)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def is_postgres(bind: sa.Engine | sa.Connection) -> bool:
    """The one place that asks which dialect a connection speaks."""
    return bind.dialect.name == "postgresql"


def make_engine(db_url: str) -> sa.Engine:
    if (db_file := sqlite_file(db_url)) is not None:
        db_file.parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(db_url)
    if engine.dialect.name == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # readers see the old run while a publish commits
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

    return engine


def has_table(engine: sa.Engine, name: str) -> bool:
    """Whether a table or view exists (a fresh deployment has none)."""
    return sa.inspect(engine).has_table(name)


def columns_of(engine: sa.Engine, name: str) -> list[str]:
    return [c["name"] for c in sa.inspect(engine).get_columns(name)]
