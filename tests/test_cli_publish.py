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
