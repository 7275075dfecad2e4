-- ClickHouse access control for xborder, one agency (rendered once per agency of the
-- agencies config: ${agency} is its id, ${role} its role, ${user} its analysts' user).
-- An agency reads its own rows plus the cross-border records it is part of; every
-- condition below is a row policy on a table, so the views (case_hits,
-- released_incidents, audit_log, the _current views...) show the same subset.

CREATE ROLE IF NOT EXISTS ${role} SETTINGS PROFILE xborder_readonly;
ALTER ROLE ${role} SETTINGS PROFILE xborder_readonly;
GRANT xborder_read TO ${role};

CREATE USER IF NOT EXISTS ${user} IDENTIFIED WITH sha256_hash BY '${user_sha256}';
ALTER USER ${user} IDENTIFIED WITH sha256_hash BY '${user_sha256}';
GRANT ${role} TO ${user};
ALTER USER ${user} DEFAULT ROLE ${role} DEFAULT DATABASE ${database};

-- Own incidents, and the events of other agencies' incidents released to it.
CREATE ROW POLICY OR REPLACE ${policy} ON ${database}.incidents FOR SELECT USING agency = '${agency}' OR event_id IN (SELECT incident_event_id FROM ${database}.incident_releases WHERE has(audience, '${agency}')) TO ${role};
-- Own closures.
CREATE ROW POLICY OR REPLACE ${policy} ON ${database}.incident_closures FOR SELECT USING agency = '${agency}' TO ${role};
-- Links one of whose incidents is its own.
CREATE ROW POLICY OR REPLACE ${policy} ON ${database}.correlations FOR SELECT USING a_agency = '${agency}' OR b_agency = '${agency}' TO ${role};
-- Cases it is part of.
CREATE ROW POLICY OR REPLACE ${policy} ON ${database}.case_events FOR SELECT USING has(agencies, '${agency}') OR has(incident_agencies, '${agency}') TO ${role};
-- Own memberships, and the other agencies' incidents in its cases (the hit, no details).
CREATE ROW POLICY OR REPLACE ${policy} ON ${database}.case_members FOR SELECT USING agency = '${agency}' OR case_id IN (SELECT case_id FROM ${database}.case_events WHERE has(agencies, '${agency}')) TO ${role};
-- Alerts sent to it.
CREATE ROW POLICY OR REPLACE ${policy} ON ${database}.alerts FOR SELECT USING has(target_agencies, '${agency}') TO ${role};
-- Verification of its cases: its own and the other agencies' verdicts and reports.
CREATE ROW POLICY OR REPLACE ${policy} ON ${database}.verdicts FOR SELECT USING agency = '${agency}' OR case_id IN (SELECT case_id FROM ${database}.case_events WHERE has(agencies, '${agency}')) TO ${role};
CREATE ROW POLICY OR REPLACE ${policy} ON ${database}.case_conclusions FOR SELECT USING has(agencies, '${agency}') TO ${role};
CREATE ROW POLICY OR REPLACE ${policy} ON ${database}.case_reports FOR SELECT USING agency = '${agency}' OR case_id IN (SELECT case_id FROM ${database}.case_events WHERE has(agencies, '${agency}')) TO ${role};
-- Its releases, and the releases whose audience it is in.
CREATE ROW POLICY OR REPLACE ${policy} ON ${database}.incident_releases FOR SELECT USING agency = '${agency}' OR has(audience, '${agency}') TO ${role};
-- Its own rejected messages; its own counts.
CREATE ROW POLICY OR REPLACE ${policy} ON ${database}.dead_letters FOR SELECT USING agency = '${agency}' TO ${role};
CREATE ROW POLICY OR REPLACE ${policy} ON ${database}.incident_daily_counts FOR SELECT USING agency = '${agency}' TO ${role};
CREATE ROW POLICY OR REPLACE ${policy} ON ${database}.incident_cells_daily FOR SELECT USING agency = '${agency}' TO ${role};
