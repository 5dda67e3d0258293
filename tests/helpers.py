"""Small readers the end-to-end tests share: what downstream apps see, and the run table."""

from recsys_tasks import results_db


def read_view(config):
    """Everything `recommendations_current` shows right now."""
    engine = results_db.make_engine(config.db_url)
    try:
        return results_db.read_current(engine, results_db.Tables.from_config(config))
    finally:
        engine.dispose()


def run_record(config, run_id):
    engine = results_db.make_engine(config.db_url)
    try:
        return results_db.get_run(engine, results_db.Tables.from_config(config), run_id)
    finally:
        engine.dispose()
