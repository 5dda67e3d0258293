-- docker-compose: the results database beside Airflow's metadata database.
CREATE DATABASE recsys OWNER airflow;
