-- PostgreSQL only: a read-only role for downstream applications. It may read the reader views
-- (lists, fallback, similar items), outcomes and the safe view of the run table, nothing else; grant it to the apps' login roles
-- (GRANT {reader_role} TO app_user). Applied with the schema, idempotently.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{reader_role}') THEN
        CREATE ROLE {reader_role} NOLOGIN;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO {reader_role}', current_schema());
END
$$;
GRANT SELECT ON {current_view} TO {reader_role};
GRANT SELECT ON {runs_public} TO {reader_role};
GRANT SELECT ON {outcomes_table} TO {reader_role};
GRANT SELECT ON {fallback_view} TO {reader_role};
GRANT SELECT ON {similar_view} TO {reader_role};
GRANT SELECT ON {detailed_view} TO {reader_role};
-- earlier versions granted the whole run table (its source_uri column names hosts)
REVOKE ALL ON {runs_table} FROM {reader_role};
