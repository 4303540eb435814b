# Sourced by the binding benches (benches/lua.sh, benches/nif_vm.sh) from the repository root:
# which server generation a bench runs under, as the integration tests pick it (tests/harness/common.py).
#   XH_SERVER=prosody-0.12 | prosody-13 | ejabberd-23.01 | ejabberd-24.12
# 0.12 and 23.01 are the system's Debian 12 packages (root /); 13 and 24.12 are the
# bookworm-backports builds scripts/install-servers unpacked under target/servers (XH_SERVERS_DIR).
# Sets $server_root to the installation's root. The interpreter a bench uses is the one that
# installation's own start script runs (the `lua5.4` of prosody's first line, ejabberdctl's ERL=),
# so the figures are those of that server's Lua or VM.
server_root() {
  case $1 in
    prosody-0.12 | ejabberd-23.01) echo / ;;
    prosody-13 | ejabberd-24.12)
      local root="${XH_SERVERS_DIR:-target/servers}/$1"
      [ -f "$root/.packages" ] || { echo "$1 is not installed under $root: run scripts/install-servers" >&2; return 1; }
      (cd "$root" && pwd) ;;
    *) echo "unknown server '$1' (prosody-0.12, prosody-13, ejabberd-23.01, ejabberd-24.12)" >&2; return 1 ;;
  esac
}

# The admin CLI, for what only it does (a customer's domain's owner is set by `domain override`):
# the release build if there is one, else the debug build.
if [ -z "${XH_CLI:-}" ]; then
  for XH_CLI in "$PWD/target/release/xmpp-hosting" "$PWD/target/debug/xmpp-hosting"; do [ -x "$XH_CLI" ] && break; done
fi
export XH_CLI
