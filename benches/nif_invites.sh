#!/usr/bin/env bash
# Redeem latency through the NIF, as ejabberd calls it, with N invites stored (default 100000).
#   PROFILE=release scripts/build && benches/nif_invites.sh [N] [REDEEMS]
# or, building only the NIF:
#   cargo build -p xmpp-hosting-nif --release && LIB=target/release/libxmpp_hosting_nif.so benches/nif_invites.sh
#   XH_SERVER=ejabberd-24.12 benches/nif_invites.sh ...   on 24.12's VM (default ejabberd-23.01; benches/nif_vm.sh)
# Runs a bare Erlang VM, the one the chosen ejabberd runs on, with xmpp_hosting_nif; prints figures only.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-100000}"; REDEEMS="${2:-10000}"
. benches/nif_vm.sh
cat > "$work/bench.erl" <<'ERL'
-module(bench).
-export([run/3]).
run(Db, N, Redeems) ->
    {ok, H} = xmpp_hosting_nif:open(Db),
    {ok, _} = xmpp_hosting_nif:add_domain(H, <<"bench.example">>),
    T0 = erlang:monotonic_time(microsecond),
    Tokens = list_to_tuple([begin
                                {ok, #{token := T}} = xmpp_hosting_nif:create_invite(H, #{domain => <<"bench.example">>}),
                                T
                            end || _ <- lists:seq(1, N)]),
    Created = (erlang:monotonic_time(microsecond) - T0) / 1.0e6,
    io:format("create via NIF: ~B invites in ~.2f s = ~B/s~n", [N, Created, round(N / Created)]),
    Step = N div Redeems,
    T1 = erlang:monotonic_time(microsecond),
    Lat = [begin
               S = erlang:monotonic_time(microsecond),
               User = <<"user", (integer_to_binary(I))/binary>>,
               {ok, #{decision := <<"allowed">>, id := Id}} =
                   xmpp_hosting_nif:begin_registration(H, #{domain => <<"bench.example">>, username => User,
                                                            token => element(I * Step, Tokens)}),
               ok = xmpp_hosting_nif:finish_registration(H, Id, true),
               erlang:monotonic_time(microsecond) - S
           end || I <- lists:seq(1, Redeems)],
    Total = (erlang:monotonic_time(microsecond) - T1) / 1.0e6,
    Sorted = lists:sort(Lat),
    P = fun(F) -> lists:nth(max(1, round(length(Sorted) * F)), Sorted) end,
    io:format("redeem via NIF with ~B stored: ~B in ~.2f s = ~B/s; p50 ~B us  p99 ~B us  max ~B us~n",
              [N, Redeems, Total, round(Redeems / Total), P(0.5), P(0.99), lists:last(Sorted)]).
ERL
erlc -o "$work" "$work/bench.erl"
echo "# NIF on $vm_name"
"${erl_vm[@]}" -noshell -pa "$work/ebin" -pa "$work" -eval \
  "bench:run(<<\"$work/bench.db\">>, $N, $REDEEMS), halt()."
