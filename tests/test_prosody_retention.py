"""Retention on the real Prosody (mod_http_file_share uploads): the shared scenarios of
retention_scenarios.py, on the upload test's server setup."""

import test_prosody_uploads as uploads
from retention_scenarios import RetentionScenarios
from upload_scenarios import no_limits  # noqa: F401 (autouse: limits and the clock reset per test)

prosody = uploads.prosody
server = uploads.server


class TestProsodyRetention(RetentionScenarios):
    gone_status = 410
