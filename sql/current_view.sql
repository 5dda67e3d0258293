-- The stable view downstream applications read: exactly one complete run, the one the
-- pointer names. Prefixed with CREATE VIEW IF NOT EXISTS (SQLite) or CREATE OR REPLACE VIEW
-- (PostgreSQL) when applied.
SELECT r.run_id, r.user_id, r.rank, r.item_id, r.score, r.model_version, r.generated_at, r.strategy, r.variant,
       r.probability, r.because_item_id, r.because_score, r.reason
FROM {results_table} AS r
JOIN {pointer_table} AS p
  ON p.view_name = '{current_view}' AND p.run_id = r.run_id
