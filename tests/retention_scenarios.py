"""Retention scenarios on every server (see test_*_retention.py): the core's sweep, run by the
server's own housekeeping timer, deletes uploads older than the domain's policy.

The test modules reuse their server's upload fixture (an UploadServer with a libfaketime
clock): a file is uploaded, the domain's uploads are kept for an hour, the server's clock moves
two hours on, and the server's timer must delete the file from its upload directory, free the
uploader's quota at once and log the sweep; a file uploaded after the move stays.
"""

import http.client
import json
from urllib.parse import urlsplit

from harness.common import LOOPBACK, run_cli
from upload_scenarios import UploadScenarios, wait_for


def http_get(http_port: int, url: str) -> int:
    """GETs a file's URL through loopback, keeping the URL's host as the Host header."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(LOOPBACK, http_port, timeout=30)
    try:
        conn.request("GET", u.path, headers={"Host": u.netloc})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


class RetentionScenarios:
    uploads = UploadScenarios()
    #: What a download of a swept file answers. ejabberd serves the docroot: 404. Prosody's
    #: mod_http_file_share keeps the upload's metadata (and a download cache) and answers
    #: 410 Gone for a file missing on disk, exactly as after its own expiry.
    gone_status = 404

    def test_an_expired_upload_is_deleted_by_the_servers_timer_is_gone_and_frees_quota(self, server):
        sc = self.uploads
        run_cli(server.database, "retention", "set", server.host, "uploads", "1h")
        try:
            before = sc.usage(server, "alice")["stored"]
            old = sc.upload(server, "alice", "old.txt", b"o" * 40)
            assert wait_for(lambda: sc.usage(server, "alice")["stored"] == before + 40)
            old_file = server.file_of(old.put_url)
            assert http_get(server.http_port, old.put_url) == 200
            server.clock.set_offset(2 * 3600)
            # Uploaded after the move: newer than the cutoff, whenever the sweep runs.
            new = sc.upload(server, "bob", "new.txt", b"n" * 7)
            new_file = server.file_of(new.put_url)
            assert wait_for(lambda: not old_file.exists(), timeout=30), "the server's timer did not sweep"
            assert wait_for(lambda: sc.usage(server, "alice")["stored"] == before), "quota not freed"
            assert http_get(server.http_port, old.put_url) == self.gone_status
            assert new_file.exists() and http_get(server.http_port, new.put_url) == 200
            log = json.loads(run_cli(server.database, "--json", "retention", "log", server.host).stdout)
            done = [s for s in log if s["kind"] == "uploads" and not s["dry_run"] and s["deleted"] >= 1]
            assert done and done[0]["failed"] == 0 and done[0]["state"] == "done", log
        finally:
            run_cli(server.database, "retention", "set", server.host, "uploads", "never")
