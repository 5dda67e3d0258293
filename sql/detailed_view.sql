-- recommendations_detailed: the users' lists (recommendations_current, every column) with each
-- item's title, attributes and availability from the run's catalogue snapshot, and the title of
-- the history item each row names as its reason. NULL where the catalogue has no text.
-- Titles are catalogue text: escape them wherever they are shown (the console does).
SELECT r.*, i.title, i.attributes, i.available, b.title AS because_title
FROM {current_view} AS r
LEFT JOIN {items_table} AS i
  ON i.run_id = r.run_id AND i.item_id = r.item_id
LEFT JOIN {items_table} AS b
  ON b.run_id = r.run_id AND b.item_id = r.because_item_id
