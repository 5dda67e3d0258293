-- recommendations_fallback: the current run's non-personal list (the items with most events in
-- the last trending_days of the log, available ones only), for users without a row in
-- recommendations_current (new or unknown users). It follows the same pointer as the users'
-- lists, so both switch to a new run in one commit.
SELECT f.run_id, f.rank, f.item_id, f.score, f.generated_at
FROM {fallback_table} AS f
JOIN {pointer_table} AS p
  ON p.view_name = '{current_view}' AND p.run_id = f.run_id
