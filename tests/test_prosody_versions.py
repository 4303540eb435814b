"""Which Prosody the modules run in: they name the version and the API they use at load, and
refuse to load on a version they were not built and tested for (supported: 0.12 and 13.0).

Runs on the session's Prosody (XH_SERVERS); scripts/test runs it on both generations.
"""

import pytest

from dns_scenarios import a_lost_domain_is_logged_and_told_to_the_admins
from harness.clock import ServerClock
from harness.common import target
from harness.prosody import Prosody, reporting_version


def test_the_module_names_the_prosody_version_and_the_api_it_uses(tmp_path):
    with Prosody(tmp_path / "prosody", host_modules=["xmpp_hosting_invites"]) as server:
        log = server.wait_for_log("xmpp-hosting on Prosody")
        line = next(x for x in log.splitlines() if "xmpp-hosting on Prosody" in x)
        assert f"xmpp-hosting on Prosody {server.version}: " in line
        if server.target.major >= (13,):
            assert "roles and permissions" in line and "module:may" in line
        else:
            assert "admins option" in line and "is_admin" in line
        # Loaded: its command runs in the server.
        assert "OK" in server.shell('xmpp_hosting:domain_add("versions.example")').stdout


@pytest.mark.parametrize("version", ["0.11.12", "13.1.0", "14.0.0", "hg:0123456789ab"])
def test_an_unsupported_prosody_version_is_refused_with_a_clear_log_line(tmp_path, version):
    fake = reporting_version(target("prosody"), tmp_path / "install", version)
    with Prosody(tmp_path / "prosody", host_modules=["xmpp_hosting_invites"], version=fake) as server:
        log = server.wait_for_log("Error initializing module 'xmpp_hosting_invites'")
        assert f"xmpp-hosting supports Prosody 0.12 and 13.0; this is Prosody {version}: not loading" in log
        # Nothing of ours half-runs: no admin shell commands, and the invites module that
        # depends on it did not load either.
        assert "xmpp-hosting on Prosody" not in log
        assert "OK" not in server.shell('xmpp_hosting:domain_add("versions.example")').stdout
        assert server.running()


def test_on_13_an_account_with_the_admin_role_gets_the_admins_notices(tmp_path):
    """Prosody 13 has roles: an admin made with user:set_role (no `admins` option) is told that a
    customer's domain was lost, as the option's admins are on 0.12 (dns_scenarios)."""
    if target("prosody").major < (13,):
        pytest.skip("Prosody 0.12 has no roles: its admins are the admins option (test_prosody_dns)")
    clock = ServerClock(tmp_path)
    host = "localhost.example"
    with Prosody(tmp_path / "prosody", host=host, options={"xmpp_hosting_recheck_interval": 1},
                 server_env=clock.env) as server:
        server.create_user("boss", "pw-123456")
        r = server.shell(f'user:set_role("boss@{host}", "{host}", "prosody:admin")')
        assert r.returncode == 0 and "prosody:admin" in r.stdout, r
        a_lost_domain_is_logged_and_told_to_the_admins(server.database, clock, server.c2s_port, f"boss@{host}",
                                                       "pw-123456", server.log_text, tmp_path)
