# Sourced by the NIF benches (nif_invites.sh, nif_quotas.sh) from the repository root: a
# temporary code path for a bare Erlang VM with the NIF stub compiled and the library beside it
# (LIB=path to use another build), removed on exit. Sets $work; the bench module goes there too.
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
mkdir -p "$work/ebin" "$work/priv/lib"
erlc -o "$work/ebin" erlang/mod_xmpp_hosting/src/xmpp_hosting_nif.erl
cp "${LIB:-erlang/mod_xmpp_hosting/priv/lib/xmpp_hosting_nif.so}" "$work/priv/lib/xmpp_hosting_nif.so"
