-- Tables of the published results, applied idempotently by writers (`recsys init-db`, a run's
-- first record, the publish), never by readers.
-- {results_table}, {runs_table}, {stages_table} and {pointer_table} are replaced by validated identifiers.
-- Dates are stored as TIMESTAMP WITH TIME ZONE (text in ISO 8601 on SQLite).

-- One row per (run, user, rank). Rows of a run become visible to readers only when the
-- pointer below names that run.
-- PostgreSQL: {partition_by} is PARTITION BY LIST (run_id). Each run is COPYed into a
-- staging table of its own, indexed, then attached as the run's partition in a commit of its
-- own just before the switch (db/publish.py says why); the partition stays unreachable until
-- the pointer names the run. Retiring a run drops its partition (no DELETE, no bloat).
-- SQLite: {partition_by} is empty; a run's rows are inserted in the switch transaction.
CREATE TABLE IF NOT EXISTS {results_table} (
    run_id        VARCHAR(250)     NOT NULL,
    user_id       VARCHAR(250)     NOT NULL,
    rank          INTEGER          NOT NULL,
    item_id       VARCHAR(250)     NOT NULL,
    score         DOUBLE PRECISION NOT NULL,
    model_version VARCHAR(100)     NOT NULL,
    generated_at  TIMESTAMP WITH TIME ZONE NOT NULL,
    -- 'model', or 'popularity' for users with too little history for the model
    strategy      VARCHAR(16)      NOT NULL DEFAULT 'model',
    -- 'model', or 'control' for the holdout (holdout_fraction) shown the control list
    variant       VARCHAR(16)      NOT NULL DEFAULT 'model',
    -- what the score means (docs/readers.md): a model row's probability that the item is the
    -- user's next (softmax over the catalogue); a popularity row's share of all events
    probability   DOUBLE PRECISION,
    -- why: the item of the user's history nearest the recommended one (cosine of item vectors)
    because_item_id VARCHAR(250),
    because_score DOUBLE PRECISION,
    -- 'history', 'new_item', 'popular' or 'control' (scoring/explain.py: REASONS)
    reason        VARCHAR(16),
    PRIMARY KEY (run_id, user_id, rank)
){partition_by};

-- One row per pipeline run: where it got to, what it produced, and why it stopped.
CREATE TABLE IF NOT EXISTS {runs_table} (
    run_id        VARCHAR(250) PRIMARY KEY,
    status        VARCHAR(32)  NOT NULL,
    model_version VARCHAR(100),
    source_uri    TEXT,
    rows_written  INTEGER,
    users         INTEGER,
    items         INTEGER,
    metrics       TEXT,
    message       TEXT,
    started_at    TIMESTAMP WITH TIME ZONE,
    updated_at    TIMESTAMP WITH TIME ZONE,
    published_at  TIMESTAMP WITH TIME ZONE
);

-- How long each stage (each generation shard) of each run took, and how it ended.
CREATE TABLE IF NOT EXISTS {stages_table} (
    run_id      VARCHAR(250) NOT NULL,
    stage       VARCHAR(100) NOT NULL,
    status      VARCHAR(32)  NOT NULL,
    started_at  TIMESTAMP WITH TIME ZONE NOT NULL,
    seconds     DOUBLE PRECISION,
    PRIMARY KEY (run_id, stage)
);

-- How the published lists did: each nightly run, before it trains, scores the lists readers
-- were shown (published_run_id) against the events that came after that run's data. One row
-- per (model_version, strategy, variant) group, plus 'all' rows; uplift (relative hit rate of
-- variant 'model' over 'control', with a 95% interval) on the ('all', 'model') row.
CREATE TABLE IF NOT EXISTS {outcomes_table} (
    run_id            VARCHAR(250) NOT NULL,
    published_run_id  VARCHAR(250) NOT NULL,
    model_version     VARCHAR(100) NOT NULL,
    strategy          VARCHAR(16)  NOT NULL,
    variant           VARCHAR(16)  NOT NULL,
    k                 INTEGER      NOT NULL,
    events_since      TIMESTAMP WITH TIME ZONE,
    events_until      TIMESTAMP WITH TIME ZONE,
    listed_users      INTEGER      NOT NULL,
    active_users      INTEGER      NOT NULL,
    hit_users         INTEGER      NOT NULL,
    hit_rate          DOUBLE PRECISION,
    ndcg              DOUBLE PRECISION,
    coverage          DOUBLE PRECISION,
    weighted_hits     DOUBLE PRECISION NOT NULL,
    uplift            DOUBLE PRECISION,
    uplift_low        DOUBLE PRECISION,
    uplift_high       DOUBLE PRECISION,
    scored_at         TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (run_id, published_run_id, model_version, strategy, variant)
);

-- Beside the users' lists, each run publishes its non-personal fallback list (the most events
-- in the last trending_days, available items only) and each item's similar items. Readers see
-- them through the recommendations_fallback and similar_items_current views, which follow the
-- pointer below: they change run in the same commit as recommendations_current.
CREATE TABLE IF NOT EXISTS {fallback_table} (
    run_id        VARCHAR(250)     NOT NULL,
    rank          INTEGER          NOT NULL,
    item_id       VARCHAR(250)     NOT NULL,
    score         DOUBLE PRECISION NOT NULL,
    generated_at  TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (run_id, rank)
);

CREATE TABLE IF NOT EXISTS {similar_table} (
    run_id          VARCHAR(250)     NOT NULL,
    item_id         VARCHAR(250)     NOT NULL,
    rank            INTEGER          NOT NULL,
    similar_item_id VARCHAR(250)     NOT NULL,
    score           DOUBLE PRECISION NOT NULL,
    generated_at    TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (run_id, item_id, rank)
);

-- The run's catalogue snapshot: each listed or similar item's title, attributes ("column=value"
-- joined by "|") and availability as the run saw them; recommendations_detailed joins it.
CREATE TABLE IF NOT EXISTS {items_table} (
    run_id        VARCHAR(250)     NOT NULL,
    item_id       VARCHAR(250)     NOT NULL,
    title         TEXT,
    attributes    TEXT,
    available     BOOLEAN          NOT NULL,
    generated_at  TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (run_id, item_id)
);

-- Which run each reader view shows. Switching a run is one UPDATE of one row.
CREATE TABLE IF NOT EXISTS {pointer_table} (
    view_name   VARCHAR(100) PRIMARY KEY,
    run_id      VARCHAR(250) NOT NULL,
    switched_at TIMESTAMP WITH TIME ZONE NOT NULL
);
