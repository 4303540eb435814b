"""The C program in tests/c, built with -std=c11 -Wall -Wextra -Werror -pedantic, against the real library."""

import re
import shutil
import subprocess

import pytest

from harness.common import PROFILE, REPO, TARGET

C_DIR = REPO / "tests" / "c"


@pytest.fixture(scope="module")
def binaries(tmp_path_factory):
    for lib in ("libxmpp_hosting.so", "libxmpp_hosting.a"):
        assert (TARGET / lib).exists(), f"{TARGET / lib} is missing: run scripts/build first"
    out = tmp_path_factory.mktemp("capi-build")
    r = subprocess.run(["make", "-s", "-C", str(C_DIR), f"OUT={out}", f"PROFILE={PROFILE}"],
                       capture_output=True, text=True)
    assert r.returncode == 0, "building tests/c failed:\n" + r.stdout + r.stderr
    return out


def run(binary, db, wrapper=()):
    r = subprocess.run([*wrapper, str(binary), str(db)], capture_output=True, text=True, timeout=300)
    summary = re.search(r"^(\d+) passed, (\d+) failed$", r.stdout, re.M)
    assert summary, r.stdout + r.stderr
    assert r.returncode == 0 and summary.group(2) == "0", r.stdout + r.stderr
    # Fewer checks than written means the program stopped early or a check was lost.
    assert int(summary.group(1)) >= 127, r.stdout
    return r


def test_c_program_against_the_shared_library(binaries, tmp_path):
    r = run(binaries / "test_capi", tmp_path / "store.db")
    assert "not ok" not in r.stdout


def test_c_program_against_the_static_library(binaries, tmp_path):
    run(binaries / "test_capi_static", tmp_path / "store.db")


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed (scripts/install-deps installs it)")
def test_c_program_leaks_nothing_and_touches_no_freed_memory(binaries, tmp_path):
    r = run(binaries / "test_capi", tmp_path / "store.db",
            wrapper=("valgrind", "--error-exitcode=99", "--leak-check=full", "--errors-for-leak-kinds=definite",
                     "--quiet"))
    assert "definitely lost" not in r.stderr, r.stderr
