"""The Recsys console: pages of the nightly pipeline served by Airflow's API server (see recsys_console_plugin.py)."""
