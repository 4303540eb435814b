#!/usr/bin/env bash
# Slot decision latency (authorize_upload + commit_keyed_upload) through the NIF, as
# mod_xmpp_hosting_uploads calls it, with 1,000 / 100,000 / 1,000,000 uploads stored.
#   PROFILE=release scripts/build && benches/nif_quotas.sh [SIZES] [DECISIONS]
#   XH_SERVER=ejabberd-24.12 benches/nif_quotas.sh ...   on 24.12's VM (default ejabberd-23.01; benches/nif_vm.sh)
# SIZES is a comma list (default 1000,100000,1000000), DECISIONS per size (default 5000).
# Runs a bare Erlang VM, the one the chosen ejabberd runs on; the store is filled by benches/quotas_seed.sql
# (as benches/lua_quotas.lua does); every limit is set, large enough that each decision is a
# grant; the WAL is checkpointed every 100 ms between decisions (untimed), as the module's timer
# does. Prints a markdown table: figures, not a test.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES="${1:-1000,100000,1000000}"; DECISIONS="${2:-5000}"
. benches/nif_vm.sh
cat > "$work/bench.erl" <<'ERL'
-module(bench).
-export([prepare/1, run/3]).
-define(D, <<"bench.example">>).
prepare(Db) ->
    {ok, H} = xmpp_hosting_nif:open(Db),
    {ok, _} = xmpp_hosting_nif:add_domain(H, ?D),
    %% A customer's domain, as in crates/core/benches/quotas.rs: decisions also read its owner's
    %% claim. Its owner follows a proof or an operator's override, made with the CLI below.
    {ok, _} = xmpp_hosting_nif:claim_domain(H, ?D, <<"owner">>),
    Limits = [{<<"max_file_size">>, <<"1000000000">>}, {<<"user_storage">>, <<"1000000000000">>},
              {<<"domain_storage">>, <<"1000000000000000">>}]
        ++ [{<<"user_", W/binary>>, <<"1000000000000">>} || W <- [<<"daily">>, <<"weekly">>, <<"monthly">>]]
        ++ [{<<"domain_", W/binary>>, <<"1000000000000000">>} || W <- [<<"daily">>, <<"weekly">>, <<"monthly">>]],
    [{ok, _} = xmpp_hosting_nif:set_domain_setting(H, ?D, <<"uploads.", K/binary>>, V) || {K, V} <- Limits],
    ok.
run(Db, N, Decisions) ->
    {ok, H} = xmpp_hosting_nif:open(Db),
    {ok, #{usage := #{stored := 100000}}} = xmpp_hosting_nif:upload_report(H, ?D, <<"measured">>),
    Key = <<"/srv/upload/measured">>,
    Now = fun() -> erlang:monotonic_time(microsecond) end,
    {Lat, _} = lists:mapfoldl(
                 fun(I, LastCheckpoint) ->
                         A = Now(),
                         {ok, #{decision := <<"granted">>}} =
                             xmpp_hosting_nif:authorize_upload(H, ?D, <<"measured">>, 1000, Key, 18000),
                         B = Now(),
                         ok = xmpp_hosting_nif:commit_keyed_upload(
                                H, Key, 1000, <<Key/binary, "/r", (integer_to_binary(I))/binary, "/f">>),
                         C = Now(),
                         Next = case C - LastCheckpoint >= 100000 of
                                    true -> ok = xmpp_hosting_nif:checkpoint(H), Now();
                                    false -> LastCheckpoint
                                end,
                         {{C - A, B - A, C - B}, Next}
                 end, Now(), lists:seq(1, Decisions)),
    Total = lists:sum([T || {T, _, _} <- Lat]) / 1.0e6,
    P = fun(Pos, Q) -> S = lists:sort([element(Pos, L) || L <- Lat]),
                       lists:nth(max(1, round(length(S) * Q)), S) end,
    Max = lists:max([T || {T, _, _} <- Lat]),
    io:format("| ~B | ~B | ~B | ~B | ~B | ~B / ~B | ~B / ~B |~n",
              [N, P(1, 0.5), P(1, 0.99), Max, round(Decisions / Total),
               P(2, 0.5), P(2, 0.99), P(3, 0.5), P(3, 0.99)]).
ERL
erlc -o "$work" "$work/bench.erl"
erl_run() { "${erl_vm[@]}" -noshell -pa "$work/ebin" -pa "$work" -eval "$1, halt()."; }
echo "NIF (xmpp_hosting_nif on $vm_name)," \
     "$DECISIONS decisions per size: authorize_upload + commit_keyed_upload, µs"
echo
echo "| uploads stored | p50 | p99 | max | decisions/s | authorize p50 / p99 | commit p50 / p99 |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
IFS=, read -ra sizes <<< "$SIZES"
for n in "${sizes[@]}"; do
  db="$work/bench-$n.db"
  erl_run "bench:prepare(<<\"$db\">>)"
  "$XH_CLI" --db "$db" domain override bench.example --account owner --reason bench > /dev/null
  sqlite3 -bail "$db" ".parameter set :n $n" ".parameter set :now $(date +%s)" ".parameter set :history 100" \
    ".parameter set :domain 'bench.example'" ".read benches/quotas_seed.sql" > /dev/null
  erl_run "bench:run(<<\"$db\">>, $n, $DECISIONS)"
done
