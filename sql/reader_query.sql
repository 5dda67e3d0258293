-- What a downstream application runs to read one user's recommendations: the user's own list,
-- or, for a user without one (new or unknown), the run's fallback list (strategy 'fallback',
-- reason 'trending'). One statement reads one snapshot, so both parts come from the same run.
-- The reader kit (recsys_tasks/reader.py: Reader.recommend) runs exactly this statement.
SELECT rank, item_id, score, probability, reason, because_item_id, because_score, strategy, variant,
       model_version, run_id, generated_at
FROM {current_view}
WHERE user_id = :user_id
UNION ALL
SELECT rank, item_id, score, CAST(NULL AS DOUBLE PRECISION), 'trending', CAST(NULL AS VARCHAR(250)),
       CAST(NULL AS DOUBLE PRECISION), 'fallback', 'model', CAST(NULL AS VARCHAR(100)), run_id, generated_at
FROM {fallback_view}
WHERE NOT EXISTS (SELECT 1 FROM {current_view} WHERE user_id = :user_id)
ORDER BY rank
