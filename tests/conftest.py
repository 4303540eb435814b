"""Test session setup: imports, and which server versions this session runs.

A session runs each test once, against one Prosody and one ejabberd: XH_SERVERS names them
(e.g. `XH_SERVERS=prosody-13,ejabberd-24.12`; "none" adds the tests that start no XMPP server).
Unset, it is the system's Prosody 0.12 and ejabberd 23.01 plus the server-independent tests.
`scripts/test` runs one session per generation, so every scenario runs on all four versions.
A test module is Prosody's or ejabberd's by its file name (test_prosody_*, test_ejabberd_*);
tests of a server that is not selected are deselected, not skipped, so a session's count is what
it ran.
"""

import os
import sys
from pathlib import Path

import pytest

# Lets test files `import harness` without installing anything.
sys.path.insert(0, str(Path(__file__).parent))

from harness.common import NO_SERVER, TARGETS, selected_targets  # noqa: E402


def server_of(path: Path, item=None) -> str:
    """Which server a test runs: "prosody", "ejabberd", or NO_SERVER, by its file name, or for a
    file whose tests run either server (test_panel_jobs.py), by the test's `server` mark."""
    mark = item.get_closest_marker("server") if item is not None else None
    if mark is not None:
        return mark.args[0]
    for server in ("prosody", "ejabberd"):
        if path.name.startswith(f"test_{server}_"):
            return server
    return NO_SERVER


def pytest_configure(config):
    config.addinivalue_line("markers", "server(name): the XMPP server (prosody, ejabberd) this test starts")
    try:
        config._xh_selected = selected_targets()
    except ValueError as e:
        raise pytest.UsageError(str(e)) from None


def pytest_report_header(config):
    parts = []
    for name in config._xh_selected:
        t = TARGETS.get(name)
        parts.append(name if t is None else f"{name} ({t.root})" if not t.system else f"{name} (system)")
    return f"xmpp-hosting servers (XH_SERVERS): {', '.join(parts)}"


def pytest_collection_modifyitems(config, items):
    selected = config._xh_selected
    servers = {TARGETS[n].server for n in selected if n in TARGETS}
    if NO_SERVER in selected:
        servers.add(NO_SERVER)
    keep, drop = [], []
    for item in items:
        (keep if server_of(Path(str(item.fspath)), item) in servers else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_runtest_logreport(report):
    """Appends every phase's duration to the file XH_DURATIONS names (scripts/test sets it), as
    it ends: a session cut short still says where its time went, and scripts/test sums it by
    file, since the suite must stay inside CI's time."""
    path = os.environ.get("XH_DURATIONS")
    if path:
        with open(path, "a") as f:
            f.write(f"{report.duration:.3f}\t{report.when}\t{report.nodeid}\n")
