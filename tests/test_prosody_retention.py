"""Retention on the real Prosody (mod_http_file_share uploads): the shared scenarios of
retention_scenarios.py, on the upload test's server setup."""

import test_prosody_uploads as uploads
from retention_scenarios import RetentionScenarios
from upload_scenarios import no_limits  # noqa: F401 (autouse: limits and the clock reset per test)

prosody = uploads.prosody
server = uploads.server


class TestProsodyRetention(RetentionScenarios):
    gone_status = 410


def test_prosodyctl_retention_commands(prosody, server):
    host = uploads.HOST

    def ctl(*args):
        return prosody.ctl("mod_xmpp_hosting", "retention", *args)

    def last(r):  # prosodyctl's own log line may come first
        return r.stdout.strip().splitlines()[-1]

    r = ctl("set", host, "uploads", "30 days")
    assert r.returncode == 0 and last(r) == (
        f"{host}: archive never, muc never, uploads 30d, backups never (declared); takes effect at the next sweep"
    ), r.stdout + r.stderr
    r = ctl("set", host, "archive", "0")
    assert r.returncode == 1 and "delete everything at once" in r.stderr, r.stderr
    ctl("set", host, "archive", "1w")
    r = ctl("set", host, "archive", "1y", "--user", "alice")
    assert r.returncode == 1 and "at most" in r.stderr, r.stderr
    r = ctl("set", host, "archive", "2d", "--user", "alice")
    assert last(r) == f"alice@{host}: archive kept for 2d", r.stdout + r.stderr
    assert last(ctl("show", host)).startswith(f"{host}: archive 1w, muc never, uploads 30d")
    r = ctl("sweep", host, "--dry-run")
    assert r.returncode == 0 and f"{host} uploads before" in r.stdout and "would delete 0" in r.stdout, r.stdout + r.stderr
    r = ctl("sweep", host, "--kind", "archive")
    assert r.returncode == 1 and "cannot sweep yet" in r.stderr, r.stderr
    r = ctl("log", host)
    assert r.returncode == 0 and "would delete 0" in r.stdout, r.stdout + r.stderr
    for what in ("archive", "uploads"):
        ctl("set", host, what, "never")
    ctl("set", host, "archive", "default", "--user", "alice")
