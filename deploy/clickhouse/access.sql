-- ClickHouse access control for xborder, shared part (server mode only).
-- Rendered and applied by 'xborder clickhouse access --apply' as an administrator with
-- access management; placeholders ${...} are filled from the settings and the generated
-- password file. Every statement is idempotent. Never edit rendered output by hand.

-- Every query of an xborder user is logged (system.query_log; see config.d/).
CREATE SETTINGS PROFILE IF NOT EXISTS xborder_logged;
ALTER SETTINGS PROFILE xborder_logged SETTINGS log_queries = 1 CONST, log_query_threads = 0;

-- Analysts: read-only (readonly = 2: output settings only), no DDL, no introspection.
CREATE SETTINGS PROFILE IF NOT EXISTS xborder_readonly;
ALTER SETTINGS PROFILE xborder_readonly SETTINGS INHERIT xborder_logged, readonly = 2 CONST, allow_ddl = 0 CONST, allow_introspection_functions = 0 CONST, max_execution_time = 300, max_memory_usage = 4000000000;

-- The base reading role. SELECT on the project's database only: no CREATE TEMPORARY
-- TABLE and no source grants (FILE, URL, S3, REMOTE, MYSQL, POSTGRES, HDFS, JDBC, ODBC...),
-- so the file(), url(), s3(), remote() and executable() table functions are refused.
CREATE ROLE IF NOT EXISTS xborder_read SETTINGS PROFILE xborder_readonly;
ALTER ROLE xborder_read SETTINGS PROFILE xborder_readonly;
GRANT SELECT ON ${database}.* TO xborder_read;
-- What clients read on connecting (system.* needs a grant: config.d/xborder-access.xml).
GRANT SELECT ON system.settings TO xborder_read;
GRANT SELECT ON system.functions TO xborder_read;

-- Cross-agency auditors (read-only, every row).
CREATE ROLE IF NOT EXISTS xborder_auditor SETTINGS PROFILE xborder_readonly;
ALTER ROLE xborder_auditor SETTINGS PROFILE xborder_readonly;
GRANT xborder_read TO xborder_auditor;
GRANT SELECT ON system.query_log TO xborder_auditor;
GRANT SELECT ON system.session_log TO xborder_auditor;

-- The sink: writes the tables and runs the migrations; no access management, no sources.
CREATE ROLE IF NOT EXISTS xborder_writer SETTINGS PROFILE xborder_logged;
ALTER ROLE xborder_writer SETTINGS PROFILE xborder_logged;
GRANT SELECT, INSERT, ALTER TABLE, ALTER VIEW, CREATE TABLE, CREATE VIEW, DROP TABLE, DROP VIEW, OPTIMIZE, SHOW TABLES, SHOW COLUMNS ON ${database}.* TO xborder_writer;
GRANT CREATE DATABASE ON ${database}.* TO xborder_writer;
GRANT SELECT ON system.settings TO xborder_writer;
GRANT SELECT ON system.columns TO xborder_writer;
GRANT SELECT ON system.tables TO xborder_writer;

CREATE USER IF NOT EXISTS xborder_writer IDENTIFIED WITH sha256_hash BY '${writer_sha256}';
ALTER USER xborder_writer IDENTIFIED WITH sha256_hash BY '${writer_sha256}';
GRANT xborder_writer TO xborder_writer;
ALTER USER xborder_writer DEFAULT ROLE xborder_writer DEFAULT DATABASE ${database};

CREATE USER IF NOT EXISTS xborder_auditor IDENTIFIED WITH sha256_hash BY '${auditor_sha256}';
ALTER USER xborder_auditor IDENTIFIED WITH sha256_hash BY '${auditor_sha256}';
GRANT xborder_auditor TO xborder_auditor;
ALTER USER xborder_auditor DEFAULT ROLE xborder_auditor DEFAULT DATABASE ${database};

-- Every row for the sink and the auditors. Once a table has a row policy, a user that
-- none names reads no rows of it (with users_without_row_policies_can_read_rows = false,
-- config.d/xborder-access.xml) - so every table of the database is listed here and in
-- agency.sql (a test checks it).
CREATE ROW POLICY OR REPLACE xborder_all ON ${database}.incidents FOR SELECT USING 1 TO xborder_writer, xborder_auditor;
CREATE ROW POLICY OR REPLACE xborder_all ON ${database}.incident_closures FOR SELECT USING 1 TO xborder_writer, xborder_auditor;
CREATE ROW POLICY OR REPLACE xborder_all ON ${database}.correlations FOR SELECT USING 1 TO xborder_writer, xborder_auditor;
CREATE ROW POLICY OR REPLACE xborder_all ON ${database}.case_events FOR SELECT USING 1 TO xborder_writer, xborder_auditor;
CREATE ROW POLICY OR REPLACE xborder_all ON ${database}.case_members FOR SELECT USING 1 TO xborder_writer, xborder_auditor;
CREATE ROW POLICY OR REPLACE xborder_all ON ${database}.alerts FOR SELECT USING 1 TO xborder_writer, xborder_auditor;
CREATE ROW POLICY OR REPLACE xborder_all ON ${database}.verdicts FOR SELECT USING 1 TO xborder_writer, xborder_auditor;
CREATE ROW POLICY OR REPLACE xborder_all ON ${database}.case_conclusions FOR SELECT USING 1 TO xborder_writer, xborder_auditor;
CREATE ROW POLICY OR REPLACE xborder_all ON ${database}.case_reports FOR SELECT USING 1 TO xborder_writer, xborder_auditor;
CREATE ROW POLICY OR REPLACE xborder_all ON ${database}.incident_releases FOR SELECT USING 1 TO xborder_writer, xborder_auditor;
CREATE ROW POLICY OR REPLACE xborder_all ON ${database}.dead_letters FOR SELECT USING 1 TO xborder_writer, xborder_auditor;
CREATE ROW POLICY OR REPLACE xborder_all ON ${database}.incident_daily_counts FOR SELECT USING 1 TO xborder_writer, xborder_auditor;
CREATE ROW POLICY OR REPLACE xborder_all ON ${database}.incident_cells_daily FOR SELECT USING 1 TO xborder_writer, xborder_auditor;
CREATE ROW POLICY OR REPLACE xborder_all ON ${database}.schema_migrations FOR SELECT USING 1 TO xborder_writer, xborder_auditor, xborder_read;
