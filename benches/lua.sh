#!/usr/bin/env bash
# Runs a Lua binding bench (benches/lua_quotas.lua, benches/lua_invites.lua) under one Prosody
# generation: that Prosody's Lua interpreter (from its start script), its util.* libraries (the
# bench's monotonic clock is Prosody's util.time) and our module from target/lua.
#   PROFILE=release scripts/build
#   XH_SERVER=prosody-13 benches/lua.sh benches/lua_quotas.lua [ARGS]    # default prosody-0.12
# LUA_SO=dir holding xmpp_hosting.so to use another build than target/lua (e.g. a release build
# copied aside, so the servers' debug module stays in place for the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/server.sh
XH_SERVER="${XH_SERVER:-prosody-0.12}"
[[ $XH_SERVER == prosody-* ]] || { echo "benches/lua.sh runs under a Prosody, not $XH_SERVER" >&2; exit 2; }
root=$(server_root "$XH_SERVER")
lib="${root%/}/usr/lib/prosody"
lua=$(sed -n '1s|^#!/usr/bin/env ||p' "${root%/}/usr/bin/prosody")
[ -n "$lua" ] || { echo "no interpreter on the first line of ${root%/}/usr/bin/prosody" >&2; exit 1; }
so_dir="${LUA_SO:-target/lua}"
export LUA_CPATH_5_4="$so_dir/?.so;$lib/?.so;;" LUA_PATH_5_4="$lib/?.lua;;" XH_SERVER
echo "# $XH_SERVER: $lua ($("$lua" -v 2>&1 | head -1)), util from $lib, module from $so_dir"
exec "$lua" "$@"
