-- The panel's long operations (issue 16: verification, the DNS tester, certificate generation) as
-- rows rather than in a server's memory: the page that polls a job after the server restarted, or
-- whose request another process sharing this store answers, still gets its outcome, and a job
-- whose process died while it ran is reported interrupted instead of vanishing.
CREATE TABLE panel_jobs (
    id          TEXT PRIMARY KEY,          -- random; handed to the page of the account that started it
    account     TEXT NOT NULL,             -- bare JID; the only account that may read the job
    domain      TEXT NOT NULL,
    kind        TEXT NOT NULL,             -- 'verify', 'dns-test', 'certificate'
    state       TEXT NOT NULL CHECK (state IN ('running', 'done', 'failed', 'interrupted')),
    runner      TEXT NOT NULL,             -- the process running it: 'pid-namespace/pid/start-time'
    outcome     TEXT,                      -- JSON: the result (done) or the error (failed, interrupted)
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,                   -- NULL while running
    CHECK ((state = 'running') = (finished_at IS NULL))
) STRICT;

-- An account's jobs (its running count, its oldest finished ones pruned).
CREATE INDEX panel_jobs_account ON panel_jobs (account, state);
-- The running ones, which the housekeeping pass looks at (few at any time).
CREATE INDEX panel_jobs_running ON panel_jobs (started_at) WHERE state = 'running';
-- Finished results are purged by age.
CREATE INDEX panel_jobs_finished_at ON panel_jobs (finished_at) WHERE finished_at IS NOT NULL;
