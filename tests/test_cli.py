"""The admin CLI against a real store file: round trips, JSON output, IDNA, and one-line errors."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from harness.common import CLI, run_cli


@pytest.fixture
def db(tmp_path):
    return tmp_path / "store.sqlite"


def test_domain_round_trip(db):
    assert run_cli(db, "domain", "add", "Bücher.example").stdout.strip() == "added xn--bcher-kva.example (bücher.example)"
    run_cli(db, "domain", "add", "example.org")
    names = [d["name"] for d in json.loads(run_cli(db, "--json", "domain", "list").stdout)]
    assert names == ["example.org", "xn--bcher-kva.example"]
    shown = json.loads(run_cli(db, "--json", "domain", "show", "XN--BCHER-KVA.example.").stdout)
    assert shown["name"] == "xn--bcher-kva.example"
    assert shown["settings"]["registration"]["policy"] == "invite"
    run_cli(db, "domain", "remove", "bücher.example")
    assert [d["name"] for d in json.loads(run_cli(db, "domain", "list", "--json").stdout)] == ["example.org"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["domain", "add", "127.0.0.1"], "invalid domain name: \"127.0.0.1\" is an IP address"),
        (["domain", "add", "a..b"], "invalid domain name: the name has an empty label"),
        (["domain", "add", "x" * 300 + ".example"], "invalid domain name"),
        (["domain", "show", "missing.example"], "domain not found: missing.example"),
        (["domain", "remove", "missing.example"], "domain not found: missing.example"),
        (["invite", "create", "missing.example"], "domain not found: missing.example"),
        (["invite", "create", "example.org", "--uses", "0"], "invalid argument: uses must be between"),
        (["invite", "create", "example.org", "--expires-in", "soon"], "an invite expires in a whole number of seconds"),
        # Issue 10.3: a negative or absurd lifetime, and an id no invite has, in the admin's words.
        (["invite", "create", "example.org", "--expires-in", "-5"], "from 1 to 315360000 (ten years), or \"never\", not \"-5\""),
        (["invite", "create", "example.org", "--expires-in", "99999999999999"], "(ten years)"),
        (["invite", "revoke", "example.org", "1.5"], "an invite id is a whole number from 1 up, not \"1.5\""),
        (["invite", "revoke", "example.org", "99999999999999999999"], "an invite id is a whole number"),
    ],
)
def test_errors_are_one_line_and_exit_1(db, args, message):
    run_cli(db, "domain", "add", "example.org")
    r = run_cli(db, *args, check=False)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xmpp-hosting: ")
    assert message in lines[0]
    assert r.stdout == ""
    # Nothing was lost: the domain added first is still there.
    assert [d["name"] for d in json.loads(run_cli(db, "--json", "domain", "list").stdout)] == ["example.org"]


def test_duplicate_domain_is_refused(db):
    run_cli(db, "domain", "add", "xn--bcher-kva.example")
    r = run_cli(db, "domain", "add", "Bücher.example", check=False)
    assert (r.returncode, r.stderr.strip()) == (1, "xmpp-hosting: domain already exists: xn--bcher-kva.example")


def test_unwritable_store_and_missing_db_flag(tmp_path):
    r = run_cli(tmp_path / "no" / "such" / "dir.sqlite", "domain", "list", check=False)
    assert r.returncode == 1 and "cannot open" in r.stderr
    env = {k: v for k, v in os.environ.items() if k != "XMPP_HOSTING_DB"}
    r = subprocess.run([str(CLI), "domain", "list"], capture_output=True, text=True, env=env)
    assert r.returncode == 1 and "pass --db PATH or set XMPP_HOSTING_DB" in r.stderr
    r = subprocess.run([str(CLI), "domain", "frobnicate"], capture_output=True, text=True)
    assert r.returncode == 2


def test_db_from_environment(db):
    env = dict(os.environ, XMPP_HOSTING_DB=str(db))
    subprocess.run([str(CLI), "domain", "add", "env.example"], check=True, env=env, capture_output=True)
    assert [d["name"] for d in json.loads(run_cli(db, "--json", "domain", "list").stdout)] == ["env.example"]


def test_invite_create_list_revoke_audit(db):
    run_cli(db, "domain", "add", "example.org")
    created = json.loads(run_cli(db, "--json", "invite", "create", "example.org", "--uses", "3", "--note", "family").stdout)
    token = created["token"]
    assert len(token) >= 22
    assert created["uri"] == f"xmpp:example.org?register;preauth={token}"
    listed = json.loads(run_cli(db, "--json", "invite", "list", "example.org").stdout)
    assert [(i["id"], i["uses_left"], i["note"]) for i in listed] == [(created["invite"]["id"], 3, "family")]
    # The token is shown once and never stored or listed.
    assert token not in run_cli(db, "--json", "invite", "list", "example.org").stdout
    for f in db.parent.glob(db.name + "*"):  # the database and its WAL
        assert token.encode() not in f.read_bytes()
    roster = json.loads(
        run_cli(db, "--json", "invite", "create", "example.org", "--kind", "roster", "--inviter", "alice@example.org").stdout
    )
    assert roster["uri"] == f"xmpp:alice@example.org?roster;preauth={roster['token']};ibr=y"
    revoked = json.loads(run_cli(db, "--json", "invite", "revoke", "example.org", str(created["invite"]["id"])).stdout)
    assert revoked["revoked_at"] is not None
    assert json.loads(run_cli(db, "--json", "invite", "purge").stdout)["invites_removed"] == 1
    actions = [e["action"] for e in json.loads(run_cli(db, "--json", "invite", "audit", "example.org").stdout)]
    assert actions == ["purged", "revoked", "created", "created"]


def test_quota_set_show_and_user_exceptions(db):
    run_cli(db, "domain", "add", "example.org")
    run_cli(db, "quota", "set", "example.org", "user_daily", "1000000")
    run_cli(db, "quota", "set", "example.org", "max_file_size", "5000000")
    run_cli(db, "quota", "set", "example.org", "--user", "Alice", "daily", "5")
    shown = json.loads(run_cli(db, "--json", "quota", "show", "example.org", "--user", "alice").stdout)
    # The limits that apply, merged by the core: alice's exception over the domain's per-user values.
    assert (shown["domain"], shown["user"]) == ("example.org", "alice")
    assert shown["limits"]["daily"] == 5 and shown["limits"]["max_file_size"] == 5000000
    assert shown["exceptions"]["daily"] == 5
    assert shown["usage"] == {"stored": 0, "reserved": 0, "daily": 0, "weekly": 0, "monthly": 0}
    for args, message in [
        (["quota", "set", "example.org", "bogus", "1"], 'there is no setting "bogus"'),
        (["quota", "set", "example.org", "user_daily", "lots"], "cannot set"),
        (["quota", "set", "example.org", "--user", "alice", "hourly", "1"], "no per-user upload limit"),
        (["quota", "set", "example.org", "--user", "alice", "daily", "1e9"], "not a number of bytes"),
        (["quota", "show", "missing.example"], "domain not found"),
    ]:
        r = run_cli(db, *args, check=False)
        assert r.returncode == 1 and message in r.stderr, (args, r.stderr)
    run_cli(db, "quota", "clear", "example.org", "alice")
    cleared = json.loads(run_cli(db, "--json", "quota", "show", "example.org", "--user", "alice").stdout)
    assert "exceptions" not in cleared and cleared["limits"]["daily"] == 1000000


def test_quota_show_says_which_limits_apply_to_each_user(db):
    run_cli(db, "domain", "add", "example.org")
    run_cli(db, "quota", "set", "example.org", "user_daily", "50000")
    shown = run_cli(db, "quota", "show", "example.org").stdout
    # The domain as a whole has no daily limit; each of its users has one.
    assert "Uploaded in the last 24 hours: 0 bytes (no limit)\n" in shown, shown
    assert "Each user, unless given an exception:\n" in shown and "  Uploaded in 24 hours: 50 kB\n" in shown, shown
    # Every domain has a largest file unless an admin removes it.
    assert shown.startswith("example.org\nLargest file: 104.9 MB\n"), shown
    domain = json.loads(run_cli(db, "--json", "quota", "show", "example.org").stdout)
    assert domain["limits"]["daily"] is None and domain["user_defaults"]["daily"] == 50000
    alice = run_cli(db, "quota", "show", "example.org", "--user", "alice").stdout
    assert "Uploaded in the last 24 hours: 0 bytes of 50 kB\n" in alice, alice
    assert alice.endswith("No exceptions: the domain's limits apply\n"), alice


@pytest.mark.parametrize("args", [["quota", "show", "example.org"], ["--json", "domain", "list"], ["invite", "list", "example.org"]])
def test_a_closed_stdout_ends_quietly_with_success(db, args):
    """`xmpp-hosting quota show D | head -1`: the reader is gone before the output is written."""
    run_cli(db, "domain", "add", "example.org")
    run_cli(db, "invite", "create", "example.org")
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        r = subprocess.run([str(CLI), "--db", str(db), *args], stdout=write_end, stderr=subprocess.PIPE, text=True,
                           timeout=60)
    finally:
        os.close(write_end)
    assert (r.returncode, r.stderr) == (0, ""), r.stderr


def test_human_output_is_a_table_with_unicode_names(db):
    run_cli(db, "domain", "add", "Bücher.example")
    run_cli(db, "domain", "add", "example.org")
    lines = run_cli(db, "domain", "list").stdout.splitlines()
    assert lines[0].split() == ["DOMAIN", "REGISTRATION", "ADDED"]
    assert [line.split("  ")[0] for line in lines[1:]] == ["example.org", "xn--bcher-kva.example (bücher.example)"]
    column = lines[0].index("REGISTRATION")
    assert all(line[column:].startswith("invite ") for line in lines[1:]), lines
    shown = run_cli(db, "domain", "show", "xn--bcher-kva.example").stdout
    assert "domain:   xn--bcher-kva.example (bücher.example)" in shown
    removed = run_cli(db, "domain", "remove", "BÜCHER.example").stdout
    assert removed == "removed xn--bcher-kva.example (bücher.example)\n"


def test_json_add_show_remove_are_objects(db):
    added = json.loads(run_cli(db, "--json", "domain", "add", "Bücher.example").stdout)
    assert added["name"] == "xn--bcher-kva.example" and added["unicode_name"] == "bücher.example"
    assert {"settings", "created_at", "updated_at"} <= set(added)
    assert json.loads(run_cli(db, "--json", "domain", "show", "bücher.example").stdout) == added
    assert json.loads(run_cli(db, "--json", "domain", "list").stdout) == [added]
    # The flag is global: it may come after the subcommand too.
    removed = json.loads(run_cli(db, "domain", "remove", "Bücher.example", "--json").stdout)
    assert removed == {"removed": "xn--bcher-kva.example"}
    assert json.loads(run_cli(db, "--json", "domain", "list").stdout) == []


@pytest.mark.parametrize("where", ["parent is a file", "a directory"])
def test_unusable_store_path_is_one_line(tmp_path, where):
    (tmp_path / "file").write_text("not a directory")
    path = tmp_path / "file" / "store.sqlite" if where == "parent is a file" else tmp_path
    r = run_cli(path, "--json", "domain", "add", "example.org", check=False)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"xmpp-hosting: cannot open {path}: "), r.stderr


def test_account_removed_revokes_what_acts_for_it(db):
    run_cli(db, "domain", "add", "example.org")
    run_cli(db, "invite", "create", "example.org", "--kind", "reset", "--username", "alice")
    run_cli(db, "invite", "create", "example.org", "--kind", "roster", "--inviter", "alice@example.org")
    run_cli(db, "quota", "set", "example.org", "--user", "alice", "daily", "5")
    assert run_cli(db, "account", "removed", "example.org", "Alice").stdout == \
        "Alice@example.org: 2 invite(s) revoked, upload exceptions dropped\n"
    again = json.loads(run_cli(db, "--json", "account", "removed", "example.org", "alice").stdout)
    assert again == {"invites_revoked": 0, "upload_limits_cleared": False}
    r = run_cli(db, "account", "removed", "example.org", "", check=False)
    assert r.returncode == 1 and "is not a username" in r.stderr


# Issue 10.3: settings that cannot work are refused when set, with the reason.
@pytest.mark.parametrize("args, reason", [
    (["provider", "set", "dns.nameservers", '["127.0.0.1:99999"]'], "is not an address:port"),
    (["provider", "set", "dns.nameservers", '["not-an-address"]'], "is not an address:port"),
    (["provider", "set", "dns.provider_zone", "not a zone"], "is not a DNS zone"),
    (["provider", "set", "dns.dnssec_trust_anchor", "/nonexistent"], "cannot be read"),
    (["domain", "set", "example.org", "registration.landing_url", "javascript:alert(1)"], "must start with https://"),
    (["domain", "set", "example.org", "registration.landing_url", "http://example.org/{token}"], "must be https"),
])
def test_settings_that_cannot_work_are_refused_when_set(db, args, reason):
    run_cli(db, "domain", "add", "example.org")
    before = run_cli(db, "--json", "provider", "show").stdout, run_cli(db, "--json", "domain", "show", "example.org").stdout
    r = run_cli(db, *args, check=False)
    assert r.returncode == 1 and r.stdout == "", r
    assert r.stderr.startswith("xmpp-hosting: invalid argument: cannot set ") and reason in r.stderr, r.stderr
    assert args[-2] in r.stderr, "names the setting"
    after = run_cli(db, "--json", "provider", "show").stdout, run_cli(db, "--json", "domain", "show", "example.org").stdout
    assert after == before


def test_account_removed_on_a_domain_the_store_does_not_host_is_an_error(db):
    r = run_cli(db, "account", "removed", "nothere.example", "alice", check=False)
    assert r.returncode == 1 and r.stderr == "xmpp-hosting: domain not found: nothere.example\n", r


def test_dns_check_with_nothing_expected_says_what_is_missing(db):
    r = run_cli(db, "dns", "check", "customer.example", check=False)
    assert r.returncode == 1 and r.stdout == "", r
    assert "nothing to check" in r.stderr and "dns.xmpp_client" in r.stderr, r.stderr


def test_the_store_is_created_readable_by_its_owner_only(db):
    run_cli(db, "domain", "add", "example.org")
    assert os.stat(db).st_mode & 0o777 == 0o600
    assert os.stat(f"{db}-wal").st_mode & 0o777 == 0o600 if os.path.exists(f"{db}-wal") else True


def test_read_only_commands_work_on_a_store_the_admin_may_only_read(tmp_path):
    """An admin who may read the store but not write it (nor create files beside it) can still
    list and show; writing fails with one line. Run as `nobody` (root ignores permissions)."""
    import shutil
    import tempfile
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run the CLI as another user")
    shared = Path(tempfile.mkdtemp(prefix="xh-read-only-"))  # traversable by nobody, writable only by root
    try:
        shared.chmod(0o755)
        db = shared / "store.sqlite"
        run_cli(db, "domain", "add", "example.org")
        run_cli(db, "domain", "claim", "example.org", "--account", "alice")
        db.chmod(0o644)
        assert not Path(f"{db}-wal").exists()

        def as_nobody(*args):
            return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", str(CLI),
                                   "--db", str(db), *args], capture_output=True, text=True, timeout=60)

        for args in (["domain", "list"], ["domain", "show", "example.org"], ["domain", "claims"],
                     ["domain", "history", "example.org"], ["provider", "show"], ["invite", "list", "example.org"],
                     ["quota", "show", "example.org"]):
            r = as_nobody(*args)
            assert r.returncode == 0, (args, r.stderr)
        assert "example.org" in as_nobody("domain", "list").stdout
        r = as_nobody("domain", "add", "other.example")
        assert r.returncode == 1 and r.stderr.count("\n") == 1 and "readonly" in r.stderr, r.stderr
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_read_only_commands_work_on_a_full_disk(tmp_path):
    """A store on a disk with no space left: listing and showing still work (the writable open
    needed room for SQLite's -shm file), writing fails with one line, and once there is room
    again everything works."""
    import shutil
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root and a tmpfs mount to fill a disk")
    try:
        db = disk / "store.sqlite"
        run_cli(db, "domain", "add", "example.org")
        filler = disk / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)  # fill the disk to the last block
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        assert shutil.disk_usage(disk).free < 4096
        for args in (["domain", "list"], ["domain", "show", "example.org"], ["provider", "show"]):
            r = run_cli(db, *args, check=False)
            assert r.returncode == 0, (args, r.stderr)
        assert "example.org" in run_cli(db, "domain", "list").stdout
        r = run_cli(db, "domain", "add", "other.example", check=False)
        assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
        filler.unlink()
        run_cli(db, "domain", "add", "other.example")
        assert "other.example" in run_cli(db, "domain", "list").stdout
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
