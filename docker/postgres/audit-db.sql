-- The governance audit database (issue #5), run by init-databases.sh on the first start and by
-- tests/security/test_audit_db_privileges.py against a real PostgreSQL, with the psql variables
--   database, owner, owner_password, writer, writer_password.
-- The owner (a migration role) owns the database and creates the table, its indexes and its
-- append-only triggers (airflow-init runs include.governance.audit's ensure_schema as it). The
-- writer is what Airflow's `audit_db` connection logs in as: CONNECT, and SELECT and INSERT on
-- what the owner creates, nothing else: no UPDATE, DELETE, TRUNCATE, DDL, or DROP.
CREATE ROLE :"owner" LOGIN PASSWORD :'owner_password';
CREATE ROLE :"writer" LOGIN PASSWORD :'writer_password';
CREATE DATABASE :"database" OWNER :"owner";
REVOKE ALL ON DATABASE :"database" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"database" TO :"writer";

\connect :"database"
-- PostgreSQL 15 gives the public schema to the database owner and USAGE to everyone; nobody
-- but the owner may create in it, and only the writer may look up names in it.
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO :"writer";
-- Granted on every table and sequence the owner creates later (the id column's sequence
-- needs USAGE for INSERT).
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT SELECT, INSERT ON TABLES TO :"writer";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner" IN SCHEMA public GRANT USAGE ON SEQUENCES TO :"writer";
