%%% Retention of ejabberd's message archives (mod_mam), by the core's rule (issue 13).
%%%
%%% ejabberd has no expiry of its own. With this module loaded beside mod_mam, the core's
%%% housekeeping pass says when a hosted domain's one-to-one (`archive`) or group chat (`muc`)
%%% archive is due; this module then runs the sweep: the core (on its worker, never on a
%%% scheduler) plans each bounded step (cutoff, how many rows, where to start) and keeps the
%%% cursor, the lease (two nodes never run steps of one sweep) and the audit log; this process
%%% only carries each step out, where ejabberd keeps the rows:
%%%   - SQL (SQLite, PostgreSQL, MySQL; the default schema or new_sql_schema): the statements
%%%     the core wrote, run on ejabberd's own connection (ejabberd_sql:sql_query/2). ejabberd's
%%%     SQLite driver sets no busy timeout, so a second connection's write lock would make
%%%     ejabberd's own queries fail at once; queued on its connection a step only delays them.
%%%   - Mnesia: `archive_msg` walked one key (user or room) after the other, the rows of a key
%%%     older than the cutoff deleted in one transaction.
%%% A user may choose a shorter retention for their own archive with the ad-hoc command
%%% `urn:xmpp-hosting:retention` (XEP-0050); admins set it with
%%% `ejabberdctl xmpp_hosting_retention_set DOMAIN user:NAME PERIOD`.
-module(mod_xmpp_hosting_retention).

-behaviour(gen_mod).

-export([start/2, stop/1, reload/3, depends/2, mod_options/1, mod_doc/0]).
-export([sweep/3, run_due/1, backend/1, same_sqlite_file/1]).
-export([adhoc_local_items/4, adhoc_local_commands/4]).

-include("xmpp.hrl").
-include("logger.hrl").
-include("translate.hrl").

-define(NODE, <<"urn:xmpp-hosting:retention">>).
%% How long a sweep's process waits for the next step or the result before it gives up (the core
%% gives up on a step after 30 s and pauses the sweep).
-define(IDLE_MS, 120000).
%% What one housekeeping pass spends on each due archive sweep; an unfinished one resumes at the
%% next pass.
-define(PASS_BUDGET_MS, 2000).

%%%===================================================================
%%% gen_mod
%%%===================================================================

start(Host, _Opts) ->
    ejabberd_hooks:add(adhoc_local_items, Host, ?MODULE, adhoc_local_items, 50),
    ejabberd_hooks:add(adhoc_local_commands, Host, ?MODULE, adhoc_local_commands, 50),
    register_stores(Host),
    ok.

stop(Host) ->
    _ = persistent_term:erase({?MODULE, registered, Host}),
    ejabberd_hooks:delete(adhoc_local_items, Host, ?MODULE, adhoc_local_items, 50),
    ejabberd_hooks:delete(adhoc_local_commands, Host, ?MODULE, adhoc_local_commands, 50),
    ok.

reload(Host, _NewOpts, _OldOpts) ->
    register_stores(Host),
    ok.

depends(_Host, _Opts) ->
    [{mod_xmpp_hosting, hard}, {mod_mam, hard}, {mod_adhoc, soft}].

mod_options(_Host) ->
    [].

mod_doc() ->
    #{desc => ?T("Deletes mod_mam archives older than the hosted domain's retention policy, "
                 "in short steps planned by xmpp-hosting's core.")}.

%%%===================================================================
%%% Where the archives are
%%%===================================================================

%% @doc How the host's archives are swept: {sql, Schema} or mnesia, or why not.
-spec backend(binary()) -> {ok, map()} | {error, binary()}.
backend(Host) ->
    case mod_mam_opt:db_type(Host) of
        sql ->
            Schema = case ejabberd_sql:use_new_schema() of true -> <<"new">>; false -> <<"default">> end,
            case {ejabberd_option:sql_type(Host), Schema, sharing_hosts(Host)} of
                {mssql, _, _} ->
                    {error, <<"archives on Microsoft SQL Server are not swept (no row values)">>};
                {_, <<"default">>, [Other | _]} ->
                    {error, <<"the archive table of ", Host/binary, " is shared with ", Other/binary,
                              " in ejabberd's default SQL schema, where rows do not say their host: "
                              "use new_sql_schema to sweep them">>};
                {sqlite, _, _} ->
                    %% The core checkpoints the file's log from its own connection (see the
                    %% core's ejabberd_archive.rs); the NIF runs in this process, so a relative
                    %% path means the same file.
                    {ok, #{backend => <<"sql">>, schema => Schema, sql_type => <<"sqlite">>,
                           sqlite_file => unicode:characters_to_binary(ejabberd_sql:sqlite_file(Host))}};
                {Type, _, _} ->
                    {ok, #{backend => <<"sql">>, schema => Schema, sql_type => atom_to_binary(Type, utf8)}}
            end;
        mnesia ->
            {ok, #{backend => <<"mnesia">>}};
        Other ->
            {error, iolist_to_binary(io_lib:format("archives stored with ~p are not swept", [Other]))}
    end.

%% Other hosts whose mod_mam writes to the same SQL database as Host's.
sharing_hosts(Host) ->
    Db = fun(H) -> {ejabberd_option:sql_type(H), ejabberd_option:sql_server(H), ejabberd_option:sql_database(H)} end,
    Mine = Db(Host),
    Shared = case Mine of
                 {sqlite, _, undefined} -> false; % one file per host (spool/sqlite/NODE/HOST)
                 _ -> true
             end,
    [H || Shared, H <- ejabberd_option:hosts(), H /= Host, gen_mod:is_loaded(H, mod_mam),
          mod_mam_opt:db_type(H) == sql, Db(H) == Mine].

%% Registers the host's archives once the core hosts the domain (it may be added after ejabberd
%% started): called at every housekeeping pass until it is done.
ensure_registered(Host) ->
    case persistent_term:get({?MODULE, registered, Host}, false) of
        true -> ok;
        false -> register_stores(Host)
    end.

%% Tells the core where this host's archives are, so its housekeeping pass knows when their
%% sweeps are due (kinds of a domain the core does not host are left alone).
register_stores(Host) ->
    case {mod_xmpp_hosting:store(Host), backend(Host)} of
        {{ok, H}, {ok, #{backend := B}}} ->
            Backend = <<"ejabberd_", B/binary>>,
            Muc = [M || gen_mod:is_loaded(Host, mod_muc), M <- gen_mod:get_module_opt_hosts(Host, mod_muc)],
            %% A write nobody waits for (mod_xmpp_hosting:background/3): behind another process's
            %% write lock the core's worker makes it once the lock is free (`later`, done as far as
            %% this pass is concerned) instead of a wait on a dirty scheduler at every pass.
            Results = [mod_xmpp_hosting:background(
                         H, {register_archive_store, Host, Kind, ServerHost, Backend, undefined, <<"archive">>},
                         <<"the ", Kind/binary, " archive of ", ServerHost/binary, " is registered for sweeps">>)
                       || {Kind, ServerHost} <- [{<<"archive">>, Host} | [{<<"muc">>, M} || M <- Muc]]],
            case [E || {error, E} <- Results] of
                [] -> persistent_term:put({?MODULE, registered, Host}, true);
                [{not_found, _} | _] -> ok; % not a hosted domain: nothing to keep a promise about
                [E | _] -> ?WARNING_MSG("xmpp_hosting_retention ~ts: archives not registered: ~p", [Host, E])
            end;
        {{ok, _}, {error, Why}} ->
            ?WARNING_MSG("xmpp_hosting_retention ~ts: archives will not be swept: ~ts", [Host, Why]);
        {{error, _}, _} ->
            ok
    end.

%%%===================================================================
%%% Sweeps
%%%===================================================================

%% @doc Sweeps (or resumes the sweep of) Kind (<<"archive">> or <<"muc">>) of the hosted domain
%% Host, in this process, which carries out the core's steps. Options: dry_run, budget_ms,
%% max_steps, wait (for a part the housekeeping pass is running here). {ok, Record} is the
%% sweep's audit record.
-spec sweep(binary(), binary(), map()) -> {ok, map()} | {error, term()}.
sweep(Host, Kind, Options) ->
    case {mod_xmpp_hosting:store(Host), backend(Host)} of
        {{ok, H}, {ok, Backend}} ->
            %% The core's lease keeps other nodes out; within this node (one store owner) the
            %% housekeeping loop and a command must not run the same sweep at once either.
            %% A command waits for the pass's part (at most its budget); the pass does not wait.
            Lock = {{?MODULE, Host, Kind}, self()},
            Retries = case maps:get(wait, Options, false) of true -> infinity; false -> 0 end,
            case global:set_lock(Lock, [node()], Retries) of
                true ->
                    try
                        Tag = erlang:unique_integer([positive]),
                        Opts = maps:merge(maps:remove(wait, Options), Backend),
                        case xmpp_hosting_nif:retention_sweep_archive(H, Host, Kind, Opts, Tag) of
                            ok -> serve(Host, Tag);
                            {error, _} = Err -> Err
                        end
                    after
                        global:del_lock(Lock, [node()])
                    end;
                false ->
                    {error, {not_allowed, <<"the ", Kind/binary, " sweep of ", Host/binary,
                                            " is running on this node already">>}}
            end;
        {{error, _}, _} -> {error, {not_started, <<"mod_xmpp_hosting is not running on ", Host/binary>>}};
        {_, {error, Why}} -> {error, {not_allowed, Why}}
    end.

%% Carries out the core's steps until its record arrives.
serve(Host, Tag) ->
    receive
        {xmpp_hosting_archive, Id, Request} ->
            Answer = try carry_out(Host, Request)
                     catch Class:Reason:Stack ->
                             ?WARNING_MSG("xmpp_hosting_retention ~ts: step failed: ~p",
                                          [Host, {Class, Reason, Stack}]),
                             #{error => iolist_to_binary(io_lib:format("~p", [{Class, Reason}]))}
                     end,
            xmpp_hosting_nif:archive_answer(Id, Answer),
            serve(Host, Tag);
        {xmpp_hosting_result, Tag, Result} ->
            Result
    after ?IDLE_MS ->
            {error, {timeout, <<"the core's sweep stopped asking for steps">>}}
    end.

carry_out(Host, #{sql := Sql}) ->
    case rows(ejabberd_sql:sql_query(Host, Sql)) of
        {ok, Rows} -> #{rows => Rows};
        {error, Why} -> #{error => Why}
    end;
carry_out(Host, #{batch := Statements, finally := Finally}) ->
    %% One request on ejabberd's connection (sql_bloc): nothing of ejabberd's runs between the
    %% statements, and its own queries run before and after them. Statements stop at the first
    %% that fails; the finally ones run whatever happened. On SQLite the statements go to the
    %% driver as one script (see script/3).
    Sqlite = ejabberd_option:sql_type(Host) == sqlite,
    Run = fun() ->
                  T0 = erlang:monotonic_time(microsecond),
                  Results = case Sqlite of
                                true -> script(Host, Statements, Finally);
                                false ->
                                    try batch(Host, Statements, [])
                                    after [ejabberd_sql:sql_query(Host, F) || F <- Finally]
                                    end
                            end,
                  {Results, erlang:monotonic_time(microsecond) - T0}
          end,
    case ejabberd_sql:sql_bloc(Host, Run) of
        {atomic, {{ok, Results}, Us}} -> #{results => Results, us => Us};
        {atomic, {{error, Why}, _}} -> #{error => Why};
        {aborted, Reason} -> #{error => iolist_to_binary(io_lib:format("~p", [Reason]))};
        {error, Reason} -> #{error => iolist_to_binary(io_lib:format("~p", [Reason]))}
    end;
carry_out(Host, #{everywhere := Sql}) ->
    %% A setting for every connection to the swept file: a host's pool workers share one SQLite
    %% connection (ejabberd_sql opens the file under one registered name a host, whatever
    %% sql_pool_size), but another host whose sql_database is the same file has its own.
    case rows(ejabberd_sql:sql_query(Host, Sql)) of
        {ok, Rows} ->
            [ejabberd_sql:sql_query(H, Sql) || H <- same_sqlite_file(Host)],
            #{rows => Rows};
        {error, Why} ->
            #{error => Why}
    end;
carry_out(_Host, #{step := Step}) ->
    mnesia_step(Step).

%% The other hosts with an SQL pool running on Host's SQLite file (a host without one is not
%% asked: a query would start one).
same_sqlite_file(Host) ->
    File = ejabberd_sql:sqlite_file(Host),
    [H || H <- ejabberd_option:hosts(), H /= Host, ejabberd_option:sql_type(H) == sqlite,
          ejabberd_sql_sup:is_started(H), ejabberd_sql:sqlite_file(H) == File].

%% A step's statements, then the finally ones, as ONE call to the host's SQLite connection
%% (sqlite3:sql_exec_script/2 on the process ejabberd_sql opened the file with): one message to
%% that process and one trip through its driver's thread instead of one of each per statement
%% (and a second, sqlite3:changes/1, after each statement that answers no rows). Measured in a
%% plain node at load 10: 313 us a statement one by one, 683 us for a script of five. The
%% driver stops the script at the first statement that fails: the finally ones then run as a
%% script of their own, as they do when the call itself fails (an exception: the driver's
%% process gone, its call timed out; or an answer that is not a list), where it is unknown
%% which statements ran: ejabberd's connection must not keep the step's `synchronous`.
script(Host, Statements, Finally) ->
    Db = ejabberd_sql:sqlite_db(Host),
    N = length(Statements),
    try sqlite3:sql_exec_script(Db, lists:join(<<";\n">>, Statements ++ Finally)) of
        Answers when is_list(Answers) -> script_answers(Db, N, Finally, Answers);
        Other ->
            finally_script(Db, Finally),
            {error, iolist_to_binary(io_lib:format("~p", [Other]))}
    catch
        Class:Why ->
            finally_script(Db, Finally),
            {error, iolist_to_binary(io_lib:format("~p:~p", [Class, Why]))}
    end.

%% The finally statements on their own, whatever comes of them (the step's error is the one
%% reported).
finally_script(_Db, []) ->
    ok;
finally_script(Db, Finally) ->
    try sqlite3:sql_exec_script(Db, lists:join(<<";\n">>, Finally)) catch _:_ -> ok end,
    ok.

script_answers(Db, N, Finally, Answers) ->
    case lists:splitwith(fun(A) -> not is_script_error(A) end, Answers) of
        {Done, []} when length(Done) >= N ->
            {ok, [script_rows(A) || A <- lists:sublist(Done, N)]};
        {Done, Failed} ->
            case length(Done) < N of
                true -> finally_script(Db, Finally);
                false -> ok
            end,
            case Failed of
                [{error, _Code, Why} | _] -> {error, unicode:characters_to_binary(io_lib:format("~ts", [Why]))};
                [] -> {error, <<"the SQLite driver answered fewer statements than it was given">>}
            end
    end.

is_script_error({error, _, _}) -> true;
is_script_error(_) -> false.

script_rows([{columns, _}, {rows, Rows}]) -> [[integer(V) || V <- tuple_to_list(R)] || R <- Rows];
script_rows(_) -> []. % ok, {rowid, _}: a statement without rows

batch(_Host, [], Acc) ->
    {ok, lists:reverse(Acc)};
batch(Host, [Sql | Rest], Acc) ->
    case rows(ejabberd_sql:sql_query(Host, Sql)) of
        {ok, Rows} -> batch(Host, Rest, [Rows | Acc]);
        {error, _} = Err -> Err
    end.

rows({selected, _Columns, Rows}) -> {ok, [[integer(V) || V <- Row] || Row <- Rows]};
rows({selected, Rows}) -> {ok, [[integer(V) || V <- Row] || Row <- Rows]};
rows({updated, N}) when is_integer(N) -> {ok, [[N]]};
rows({updated, _}) -> {ok, [[0]]};
rows({error, Reason}) -> {error, iolist_to_binary(io_lib:format("~p", [Reason]))}.

%% The core reads numbers; a text answer (PRAGMA journal_mode = WAL answers the mode) is 0,
%% and the core asks what it needs to know as a number.
integer(V) when is_integer(V) -> V;
integer(V) when is_binary(V) ->
    try binary_to_integer(V) catch error:badarg -> 0 end;
integer(_) -> 0.

%% @doc Runs the sweeps the core's housekeeping pass found due (its report's retention_due), for
%% the domains this node hosts, each for at most ?PASS_BUDGET_MS, and those the last call left
%% unfinished (kept in the calling housekeeping process). True when one is still unfinished.
-spec run_due([map()]) -> boolean().
run_due(Due) ->
    Hosts = ejabberd_option:hosts(),
    [ensure_registered(H) || H <- Hosts, gen_mod:is_loaded(H, ?MODULE)],
    Todo = lists:usort([{D, K} || #{domain := D, kind := K} <- Due]
                       ++ case erase({?MODULE, unfinished}) of undefined -> []; L -> L end),
    Unfinished = [{D, K} || {D, K} <- Todo, lists:member(D, Hosts), gen_mod:is_loaded(D, ?MODULE),
                            run_one(D, K) == unfinished],
    put({?MODULE, unfinished}, Unfinished),
    Unfinished /= [].

run_one(Domain, Kind) ->
    case sweep(Domain, Kind, #{budget_ms => ?PASS_BUDGET_MS}) of
        {ok, #{state := <<"running">>, errors := []} = Rec} -> log(Rec), unfinished;
        {ok, Rec} -> log(Rec), done;
        {error, {not_allowed, _}} -> done; % another node runs it
        {error, Err} ->
            ?WARNING_MSG("xmpp_hosting_retention ~ts: ~ts sweep failed: ~p", [Domain, Kind, Err]),
            done
    end.

log(#{text := Text, errors := [_ | _]}) -> ?WARNING_MSG("xmpp_hosting: Retention: ~ts", [Text]);
log(#{text := Text, deleted := N}) when N > 0 -> ?INFO_MSG("xmpp_hosting: Retention: ~ts", [Text]);
log(_) -> ok.

%%%===================================================================
%%% Mnesia: one key of archive_msg ({User, Server}, a bag) after the other
%%%===================================================================

%% Fields of #archive_msg{} by position (24.x added origin_id at the end).
-define(TS, 4).
-define(TYPE, 9).

mnesia_step(#{kind := Kind, host := Host, user := User, cutoff_us := CutoffUs, 'after' := After,
              limit := Limit, delete := Delete} = Step) ->
    Type = case Kind of <<"muc">> -> groupchat; _ -> chat end,
    Servers = case Type of
                  chat -> [Host];
                  groupchat -> [M || gen_mod:is_loaded(Host, mod_muc), M <- gen_mod:get_module_opt_hosts(Host, mod_muc)]
              end,
    Cutoff = misc:usec_to_now(CutoffUs),
    %% A user's part leaves what the domain's part dealt with (older than the domain's cutoff).
    NotBefore = case maps:get(not_before_us, Step, null) of
                    null -> {0, 0, 0};
                    From -> misc:usec_to_now(max(From, 0))
                end,
    case User of
        null ->
            Start = case After of
                        null -> mnesia:dirty_first(archive_msg);
                        Cursor -> binary_to_term(base64:decode(Cursor), [safe])
                    end,
            walk(Start, Servers, Type, Cutoff, Limit, Delete, 0, 0);
        _ ->
            {_, N} = clean({User, Host}, Type, Cutoff, Delete, NotBefore),
            #{matched => N, next => null}
    end.

%% Visits keys from Key on until Limit rows were looked at; the cursor is the next key to visit.
walk('$end_of_table', _Servers, _Type, _Cutoff, _Limit, _Delete, _Visited, Matched) ->
    #{matched => Matched, next => null};
walk(Key, _Servers, _Type, _Cutoff, Limit, _Delete, Visited, Matched) when Visited >= Limit ->
    #{matched => Matched, next => base64:encode(term_to_binary(Key))};
walk({_, Server} = Key, Servers, Type, Cutoff, Limit, Delete, Visited, Matched) ->
    %% The next key first: this one may vanish with its last rows.
    Next = try mnesia:dirty_next(archive_msg, Key)
           catch _:_ -> '$end_of_table' % the key went meanwhile; the next sweep starts over
           end,
    {V, M} = case lists:member(Server, Servers) of
                 true -> clean(Key, Type, Cutoff, Delete, {0, 0, 0});
                 false -> {1, 0}
             end,
    walk(Next, Servers, Type, Cutoff, Limit, Delete, Visited + max(V, 1), Matched + M).

%% The rows of one key: how many there are, and how many of Type older than Cutoff were (or
%% would be) deleted.
clean(Key, Type, Cutoff, Delete, NotBefore) ->
    Rows = mnesia:dirty_read(archive_msg, Key),
    Old = [R || R <- Rows, element(?TYPE, R) == Type, element(?TS, R) < Cutoff, element(?TS, R) >= NotBefore],
    case Delete andalso Old /= [] of
        true ->
            {atomic, ok} = mnesia:transaction(fun() -> lists:foreach(fun mnesia:delete_object/1, Old) end),
            ok;
        false ->
            ok
    end,
    {length(Rows), length(Old)}.

%%%===================================================================
%%% Ad-hoc command: a user's own shorter archive retention
%%%===================================================================

adhoc_local_items(Acc, #jid{luser = User, lserver = Server}, #jid{lserver = Server} = To, Lang) when User /= <<>> ->
    Items = case Acc of {result, I} -> I; _ -> [] end,
    {result, Items ++ [#disco_item{jid = To, node = ?NODE,
                                   name = translate:translate(Lang, ?T("Message archive retention"))}]};
adhoc_local_items(Acc, _From, _To, _Lang) ->
    Acc.

adhoc_local_commands(_Acc, #jid{luser = User, lserver = Server}, #jid{lserver = Server},
                     #adhoc_command{node = ?NODE, action = Action, xdata = XData, lang = Lang} = Request)
  when User /= <<>> ->
    Response = case {Action, XData} of
                   {execute, undefined} -> form(Server, User, Lang);
                   {A, #xdata{type = submit} = X} when A == execute; A == complete -> submit(Server, User, X, Lang);
                   {cancel, _} -> #adhoc_command{status = canceled};
                   _ -> form(Server, User, Lang)
               end,
    xmpp_util:make_adhoc_response(Request, Response);
adhoc_local_commands(Acc, _From, _To, _Request) ->
    Acc.

%% The command is offered on every local host; one the store does not host (removed by the
%% operator, say) or a store not open answers the command with the reason, not a crash.
form(Server, User, Lang) ->
    Read = fun(H) ->
                   case xmpp_hosting_nif:retention_policy(H, Server) of
                       {ok, #{archive := D}} ->
                           case xmpp_hosting_nif:user_archive_retention(H, Server, User) of
                               {ok, P} -> {ok, {D, P}};
                               Err -> Err
                           end;
                       Err -> Err
                   end
           end,
    case with_store(Server, Read) of
        {ok, {Domain, Own}} ->
            #adhoc_command{
               status = executing, actions = #adhoc_actions{execute = complete, complete = true},
               xdata = #xdata{type = form, title = translate:translate(Lang, ?T("Message archive retention")),
                              instructions = [<<"How long your archived messages are kept. ", Server/binary,
                                                " keeps them for ", Domain/binary,
                                                " at most; leave empty to follow the server.">>],
                              fields = [#xdata_field{var = <<"period">>, type = 'text-single',
                                                     label = translate:translate(Lang, ?T("Keep messages for")),
                                                     desc = <<"e.g. 1w, 30d, 1y">>,
                                                     values = [Own]}]}};
        Err ->
            failed(Server, Err, Lang)
    end.

submit(Server, User, #xdata{} = X, Lang) ->
    Value = case xmpp_util:get_xdata_values(<<"period">>, X) of
                [V | _] when V /= <<>> -> V;
                _ -> undefined
            end,
    case with_store(Server, fun(H) -> xmpp_hosting_nif:set_user_archive_retention(H, Server, User, Value) end) of
        {ok, Period} ->
            #adhoc_command{status = completed,
                           notes = [#adhoc_note{type = info, data = <<"Your archive is kept for ", Period/binary>>}]};
        Err ->
            failed(Server, Err, Lang)
    end.

%% A completed command with the core's words, or, with no store open, ejabberd's own.
failed(_Server, {error, {_Code, Msg}}, _Lang) when is_binary(Msg) ->
    #adhoc_command{status = completed, notes = [#adhoc_note{type = error, data = Msg}]};
failed(Server, Err, Lang) ->
    ?WARNING_MSG("xmpp_hosting: archive retention command on ~ts: ~p", [Server, Err]),
    #adhoc_command{status = completed,
                   notes = [#adhoc_note{type = error, data = translate:translate(Lang, ?T("Internal error"))}]}.

with_store(Server, Fun) ->
    case mod_xmpp_hosting:store(Server) of
        {ok, H} -> Fun(H);
        {error, _} = Err -> Err
    end.
