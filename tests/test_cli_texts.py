"""The CLI prints the core's sentences, the same ones prosodyctl and ejabberdctl print (issue 10.4:
claim and audit texts were written three times)."""

from harness.common import run_cli


def test_claim_recheck_and_audit_are_worded_by_the_core(tmp_path):
    db = tmp_path / "store.sqlite"
    claim = run_cli(db, "domain", "claim", "her-name.example", "--account", "alice").stdout
    assert claim.startswith("her-name.example claimed for alice (pending). Create one of these records, then run "
                            "`domain verify`:\n  xmpp-hosting-verification.her-name.example  TXT    \"verify="), claim
    # Nothing is due: the core's summary of an empty bulk check.
    assert run_cli(db, "dns", "recheck").stdout == "0 claim(s) checked\n"
    audit = run_cli(db, "quota", "audit")
    assert audit.stdout == "The running totals match the files and slots\n", audit.stdout
