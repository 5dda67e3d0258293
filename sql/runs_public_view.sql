-- What downstream readers may see of the run table: status, counts, metrics and the model,
-- never where the data came from (a source URI can name hosts and users). Prefixed with
-- CREATE VIEW IF NOT EXISTS (SQLite) or CREATE OR REPLACE VIEW (PostgreSQL) when applied.
SELECT run_id, status, model_version, rows_written, users, items, metrics, message,
       started_at, updated_at, published_at
FROM {runs_table}
