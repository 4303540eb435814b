"""Publication on the real ejabberd (23.01 or 24.12, per XH_SERVERS): the shared scenarios of
publish_scenarios.py on mod_xmpp_hosting_publish (request handlers and the disco_info hook), and
its ejabberdctl commands and NIFs."""

import asyncio
from xml.etree import ElementTree as ET

import pytest
import slixmpp
from slixmpp.exceptions import IqError
from slixmpp.plugins.xep_0004 import Form

from harness import client
from harness.common import run_cli
from harness.ejabberd import Ejabberd
from publish_scenarios import PublishScenarios, PublishServer, bookmarks

HOST = "publish.example"

MODULES = """  mod_roster: {}
  mod_adhoc: {}
  mod_disco: {}
  mod_register:
    allow_modules: [mod_xmpp_hosting_invites]
  mod_xmpp_hosting_invites: {}
  mod_xmpp_hosting_publish: {}
  mod_caps: {}
  mod_pubsub:
    plugins: [flat, pep]
"""


@pytest.fixture(scope="module")
def ej(tmp_path_factory):
    handlers = {"/.well-known/xmpp-provider-v2.json": "mod_xmpp_hosting_publish",
                "/policy": "mod_xmpp_hosting_publish"}
    node = Ejabberd(tmp_path_factory.mktemp("ejabberd-publish"), host=HOST, install="config",
                    extra_modules=MODULES, http_handlers=handlers)
    # Hosted before the node starts, so no test races the modules' own ensure_hosted at start.
    node.database.parent.mkdir(parents=True, exist_ok=True)
    run_cli(node.database, "domain", "add", HOST)
    with node:
        yield node


@pytest.fixture(scope="module")
def server(ej):
    def publish_set(field, value):
        r = ej.ctl("xmpp_hosting_publish_set", HOST, field, value, check=False)
        return r.returncode, r.stdout + r.stderr

    return PublishServer(f"ejabberd-{ej.version}", ej.host, ej.c2s_port, ej.http_port, ej.database, ej.register,
                         publish_set)


class TestEjabberdPublish(PublishScenarios):
    pass


def test_ejabberdctl_publish_commands(ej, server):
    r = ej.ctl("xmpp_hosting_publish_set", HOST, "jurisdiction", "uk", check=False)
    assert r.returncode != 0 and "not an ISO 3166-1 country code" in r.stdout + r.stderr, r.stdout + r.stderr
    r = ej.ctl("xmpp_hosting_publish_set", HOST, "since", "2019-05-01")
    assert r.returncode == 0 and 'since: "2019-05-01"' in r.stdout, r.stdout + r.stderr
    r = ej.ctl("xmpp_hosting_publish_show", HOST)
    assert r.returncode == 0 and f"{HOST}: registration " in r.stdout, r.stdout + r.stderr
    r = ej.ctl("xmpp_hosting_publish_provider_file", HOST)
    assert r.returncode == 0 and '"since": "2019-05-01"' in r.stdout, r.stdout + r.stderr
    r = ej.ctl("xmpp_hosting_publish_page", HOST)
    assert r.returncode == 0 and "<!DOCTYPE html>" in r.stdout, r.stdout + r.stderr


def test_the_nifs_refuse_with_the_reason(ej):
    h = f'{{ok, H}} = mod_xmpp_hosting:store(<<"{HOST}">>), D = <<"{HOST}">>, '
    out = ej.eval(h + 'xmpp_hosting_nif:set_publication(H, D, <<"terms">>, <<"{\\"en\\":\\"http://x.example/\\"}">>).')
    assert out.startswith("{error,{invalid_argument,") and "https" in out, out
    out = ej.eval(h + 'xmpp_hosting_nif:set_publication(H, D, <<"rules">>, <<"{\\"english\\":[\\"x\\"]}">>).')
    assert out.startswith("{error,{invalid_argument,") and "BCP 47" in out, out
    out = ej.eval(h + "{ok, Forms} = xmpp_hosting_nif:disco_forms(H, D), length(Forms) >= 1.")
    assert out == "true", out
    out = ej.eval(h + 'xmpp_hosting_nif:policy_page(H, D, <<"de">>, 5, pdf).')
    assert "badarg" in out, out


def test_a_long_language_tag_does_not_break_the_domain_list(ej):
    # A valid BCP 47 tag (private use) longer than an atom may be: the NIF used to make every
    # settings key an atom, so after this one no domain could be listed or shown.
    tag = "en-x-" + "-".join(["abcdefgh"] * 35)
    assert len(tag) > 255
    h = f'{{ok, H}} = mod_xmpp_hosting:store(<<"{HOST}">>), D = <<"{HOST}">>, '
    terms = f'<<"{{\\"en\\":\\"https://x.example/terms\\",\\"{tag}\\":\\"https://x.example/long\\"}}">>'
    out = ej.eval(h + f'element(1, xmpp_hosting_nif:set_publication(H, D, <<"terms">>, {terms})).')
    assert out == "ok", out
    try:
        # Field names stay atoms (what Erlang matches on); the admin's tag is a binary key.
        out = ej.eval(h + "{ok, Ds} = xmpp_hosting_nif:domains(H), "
                      "[#{publication := #{terms := T}}] = [S || #{name := N, settings := S} <- Ds, N =:= D], "
                      f'{{maps:get(en, T), maps:get(<<"{tag}">>, T)}}.')
        assert out == '{<<"https://x.example/terms">>,<<"https://x.example/long">>}', out
        r = ej.ctl("xmpp_hosting_domain_list", check=False)
        assert r.returncode == 0 and HOST in r.stdout, r.stdout + r.stderr
        r = ej.ctl("xmpp_hosting_domain_show", HOST, check=False)
        assert r.returncode == 0 and tag in r.stdout, r.stdout + r.stderr
    finally:
        ej.eval(h + 'xmpp_hosting_nif:set_publication(H, D, <<"terms">>, <<"{}">>).')


def test_a_client_adds_a_bookmark_with_the_xep_0402_publish_options_beside_the_support_room(ej, server):
    """The support room bookmark creates the account's urn:xmpp:bookmarks:1 node. Created with
    pep's defaults (max_items 1, send_last_published_item on_sub_and_presence), a client's own
    bookmark published with the publish-options XEP-0402 asks for failed its precondition
    (conflict), and on 23.01 (whose publish-options have neither field) replaced ours; the node
    is now made with the options ejabberd's mod_private gives it."""
    run_cli(ej.database, "publish", "set", HOST, "support_room", "support@chat.example.org")
    jid, password = f"bookmarker@{HOST}", "bookmarker-pass-123"
    ej.register("bookmarker", password)  # register_user bookmarks the support room
    wanted = [("pubsub#persist_items", "true"), ("pubsub#access_model", "whitelist")]
    # 23.01's publish-options form knows neither field ('Unknown field'): clients publish
    # without them, and the node's own max_items must keep both items.
    if not ej.version.startswith("23."):
        wanted += [("pubsub#max_items", "max"), ("pubsub#send_last_published_item", "never")]

    async def publish(c: slixmpp.ClientXMPP):
        c.register_plugin("xep_0060")
        c.register_plugin("xep_0004")
        options = Form()
        options["type"] = "submit"
        options.add_field(var="FORM_TYPE", ftype="hidden",
                          value="http://jabber.org/protocol/pubsub#publish-options")
        for var, value in wanted:
            options.add_field(var=var, value=value)
        conference = ET.fromstring("<conference xmlns='urn:xmpp:bookmarks:1' name='Friends' autojoin='false'/>")
        try:
            await c.plugin["xep_0060"].publish(c.boundjid.bare, "urn:xmpp:bookmarks:1", id="friends@chat.example.org",
                                               payload=conference, options=options, timeout=15)
        except IqError as e:
            return e.iq["error"]["condition"], e.iq["error"]["text"]
        return "published"

    assert asyncio.run(client._session(ej.c2s_port, jid, password, publish, 30)) == "published"
    items = bookmarks(server, jid, password)
    assert set(items) == {"support@chat.example.org", "friends@chat.example.org"}, items
