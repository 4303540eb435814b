"""Retention on the real ejabberd (mod_http_upload's docroot): the shared scenarios of
retention_scenarios.py, on the upload test's server setup."""

import test_ejabberd_uploads as uploads
from retention_scenarios import RetentionScenarios
from upload_scenarios import no_limits  # noqa: F401 (autouse: limits and the clock reset per test)

ej = uploads.ej
server = uploads.server


class TestEjabberdRetention(RetentionScenarios):
    pass


def test_the_nif_sets_refuses_sweeps_on_the_worker_and_reads_the_log(ej):
    h = f'{{ok, H}} = mod_xmpp_hosting:store(<<"{uploads.HOST}">>), D = <<"{uploads.HOST}">>, '
    out = ej.eval(h + 'xmpp_hosting_nif:set_retention(H, D, <<"muc">>, <<"30 days">>).')
    assert out.startswith("{ok,#{") and 'muc => <<"30d">>' in out, out
    out = ej.eval(h + 'xmpp_hosting_nif:set_retention(H, D, <<"muc">>, <<"-1d">>).')
    assert out.startswith("{error,{invalid_argument,") and "negative" in out, out
    assert 'muc => <<"30d">>' in ej.eval(h + "xmpp_hosting_nif:retention_policy(H, D).")
    ej.eval(h + 'xmpp_hosting_nif:set_retention(H, D, <<"archive">>, <<"1h">>).')
    out = ej.eval(h + 'xmpp_hosting_nif:set_user_archive_retention(H, D, <<"alice">>, <<"1d">>).')
    assert out.startswith("{error,{invalid_argument,") and "at most" in out, out
    out = ej.eval(h + 'xmpp_hosting_nif:set_user_archive_retention(H, D, <<"alice">>, <<"10min">>).')
    assert out == '{ok,<<"10min">>}', out
    ej.eval(h + 'xmpp_hosting_nif:set_retention(H, D, <<"uploads">>, <<"1h">>).')
    out = ej.eval(h + 'ok = xmpp_hosting_nif:retention_sweep(H, D, <<"uploads">>, true, [], 77), '
                      'receive {xmpp_hosting_result, 77, R} -> R after 10000 -> timeout end.')
    assert out.startswith("{ok,#{") and "dry_run => true" in out, out
    out = ej.eval(h + 'xmpp_hosting_nif:retention_sweep(H, D, <<"mam">>, false, [], 78).')
    assert out.startswith("{error,{invalid_argument,") and "archive, muc or uploads" in out, out
    out = ej.eval(h + "{ok, L} = xmpp_hosting_nif:retention_log(H, D, 5), length(L) >= 1.")
    assert out == "true", out
    for what in ("archive", "muc", "uploads"):
        ej.eval(h + f'xmpp_hosting_nif:set_retention(H, D, <<"{what}">>, <<"never">>).')
