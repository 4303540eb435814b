"""`xmpp-hosting retention`: a domain's retention policy, sweeps of expired uploads (deleted
inside the upload directory only, quota freed at once), dry runs and the audit log."""

import json
import os
import pty
import re
import sqlite3
import subprocess
import time

from harness.common import CLI, run_cli


def record_upload(db, path, size, stored_at, domain="example.org", user="alice"):
    """Counts a file in the ledger as the servers' modules do (a granted, committed slot), then
    dates it back: the CLI has no clock to move, the ledger's time is what a sweep reads."""
    with sqlite3.connect(db) as c:
        c.execute("INSERT INTO upload_files (file_id, domain, username, size, stored_at) VALUES (?, ?, ?, ?, ?)",
                  (str(path), domain, user, size, stored_at))
        for scope, d, u in (("global", "", ""), ("domain", domain, ""), ("user", domain, user)):
            c.execute("INSERT INTO upload_usage (scope, domain, username, stored_bytes) VALUES (?, ?, ?, ?) "
                      "ON CONFLICT DO UPDATE SET stored_bytes = stored_bytes + excluded.stored_bytes",
                      (scope, d, u, size))


def stored(db, user="alice"):
    return json.loads(run_cli(db, "--json", "quota", "show", "example.org", "--user", user).stdout)["usage"]["stored"]


def test_show_and_set_take_periods_as_admins_write_them_and_refuse_nonsense(tmp_path):
    db = tmp_path / "store.sqlite"
    run_cli(db, "domain", "add", "example.org")
    assert json.loads(run_cli(db, "--json", "retention", "show", "example.org").stdout) == {
        "archive": "never", "muc": "never", "uploads": "never", "backups": "never"}
    r = run_cli(db, "retention", "set", "example.org", "archive", "1 week")
    assert r.stdout == "example.org: archive kept for 1w; takes effect at the next sweep\n", r.stdout
    run_cli(db, "retention", "set", "example.org", "uploads", "2592000")
    shown = run_cli(db, "retention", "show", "example.org").stdout
    assert "archive  1w" in shown and "uploads  30d" in shown and "backups  never" in shown, shown
    for what, value, says in [
        ("archive", "-1d", "negative"),
        ("archive", "0", "delete everything at once"),
        ("muc", "3 fortnights", "unknown unit"),
        ("uploads", "1000y", "longer than 100 years"),
        ("mam", "1w", "no retention setting"),
    ]:
        r = run_cli(db, "retention", "set", "example.org", what, value, check=False)
        assert r.returncode == 1 and says in r.stderr, (what, value, r.stderr)
    assert json.loads(run_cli(db, "--json", "retention", "show", "example.org").stdout)["archive"] == "1w"
    # A user's own archive: shorter only.
    r = run_cli(db, "retention", "set", "example.org", "archive", "1y", "--user", "alice", check=False)
    assert r.returncode == 1 and "keeps archives for 1w at most" in r.stderr, r.stderr
    assert run_cli(db, "retention", "set", "example.org", "archive", "2d", "--user", "alice").stdout == \
        "alice@example.org: archive kept for 2d\n"
    assert "kept for 1w" in run_cli(db, "retention", "show", "example.org", "--user", "bob").stdout


def test_sweep_deletes_expired_uploads_inside_the_directory_only_and_frees_quota(tmp_path):
    db = tmp_path / "store.sqlite"
    root = tmp_path / "uploads"
    (root / "slot").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_bytes(b"keep me")
    os.symlink(outside, root / "link")
    run_cli(db, "domain", "add", "example.org")
    now = int(time.time())
    old = root / "slot" / "old.jpg"
    old.write_bytes(b"x" * 100)
    new = root / "new.jpg"
    new.write_bytes(b"y" * 10)
    record_upload(db, old, 100, now - 3 * 86400)
    record_upload(db, new, 10, now - 3600)
    record_upload(db, root / "link" / "victim", 7, now - 3 * 86400)
    r = run_cli(db, "retention", "sweep", "example.org", check=False)
    assert r.returncode == 1 and "keeps everything for ever" in r.stderr, r.stderr
    run_cli(db, "retention", "set", "example.org", "uploads", "1d")
    dry = json.loads(run_cli(db, "--json", "retention", "sweep", "example.org", "--dry-run").stdout)
    assert [(s["kind"], s["deleted"], s["bytes"], s["dry_run"]) for s in dry["sweeps"]] == [("uploads", 2, 107, True)]
    assert old.exists()
    r = run_cli(db, "retention", "sweep", "example.org", "--kind", "uploads", "--upload-root", str(root), check=False)
    assert r.returncode == 3, r.stdout + r.stderr  # the file behind the link was not deleted
    assert "deleted 1 file(s), 100 bytes" in r.stdout and "1 failed" in r.stdout, r.stdout
    assert "not inside a watched upload directory" in r.stdout, r.stdout
    assert not old.exists() and new.exists() and (outside / "victim").read_bytes() == b"keep me"
    assert stored(db) == 17, "the old file's 100 bytes are free at once; the refused one still counts"
    log = json.loads(run_cli(db, "--json", "retention", "log", "example.org").stdout)
    assert [(e["dry_run"], e["state"], e["deleted"], e["failed"]) for e in log] == [
        (False, "done", 1, 1), (True, "done", 2, 0)]
    assert log[0]["cutoff"] <= int(time.time()) - 86400 and log[0]["longest_step_us"] <= log[0]["duration_us"]
    text = run_cli(db, "retention", "log").stdout
    assert text.startswith("ID") and "example.org" in text and "not deleted" in text, text
    r = run_cli(db, "retention", "sweep", "example.org", "--kind", "archive", check=False)
    # Archives live in a server's store: until a server module has said where, nothing is swept.
    assert r.returncode == 1 and "no server has registered where the one-to-one archives" in r.stderr, r.stderr
    assert "mod_xmpp_hosting_retention" in r.stderr, r.stderr


def test_a_sweep_in_a_terminal_shows_its_progress_and_a_pipe_gets_none(tmp_path):
    db = tmp_path / "store.sqlite"
    root = tmp_path / "uploads"
    root.mkdir()
    run_cli(db, "domain", "add", "example.org")
    run_cli(db, "retention", "set", "example.org", "uploads", "1d")
    old = int(time.time()) - 3 * 86400
    for i in range(3):
        (root / f"f{i}").write_bytes(b"z")
        record_upload(db, root / f"f{i}", 1, old)
    # A terminal (a pseudo-terminal here): the progress line on stderr, with what was deleted.
    leader, follower = pty.openpty()
    proc = subprocess.Popen([str(CLI), "--db", str(db), "retention", "sweep", "example.org", "--upload-root", str(root)],
                            stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        seen += chunk
    assert proc.wait(timeout=60) == 0
    os.close(leader)
    text = seen.decode(errors="replace")
    assert re.search(r"Sweeping uploaded files of example\.org: 3 deleted, \d+ steps, longest \d+ ms", text), text
    # A pipe (cron, scripts): the report only.
    for i in range(3):
        (root / f"g{i}").write_bytes(b"z")
        record_upload(db, root / f"g{i}", 1, old)
    r = run_cli(db, "retention", "sweep", "example.org", "--upload-root", str(root))
    assert "Sweeping" not in r.stderr and "deleted 3 file(s)" in r.stdout, (r.stdout, r.stderr)
