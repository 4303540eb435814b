"""`xmpp-hosting publish …` (issue 15): fields refused with the reason, the provider file and the
page on stdout, enforced values read from the enforcing settings."""

import json

import html5lib
import pytest

from harness.common import run_cli

HOST = "cli-publish.example"


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "store.db"
    run_cli(path, "domain", "add", HOST)
    return path


@pytest.mark.parametrize("field,value,reason", [
    ("website", '{"en": "http://example.org/"}', "must be an https:// address"),
    ("terms", '{"en": "javascript:alert(1)"}', "https"),
    ("privacy", '{"english": "https://example.org/p"}', "not a BCP 47 language tag"),
    ("rules", '{"xx-notalang": ["Be kind."]}', "BCP 47"),
    ("server_locations", '["uk"]', "not an ISO 3166-1 country code"),
    ("jurisdiction", "Germany", "not a country code"),
    ("organization", "club", "unknown variant `club`"),
    ("since", "2016-02-30", "not a day of the calendar"),
    ("bus_factor", "0", "at least 1"),
    ("contacts.abuse", '["abuse@example.org"]', "mailto:"),
    ("support_room", "chat.example.org", "not a group chat address"),
    ("archive_retention", "30", "published from the setting that enforces it"),
    ("colour", "blue", "there is no publication field"),
    # One language at a time is checked as the whole map is.
    ("terms.en", "http://example.org/terms", "must be an https:// address"),
    ("privacy.english", "https://example.org/p", "not a BCP 47 language tag"),
    ("password_reset.de", '["https://example.org/r"]', "is not one link"),
    ("description.en", "", "one or two sentences"),
    ("since", "2999-01-01", "is in the future"),
])
def test_invalid_values_are_refused_with_the_reason(db, field, value, reason):
    before = run_cli(db, "--json", "publish", "show", HOST).stdout
    r = run_cli(db, "publish", "set", HOST, field, value, check=False)
    assert r.returncode == 1 and reason in r.stderr, r.stderr
    assert run_cli(db, "--json", "publish", "show", HOST).stdout == before, "nothing refused is stored"


def test_provider_file_and_page_on_stdout(db):
    run_cli(db, "publish", "set", HOST, "rules", '{"en": ["<b>No spam</b>"]}')
    run_cli(db, "retention", "set", HOST, "uploads", "12h")
    f = json.loads(run_cli(db, "publish", "provider-file", HOST).stdout)
    assert f == {"busFactor": -1, "maximumHttpFileUploadTotalSize": 0, "maximumHttpFileUploadStorageTime": -1,
                 "maximumMessageArchiveManagementStorageTime": 0}
    page = run_cli(db, "publish", "page", HOST, "--accounts", "4321").stdout
    html5lib.HTMLParser(strict=True).parse(page)
    assert "&lt;b&gt;No spam&lt;/b&gt;" in page and "12 hours" in page and "about 4300" in page
    doc = json.loads(run_cli(db, "--json", "publish", "page", HOST).stdout)
    assert doc["rules"] == ["<b>No spam</b>"] and doc["enforced"]["upload_retention"] == "12h"
    disco = json.loads(run_cli(db, "--json", "publish", "disco", HOST).stdout)
    assert [f["form_type"] for f in disco] == ["urn:x-xmpp-hosting:policy:0"]


def test_one_language_of_a_field_is_set_and_removed_alone(db):
    """Issue 15: `publish set DOMAIN terms.en URL`, for every per-language field; null removes
    that language, the others stay."""
    run_cli(db, "publish", "set", HOST, "terms", '{"de": "https://example.org/de/agb"}')
    for field, value in [("terms.en", "https://example.org/terms"), ("description.en", "A club's server."),
                         ("rules.en", '["Be kind.", "No spam."]'), ("rules.de", "Sei freundlich."),
                         ("website.en", "https://example.org/"), ("privacy.pt-BR", "https://example.org/pt"),
                         ("legal_notice.en", "https://example.org/legal"),
                         ("password_reset.en", "https://example.org/reset"),
                         ("password_reset.de", "https://example.org/de/reset"),
                         ("data_export.en", "https://example.org/export"),
                         ("account_deletion.en", "https://example.org/delete")]:
        run_cli(db, "publish", "set", HOST, field, value)
    d = json.loads(run_cli(db, "--json", "publish", "show", HOST).stdout)["description"]
    assert d["terms"] == {"de": "https://example.org/de/agb", "en": "https://example.org/terms"}
    assert d["rules"] == {"en": ["Be kind.", "No spam."], "de": ["Sei freundlich."]}
    assert d["description"] == {"en": "A club's server."} and d["privacy"] == {"pt-BR": "https://example.org/pt"}
    assert [d["website"], d["legal_notice"], d["data_export"], d["account_deletion"]] == [
        {"en": "https://example.org/"}, {"en": "https://example.org/legal"}, {"en": "https://example.org/export"},
        {"en": "https://example.org/delete"}]
    assert json.loads(run_cli(db, "publish", "provider-file", HOST).stdout)["passwordReset"] == {
        "en": "https://example.org/reset", "de": "https://example.org/de/reset"}

    out = run_cli(db, "publish", "set", HOST, "password_reset.de", "null").stdout
    assert "password_reset" in out
    assert json.loads(run_cli(db, "publish", "provider-file", HOST).stdout)["passwordReset"] == {
        "en": "https://example.org/reset"}
    run_cli(db, "publish", "set", HOST, "terms.de", "null")
    d = json.loads(run_cli(db, "--json", "publish", "show", HOST).stdout)["description"]
    assert d["terms"] == {"en": "https://example.org/terms"}
    # A smaller whole map replaces the stored one; null empties it.
    run_cli(db, "publish", "set", HOST, "rules", '{"de": ["Sei freundlich."]}')
    run_cli(db, "publish", "set", HOST, "terms", "null")
    d = json.loads(run_cli(db, "--json", "publish", "show", HOST).stdout)["description"]
    assert d["rules"] == {"de": ["Sei freundlich."]} and d["terms"] == {}
