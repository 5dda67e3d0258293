-- What a downstream application runs to read one user's recommendations.
SELECT rank, item_id, score, strategy, variant, model_version, run_id, generated_at
FROM {current_view}
WHERE user_id = :user_id
ORDER BY rank
