"""`xmpp-hosting housekeeping`: the core's housekeeping pass for deployments without a server
timer (cron), the same pass the servers' one timer runs."""

import json
import sqlite3

from harness.common import run_cli


def test_run_does_every_step_and_says_what_it_did(tmp_path):
    db = tmp_path / "store.sqlite"
    run_cli(db, "domain", "add", "example.org")
    revoked = json.loads(run_cli(db, "--json", "invite", "create", "example.org").stdout)["invite"]["id"]
    kept = json.loads(run_cli(db, "--json", "invite", "create", "example.org").stdout)["invite"]["id"]
    run_cli(db, "invite", "revoke", "example.org", str(revoked))
    (tmp_path / "uploads").mkdir()
    r = run_cli(db, "housekeeping", "run", "--upload-root", str(tmp_path / "uploads"))
    assert r.stdout.startswith("Ran: checkpoint, domain_recheck, invite_purge, upload_upkeep, retention, certificates, panel_jobs\n"), r.stdout
    assert "Purged 1 unusable invite(s)" in r.stdout, r.stdout
    listed = {i["id"] for i in json.loads(run_cli(db, "--json", "invite", "list", "example.org").stdout)}
    assert revoked not in listed and kept in listed
    report = json.loads(run_cli(db, "--json", "housekeeping", "run").stdout)
    assert report["ran"] == ["checkpoint", "domain_recheck", "invite_purge", "upload_upkeep", "retention", "certificates",
                             "panel_jobs"]
    assert report["failures"] == [] and report["invites"]["invites_removed"] == 0
    assert report["uploads"]["files_forgotten"] == 0
    assert 1 <= report["next_in"] <= 5


def test_a_failing_step_is_a_warning_and_exit_3_and_the_others_still_run(tmp_path):
    db = tmp_path / "store.sqlite"
    run_cli(db, "domain", "add", "example.org")
    # Settings the DNS worker cannot use, written past the CLI's own checks (an older version or
    # a hand edit could leave them so).
    with sqlite3.connect(db) as c:
        c.execute("INSERT OR REPLACE INTO provider_settings (id, settings, updated_at) VALUES (1, ?, 0)",
                  ('{"dns":{"dnssec":true,"dnssec_trust_anchor":"/nonexistent/xh-anchor"}}',))
    r = run_cli(db, "housekeeping", "run", check=False)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "warning: Domain re-verification failed: " in r.stdout and "xh-anchor" in r.stdout, r.stdout
    assert r.stdout.startswith("Ran: checkpoint, domain_recheck, invite_purge, upload_upkeep, retention, certificates, panel_jobs\n")


def test_schedule_prints_the_cores_intervals(tmp_path):
    r = run_cli(tmp_path / "store.sqlite", "housekeeping", "schedule")
    assert "checkpoint      every 5 s" in r.stdout and "invite_purge    every 3600 s" in r.stdout, r.stdout
    assert json.loads(run_cli(tmp_path / "store.sqlite", "--json", "housekeeping", "schedule").stdout) == {
        "checkpoint": 5, "domain_recheck": 600, "invite_purge": 3600, "upload_upkeep": 300, "retention": 300, "certificates": 60,
        "panel_jobs": 3600, "recheck_batch": 1000}
