-- similar_items_current: each available item's most similar available items (cosine of the
-- published model's item vectors; new items by their content-predicted vectors), for item
-- pages. It follows the same pointer as the users' lists, so both switch in one commit.
SELECT s.run_id, s.item_id, s.rank, s.similar_item_id, s.score, s.generated_at
FROM {similar_table} AS s
JOIN {pointer_table} AS p
  ON p.view_name = '{current_view}' AND p.run_id = s.run_id
