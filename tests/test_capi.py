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


def header_functions():
    header = (REPO / "include" / "xmpp_hosting.h").read_text()
    code = re.sub(r"/\*.*?\*/", "", header, flags=re.S)
    code = "\n".join(line for line in code.splitlines() if not line.lstrip().startswith("//"))
    return set(re.findall(r"\b(xh_\w+)\(", code))


def test_the_shared_library_exports_exactly_the_header(tmp_path):
    declared = header_functions()
    assert {"xh_open", "xh_close", "xh_domain_add", "xh_string_free", "xh_last_error_message"} <= declared
    r = subprocess.run(["nm", "-D", "--defined-only", str(TARGET / "libxmpp_hosting.so")],
                       capture_output=True, text=True, check=True)
    exported = {line.split()[-1] for line in r.stdout.splitlines() if line.split()[-2] in ("T", "t")}
    assert exported == declared, f"exported but not declared: {exported - declared}; declared but not exported: {declared - exported}"


@pytest.mark.skipif(shutil.which("c++") is None, reason="no C++ compiler")
def test_the_header_compiles_as_cxx(tmp_path):
    src = tmp_path / "use.cpp"
    src.write_text('#include "xmpp_hosting.h"\nint main() { xh_close(nullptr); return xh_last_error_code() == XH_OK ? 0 : 1; }\n')
    r = subprocess.run(["c++", "-std=c++11", "-Wall", "-Wextra", "-Werror", "-pedantic", f"-I{REPO / 'include'}",
                        "-o", str(tmp_path / "use"), str(src), f"-L{TARGET}", "-lxmpp_hosting", f"-Wl,-rpath,{TARGET}"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert subprocess.run([str(tmp_path / "use")]).returncode == 0
