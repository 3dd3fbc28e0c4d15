-- What the operators' views read (bot/store/watch.py: /seedance-admin status and /metrics) without
-- scanning whole tables: task times of the last hour, credits charged today, each gateway's
-- failed jobs (its last error, failures by kind).
CREATE INDEX gateway_durations_at ON gateway_durations (at);
CREATE INDEX ledger_commits_at ON ledger (at) WHERE kind = 'commit';
CREATE INDEX jobs_failed ON jobs (provider, finished_at) WHERE state = 'failed';
