-- docker-compose: run once by the postgres image when its data folder is created, as the
-- superuser, by psql (hence \getenv: the passwords come from the container's environment,
-- never from this file). One role per job:
--   airflow        owns Airflow's metadata database `airflow`
--   recsys         owns the results database `recsys` (the pipeline's tables and views)
--   recsys_reader  NOLOGIN; the pipeline grants it SELECT on the reader views when it applies
--                  the schema (reader_role.sql). Grant it to an application's login role:
--                  CREATE ROLE my_app LOGIN PASSWORD '...'; GRANT recsys_reader TO my_app;
\set ON_ERROR_STOP on
\getenv airflow_password AIRFLOW_DB_PASSWORD
\getenv recsys_password RECSYS_DB_PASSWORD

CREATE ROLE airflow LOGIN PASSWORD :'airflow_password';
CREATE ROLE recsys LOGIN PASSWORD :'recsys_password';
CREATE ROLE recsys_reader NOLOGIN;

CREATE DATABASE airflow OWNER airflow;
CREATE DATABASE recsys OWNER recsys;

-- nobody connects to a database they have no business in
REVOKE ALL ON DATABASE airflow FROM PUBLIC;
REVOKE ALL ON DATABASE recsys FROM PUBLIC;
GRANT CONNECT ON DATABASE recsys TO recsys_reader;
