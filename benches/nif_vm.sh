# Sourced by the NIF benches (nif_invites.sh, nif_quotas.sh) from the repository root: a
# temporary code path for a bare Erlang VM with the NIF stub compiled and the library beside it
# (LIB=path to use another build), removed on exit. Sets $work; the bench module goes there too.
# XH_SERVER=ejabberd-23.01 (default) or ejabberd-24.12 picks the VM: the `erl` that server's
# ejabberdctl starts (its ERL= line) with the emulator flags it passes (+K, +P), see benches/server.sh.
# Sets the array erl_vm (the VM command) and $vm_name (what the figures ran on, for the header).
. benches/server.sh
XH_SERVER="${XH_SERVER:-ejabberd-23.01}"
[[ $XH_SERVER == ejabberd-* ]] || { echo "the NIF benches run under an ejabberd, not $XH_SERVER" >&2; exit 2; }
ctl="$(server_root "$XH_SERVER")"; ctl="${ctl%/}/usr/sbin/ejabberdctl"
ctl_var() { sed -n "s/^$1=\"\{0,1\}\([^\"]*\)\"\{0,1\}\$/\1/p" "$ctl" | head -1; }
erl_bin=$(ctl_var ERL); poll=$(ctl_var POLL); procs=$(ctl_var ERL_PROCESSES)
[ -x "$erl_bin" ] || { echo "no ERL= in $ctl" >&2; exit 1; }
erl_vm=("$erl_bin" ${poll:+"+K" "$poll"} ${procs:+"+P" "$procs"})
vm_name="$XH_SERVER's VM ($erl_bin, OTP $("$erl_bin" -noshell -eval 'io:put_chars(erlang:system_info(otp_release)), halt().'))"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
mkdir -p "$work/ebin" "$work/priv/lib"
"$(dirname "$erl_bin")/erlc" -o "$work/ebin" erlang/mod_xmpp_hosting/src/xmpp_hosting_nif.erl
cp "${LIB:-erlang/mod_xmpp_hosting/priv/lib/xmpp_hosting_nif.so}" "$work/priv/lib/xmpp_hosting_nif.so"
