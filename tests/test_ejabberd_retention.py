"""Retention on the real ejabberd (mod_http_upload's docroot): the shared scenarios of
retention_scenarios.py, on the upload test's server setup."""

import test_ejabberd_uploads as uploads
from retention_scenarios import RetentionScenarios
from upload_scenarios import no_limits  # noqa: F401 (autouse: limits and the clock reset per test)

ej = uploads.ej
server = uploads.server


class TestEjabberdRetention(RetentionScenarios):
    pass
