"""Publication on the real ejabberd (23.01 or 24.12, per XH_SERVERS): the shared scenarios of
publish_scenarios.py on mod_xmpp_hosting_publish (request handlers and the disco_info hook), and
its ejabberdctl commands and NIFs."""

import pytest

from harness.common import run_cli
from harness.ejabberd import Ejabberd
from publish_scenarios import PublishScenarios, PublishServer

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
