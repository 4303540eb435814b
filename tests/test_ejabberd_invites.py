"""Invite-only registration on the real ejabberd 23.01, driven by a real client (slixmpp).

The scenarios are those of Prosody (invite_scenarios.py): both servers take their decisions from
the one core, so a client must see the same answers. ejabberdctl's commands are tested here.
"""

import json
import re

import pytest
from slixmpp.exceptions import IqError

from harness import client
from harness.client import register
from harness.common import run_cli
from harness.ejabberd import Ejabberd
from invite_scenarios import InviteScenarios, ServerUnderTest, invite_only  # noqa: F401 (autouse fixture)

HOST = "invites.example"

MODULES = f"""  mod_roster: {{}}
  mod_adhoc: {{}}
  mod_register:
    allow_modules: [mod_xmpp_hosting_invites]
    password_strength: 32
  mod_xmpp_hosting_invites:
    access_create_account:
      allow:
        user: "boss@{HOST}"
"""


@pytest.fixture(scope="module")
def ej(tmp_path_factory):
    with Ejabberd(tmp_path_factory.mktemp("ejabberd-invites"), host=HOST, install="config",
                  extra_modules=MODULES, extra_config="registration_timeout: infinity\n") as node:
        yield node


@pytest.fixture(scope="module")
def server(ej):
    return ServerUnderTest(ej.host, ej.c2s_port, ej.database, ej.register, ej.unregister, ej.is_running,
                           purge_invites=lambda: ej.ctl("xmpp_hosting_invite_purge").stdout,
                           list_invites=lambda: ej.ctl("xmpp_hosting_invite_list", HOST).stdout,
                           log_text=lambda: ej.log_file.read_text(errors="replace"))


class TestEjabberdInvites(InviteScenarios):
    pass


def jid(user):
    return f"{user}@{HOST}"

def test_ejabberdctl_invite_commands(ej):
    r = ej.ctl("xmpp_hosting_invite_create", HOST, "2", "0", "for the Smiths")
    assert r.returncode == 0, r.stdout + r.stderr
    token = r.stdout.split(" token ")[1].split()[0]
    assert f"uri xmpp:{HOST}?register;preauth={token}" in r.stdout
    invite_id = r.stdout.split()[1]
    listed = ej.ctl("xmpp_hosting_invite_list", HOST).stdout
    assert f"{invite_id} account active, 2/2 left" in listed and "note: for the Smiths" in listed
    assert register(ej.c2s_port, jid("viactl"), "pw-123456", token=token).ok
    assert ej.ctl("xmpp_hosting_invite_revoke", HOST, invite_id).returncode == 0
    assert not register(ej.c2s_port, jid("viactl2"), "pw-123456", token=token).ok
    r = ej.ctl("xmpp_hosting_domain_set", HOST, "registration.policy", "sometimes", check=False)
    assert r.returncode == 1 and "invalid_argument" in r.stdout + r.stderr
    assert ej.ctl("xmpp_hosting_invite_purge").returncode == 0



def test_ejabberdctl_creates_named_roster_and_reset_invites(ej):
    def created(*args):
        r = ej.ctl(*args)
        return r.stdout.split()[1], r.stdout.split(" token ")[1].split()[0], r.stdout
    ej.register("ctlinviter", "inviter-pass")
    _, token, out = created("xmpp_hosting_invite_create_roster", HOST, jid("ctlinviter"), "1", "0", "")
    assert f"uri xmpp:{jid('ctlinviter')}?roster;preauth={token};ibr=y" in out
    assert register(ej.c2s_port, jid("ctlfriend"), "friend-pass", token=token).ok
    assert client.roster(ej.c2s_port, jid("ctlfriend"), "friend-pass") == {jid("ctlinviter"): "both"}

    named_id, token, _ = created("xmpp_hosting_invite_create_named", HOST, "ctlnamed", "0", "")
    named = [l for l in ej.ctl("xmpp_hosting_invite_list", HOST).stdout.splitlines() if l.startswith(named_id + " ")]
    assert named[0].startswith(f"{named_id} account active, 1/1 left") and named[0].endswith("for ctlnamed"), named
    assert register(ej.c2s_port, jid("ctlother"), "pw-123456", token=token).error[:2] == ("modify", "not-acceptable")
    assert register(ej.c2s_port, jid("ctlnamed"), "pw-123456", token=token).ok

    _, token, _ = created("xmpp_hosting_invite_create_reset", HOST, "ctlnamed", "3600", "lost phone")
    assert register(ej.c2s_port, jid("ctlnamed"), "new-pass-123", token=token).ok
    assert client.login(ej.c2s_port, jid("ctlnamed"), "new-pass-123")

    r = ej.ctl("xmpp_hosting_invite_create_roster", HOST, "someone@elsewhere.example", "1", "0", "", check=False)
    assert r.returncode == 1 and "not a bare JID on" in r.stdout + r.stderr

# ---- the invite NIF inside the running node ---------------------------------------------------

H = f'{{ok, H}} = mod_xmpp_hosting:store(<<"{HOST}">>), '


def test_nif_invite_api_shapes(ej):
    created = ej.eval(H + f'xmpp_hosting_nif:create_invite(H, #{{domain => <<"{HOST}">>, uses => 2, '
                      'expiry => 3600, note => <<"nif">>}).')
    assert created.startswith("{ok,#{") and "token =>" in created and "uri =>" in created
    token = created.split("token => <<\"")[1].split('"')[0]
    checked = ej.eval(H + f'xmpp_hosting_nif:check_invite(H, <<"{HOST}">>, <<"{token}">>).')
    assert "uses_left => 2" in checked and 'note => <<"nif">>' in checked
    assert ej.eval(H + f'xmpp_hosting_nif:check_invite(H, <<"{HOST}">>, <<255,0>>).') == "{ok,undefined}"
    # A bad spec is the core's invalid_argument, not a crash.
    bad = ej.eval(H + f'xmpp_hosting_nif:create_invite(H, #{{domain => <<"{HOST}">>, uses => 0}}).')
    assert bad.startswith("{error,{invalid_argument,"), bad

    begin = (H + f'{{ok, D}} = xmpp_hosting_nif:begin_registration(H, #{{domain => <<"{HOST}">>, '
             f'username => <<"nifuser">>, ip => <<"192.0.2.1">>, token => <<"{token}">>}}), ')
    allowed = ej.eval(begin + "D.")
    assert 'decision => <<"allowed">>' in allowed
    # A failed registration gives the use back (the first begin above holds the other use).
    assert ej.eval(begin + "#{id := T} = D, xmpp_hosting_nif:finish_registration(H, T, false).") == "ok"
    refused = ej.eval(H + f'xmpp_hosting_nif:begin_registration(H, #{{domain => <<"{HOST}">>, '
                      'username => <<"nifuser2">>}).')
    for part in ('decision => <<"refused">>', 'type => <<"cancel">>', 'condition => <<"not-allowed">>', "text =>"):
        assert part in refused
    # Keys other than domain/username/ip/token, or a non-binary value, are the caller's bug: badarg.
    for spec in (f'#{{domain => <<"{HOST}">>, username => <<"x">>, tokn => <<"t">>}}',
                 f'#{{domain => <<"{HOST}">>, username => 42}}', f'#{{domain => <<"{HOST}">>}}'):
        out = ej.eval(H + f"catch xmpp_hosting_nif:begin_registration(H, {spec}).")
        assert "badarg" in out, out
    listed = ej.eval(H + f'{{ok, L}} = xmpp_hosting_nif:invites(H, <<"{HOST}">>), length(L) > 0.')
    assert listed == "true"
    audit = ej.eval(H + f'xmpp_hosting_nif:invite_audit(H, <<"{HOST}">>, 5).')
    assert audit.startswith("{ok,[") and "action =>" in audit
    assert ej.eval(H + "element(1, xmpp_hosting_nif:purge_invites(H)).") == "ok"


# ---- XEP-0401 ad-hoc commands -----------------------------------------------------------------


def test_adhoc_create_account_invite_only_for_access_create_account(ej):
    ej.register("boss", "boss-pass")
    fields = client.adhoc(ej.c2s_port, jid("boss"), "boss-pass", "urn:xmpp:invite#create-account", HOST)
    assert fields["uri"].startswith(f"xmpp:{HOST}?register;preauth="), fields
    assert fields["expire"].endswith("Z")
    token = fields["uri"].rsplit("=", 1)[1]
    assert register(ej.c2s_port, jid("viaadhoc"), "pw-123456", token=token).ok
    # Anyone else is refused by the access rule (the default rule is `configure`).
    ej.register("plainuser", "plain-pass")
    with pytest.raises(IqError) as refused:
        client.adhoc(ej.c2s_port, jid("plainuser"), "plain-pass", "urn:xmpp:invite#create-account", HOST)
    assert refused.value.condition == "forbidden"


def test_adhoc_contact_invite_needs_the_domain_to_allow_users(ej):
    ej.register("user1", "user1-pass")
    fields = client.adhoc(ej.c2s_port, jid("user1"), "user1-pass", "urn:xmpp:invite#invite", HOST)
    assert "may not create invites" in fields.get("error", ""), fields
    run_cli(ej.database, "domain", "set", HOST, "registration.users_may_invite", "true")
    fields = client.adhoc(ej.c2s_port, jid("user1"), "user1-pass", "urn:xmpp:invite#invite", HOST)
    assert fields["uri"].startswith(f"xmpp:{jid('user1')}?roster;preauth="), fields
    token = fields["uri"].split("preauth=")[1].split(";")[0]
    assert register(ej.c2s_port, jid("user1friend"), "pw-123456", token=token).ok
    assert client.roster(ej.c2s_port, jid("user1"), "user1-pass") == {jid("user1friend"): "both"}


def test_weak_passwords_are_refused_for_new_accounts_and_resets_alike(ej):
    run_cli(ej.database, "domain", "set", HOST, "registration.policy", "open")
    r = register(ej.c2s_port, jid("weakling"), "abc")
    assert r.error[:2] == ("modify", "not-acceptable"), r
    ej.register("resetweak", "old-strong-pass")
    inv = json.loads(run_cli(ej.database, "--json", "invite", "create", HOST, "--kind", "reset",
                             "--username", "resetweak").stdout)
    r = register(ej.c2s_port, jid("resetweak"), "abc", token=inv["token"])
    assert r.error[:2] == ("modify", "not-acceptable"), r
    # The refused reset gave its use back: a strong password goes through.
    assert register(ej.c2s_port, jid("resetweak"), "new-strong-pass", token=inv["token"]).ok
    assert client.login(ej.c2s_port, jid("resetweak"), "new-strong-pass")


@pytest.mark.parametrize("args, message", [
    # Issue 10.3: each was a badarg from the NIF or serde's words; each is now the core's, exit 1.
    (["xmpp_hosting_invite_create", HOST, "99999999999999999999", "0", ""], "uses is a whole number from 1 to 100000"),
    (["xmpp_hosting_invite_create", HOST, "1", "99999999999999999999", ""], "(ten years)"),
    (["xmpp_hosting_invite_create", HOST, "1", "99999999999999", ""], "(ten years)"),
    (["xmpp_hosting_invite_create", HOST, "1", "-5", ""], 'or "never", not "-5"'),
    (["xmpp_hosting_invite_revoke", HOST, "99999999999999999999"], "an invite id is a whole number"),
])
def test_ejabberdctl_refuses_bad_invite_input_in_words(ej, args, message):
    r = ej.ctl(*args, check=False)
    out = r.stdout + r.stderr
    assert r.returncode == 1 and message in out, out
    assert "badarg" not in out and "ExpiryRepr" not in out


def test_ejabberdctl_invite_list_prints_iso8601_utc(ej):
    r = ej.ctl("xmpp_hosting_invite_create", HOST, "1", "3600", "")
    invite_id = r.stdout.split()[1]
    line = next(l for l in ej.ctl("xmpp_hosting_invite_list", HOST).stdout.splitlines() if l.startswith(invite_id + " "))
    expires = line.split("expires ")[1].split(",")[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", expires), line
    assert " account active, 1/1 left" in line


def test_nif_stale_registration_and_hosting_calls(ej):
    """The NIF calls the invite commands and the module use: wrong types are badarg, an id no
    invite can have is the core's invalid_argument, and a host that loads the module is hosted."""
    assert ej.eval(H + f'{{ok, #{{added := A}}}} = xmpp_hosting_nif:ensure_hosted(H, <<"{HOST}">>), A.') == "false"
    assert ej.eval(H + "xmpp_hosting_nif:stale_registrations(H, 10).").startswith("{ok,")
    assert ej.eval(H + "xmpp_hosting_nif:settle_stale_registrations(H, []).") == "{ok,0}"
    for call in ('xmpp_hosting_nif:settle_stale_registrations(H, [#{id => <<"x">>, account_exists => true}])',
                 "xmpp_hosting_nif:settle_stale_registrations(H, not_a_list)",
                 "xmpp_hosting_nif:stale_registrations(H, -1)",
                 'xmpp_hosting_nif:ensure_hosted(H, "invites.example")'):
        assert ej.eval(H + f"try {call} of V -> {{returned, V}} catch C:R -> {{C, R}} end.") == "{error,badarg}", call
    for bad_id in ("1.5", "-3", "<<\"1.5\">>", "99999999999999999999"):
        out = ej.eval(H + f'xmpp_hosting_nif:revoke_invite(H, <<"{HOST}">>, {bad_id}).')
        assert out.startswith("{error,{invalid_argument,") and "an invite id is a whole number" in out, out
    assert ej.is_running()


# ---- mod_register's captcha_protected, welcome_message and registration_watchers ---------------

GUARDED = "guarded.example"
WELCOME = "Welcome to guarded.example"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A node whose mod_register wants a CAPTCHA and greets and reports new accounts; its
    domain is open (anyone may register, as far as the store is concerned)."""
    modules = f"""  mod_roster: {{}}
  mod_offline: {{}}
  mod_register:
    allow_modules: [mod_xmpp_hosting_invites]
    captcha_protected: true
    welcome_message:
      subject: "Hello"
      body: "{WELCOME}"
    registration_watchers:
      - "watcher@{GUARDED}"
  mod_xmpp_hosting_invites: {{}}
"""
    work = tmp_path_factory.mktemp("ejabberd-invites-captcha")
    # mod_register makes a CAPTCHA for every registration form asked for: an image of sorts.
    captcha = work / "captcha.sh"
    captcha.write_text("#!/bin/sh\nprintf '\\211PNG\\r\\n\\032\\nnot really'\n")
    captcha.chmod(0o755)
    config = f'registration_timeout: infinity\ncaptcha_cmd: "{captcha}"\ncaptcha_url: "http://{GUARDED}/captcha"\n'
    with Ejabberd(work, host=GUARDED, install="config", extra_modules=modules, extra_config=config) as node:
        node.register("watcher", "watcher-pass")
        run_cli(node.database, "domain", "set", GUARDED, "registration.policy", "open")
        yield node


def test_captcha_protected_refuses_a_plain_registration_without_an_invite(guarded):
    """mod_register answers a plain username and password form with not-allowed when it wants a
    CAPTCHA; this module answers first and created the account, so bots skipped the CAPTCHA."""
    r = register(guarded.c2s_port, f"bot@{GUARDED}", "bot-pass-123456")
    assert not r.ok and r.error and r.error[:2] == ("cancel", "not-allowed"), r
    assert guarded.ctl("check_account", "bot", GUARDED, check=False).returncode != 0, "the account exists"
    # An invite the store accepts stands for the CAPTCHA.
    token = guarded.ctl("xmpp_hosting_invite_create", GUARDED, "1", "0", "").stdout.split(" token ")[1].split()[0]
    assert register(guarded.c2s_port, f"human@{GUARDED}", "human-pass-123456", token=token).ok


def test_new_accounts_get_the_welcome_message_and_the_watchers_are_told(guarded):
    """What mod_register does after its own registrations (try_register/6) was skipped."""
    token = guarded.ctl("xmpp_hosting_invite_create", GUARDED, "1", "0", "").stdout.split(" token ")[1].split()[0]
    told = client.message_after(
        guarded.c2s_port, f"watcher@{GUARDED}", "watcher-pass",
        lambda: register(guarded.c2s_port, f"newbie@{GUARDED}", "newbie-pass-123456", token=token),
        contains=f"newbie@{GUARDED}")
    assert "was registered" in told, told
    greeting = client.message_after(guarded.c2s_port, f"newbie@{GUARDED}", "newbie-pass-123456",
                                    lambda: None, contains=WELCOME)
    assert greeting == WELCOME
