"""`xmpp-hosting domain settings` (issue 14): a domain's settings shown, and one changed in the
admin's words (`shared_roster on|off`), against a real store file."""

import json

from harness.common import run_cli


def test_domain_settings_shows_and_switches_the_shared_roster(tmp_path):
    db = tmp_path / "store.sqlite"
    run_cli(db, "domain", "add", "d.example")
    assert json.loads(run_cli(db, "domain", "settings", "d.example").stdout)["shared_roster"] is False
    out = run_cli(db, "domain", "settings", "d.example", "shared_roster", "on")
    assert out.stdout.strip() == "d.example shared_roster = on"
    assert json.loads(run_cli(db, "--json", "domain", "settings", "d.example").stdout)["shared_roster"] is True
    for args, message in [
        (["shared_roster", "maybe"], '"maybe" is not on or off'),
        (["shared_roster"], "give a value for shared_roster"),
        (["no_such_setting", "1"], 'there is no setting "no_such_setting"'),
    ]:
        r = run_cli(db, "domain", "settings", "d.example", *args, check=False)
        assert r.returncode == 1 and message in r.stderr, (args, r.stderr)
    assert json.loads(run_cli(db, "domain", "settings", "d.example").stdout)["shared_roster"] is True
    run_cli(db, "domain", "settings", "d.example", "shared_roster", "off")
    assert json.loads(run_cli(db, "domain", "settings", "d.example").stdout)["shared_roster"] is False
    r = run_cli(db, "domain", "settings", "missing.example", check=False)
    assert r.returncode == 1 and "domain not found: missing.example" in r.stderr
