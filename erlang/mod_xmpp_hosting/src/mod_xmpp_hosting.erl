%%% ejabberd module for xmpp-hosting: opens the shared store and adds the admin commands.
%%%
%%% All rules live in the Rust core (loaded through xmpp_hosting_nif); this module only wires
%%% the store into ejabberd. The store is one SQLite file per deployment, shared with the
%%% `xmpp-hosting` CLI, so whatever the commands write the CLI sees, and the other way round.
%%%
%%% ejabberdctl commands (registered while the module runs on at least one host):
%%%   xmpp_hosting_domain_add DOMAIN      start hosting DOMAIN
%%%   xmpp_hosting_domain_list            the hosted domains, one ASCII name per line
%%%   xmpp_hosting_domain_show DOMAIN     name, unicode_name, created_at, updated_at, settings JSON
%%%   xmpp_hosting_domain_remove DOMAIN   stop hosting DOMAIN
%%%   xmpp_hosting_domain_set DOMAIN SETTING VALUE   e.g. registration.policy open
%%%   xmpp_hosting_domain_claim|verify DOMAIN ACCOUNT, xmpp_hosting_domain_claims,
%%%   xmpp_hosting_dns_check DOMAIN        customers' own domains
%%%   xmpp_hosting_invite_*               invites: see xmpp_hosting_invite_commands
%%%   xmpp_hosting_quota_*                upload limits: see xmpp_hosting_quota_commands
%%%   xmpp_hosting_cert_*                 certificates: see xmpp_hosting_cert_commands
%%%   xmpp_hosting_retention_*            retention: see xmpp_hosting_retention_commands
%%% Failures use ejabberd's extended error form {error, Type, 1, Message}: ejabberdctl prints
%%% "Error: Type: Message" and exits 1; Type is the core's error code (invalid_domain, store,
%%% ...), except that already_exists and not_found become ejabberd's conflict and not_exists,
%%% which mod_http_api turns into 409 and 404.
-module(mod_xmpp_hosting).

-behaviour(gen_mod).

-export([start/2, stop/1, reload/3, depends/2, mod_options/1, mod_opt_type/1, mod_doc/0]).
%% For other modules (hooks added later) and tests.
-export([store/1, remove_user/2, background/3]).
%% For xmpp_hosting_retention_commands' uploads sweep.
-export([upload_roots/0]).
%% For mod_xmpp_hosting_uploads' sweep_interval.
-export([check_interval/4]).
%% The reporter of background writes (a registered process; exported for code upgrades).
-export([report_loop/0]).
%% For the commands of other files (xmpp_hosting_invite_commands, xmpp_hosting_quota_commands).
-export([run_command/2]).
%% Command callbacks.
-export([domain_add/1, domain_list/0, domain_show/1, domain_remove/1, domain_set/3,
         domain_claim/2, domain_verify/2, domain_claims/0, dns_check/1]).

-include("xmpp.hrl").
-include("logger.hrl").
-include("translate.hrl").
-include("ejabberd_commands.hrl").

-define(DB_FILE, "xmpp_hosting.db").
-define(DNS_WAIT_MS, 120000).
%% How long the housekeeping loop waits for a pass's report (re-checking a thousand domains is
%% bounded by the DNS timeouts, well under this).
-define(HOUSEKEEPING_WAIT_MS, 600000).
%% When the pass could not run (store closed, a failure before it started): try again then.
-define(RETRY_S, 60).

%%%===================================================================
%%% gen_mod
%%%===================================================================

start(Host, Opts) ->
    case ejabberd_api() of
        {ok, Api} ->
            ?INFO_MSG("xmpp_hosting ~ts: ~ts", [Host, Api]),
            start_store(Host, Opts);
        {error, Unsupported} ->
            ?CRITICAL_MSG("xmpp_hosting ~ts: ~ts: not loading", [Host, Unsupported]),
            {error, unsupported_ejabberd}
    end.

%% Which ejabberd this is, and the API used on it. The same calls work on every supported
%% version (start/2 adds the hooks and returns ok, ejabberd_commands:register_commands/1, the
%% hooks' arguments), so there is one code path; a version the module was not built and tested
%% for is refused rather than left half-working. The version is the ejabberd application's.
ejabberd_api() ->
    Vsn = case application:get_key(ejabberd, vsn) of
              {ok, V} -> V;
              undefined -> "unknown"
          end,
    Series = case re:run(Vsn, "^([0-9]+)\\.([0-9]+)", [{capture, all_but_first, list}]) of
                 {match, [Y, M]} -> {list_to_integer(Y), list_to_integer(M)};
                 nomatch -> unknown
             end,
    if
        Series =/= unknown, Series >= {23, 1}, Series =< {24, 12} ->
            {ok, io_lib:format("ejabberd ~ts on OTP ~ts: one code path for 23.01 to 24.12 (gen_mod "
                               "start/2 returning ok, hooks added in start, "
                               "ejabberd_commands:register_commands/1)",
                               [Vsn, erlang:system_info(otp_release)])};
        true ->
            {error, io_lib:format("xmpp-hosting supports ejabberd 23.01 to 24.12; this is ejabberd ~ts", [Vsn])}
    end.

start_store(Host, Opts) ->
    Path = database_path(gen_mod:get_opt(database, Opts)),
    case open_store(Path) of
        {ok, Handle} ->
            case check_intervals(Host, Handle, Opts) of
                ok -> use_store(Host, Path, Handle);
                {error, _} = Err -> Err
            end;
        {error, Reason} ->
            ?ERROR_MSG("xmpp_hosting ~ts: cannot open store ~ts: ~ts",
                       [Host, Path, format_reason(Reason)]),
            {error, Reason}
    end.

use_store(Host, Path, Handle) ->
    stop_housekeeping(Host),
    persistent_term:put(key(Host), {Path, Handle}),
    %% One loop runs the core's housekeeping pass (checkpoints, re-checks of customers'
    %% domains, the invite purge, the upload ledger's upkeep) on the core's worker.
    start_housekeeping(Host),
    warn_if_other_database(Host, Path),
    ejabberd_hooks:add(remove_user, Host, ?MODULE, remove_user, 50),
    %% Registering again when another host already did is harmless: the records are equal.
    ejabberd_commands:register_commands(get_commands_spec()),
    ?INFO_MSG("xmpp_hosting ~ts: store ~ts (core ~ts)",
              [Host, Path, xmpp_hosting_nif:version()]),
    ok.

%% The interval options are judged by the core (econf's timeout takes '30 days', the core's
%% schedule at most a week): one it refuses would make every housekeeping pass fail to start,
%% all of housekeeping stopped, so the module does not start with it, as ejabberd refuses an
%% invalid option, and says why in the core's words; at a reload it says so and housekeeping
%% keeps its schedule.
check_intervals(Host, Handle, Opts) ->
    check_all([fun() -> check_interval(Host, Handle, Step, Opt, gen_mod:get_opt(Opt, Opts)) end
               || {Step, Opt} <- interval_options()]).

check_all([]) -> ok;
check_all([Check | Rest]) ->
    case Check() of
        ok -> check_all(Rest);
        Err -> Err
    end.

%% @doc Step's interval Ms (milliseconds; undefined: the core's default) checked by the core;
%% {error, Text} logged as critical, naming Host and the option.
-spec check_interval(binary(), atom(), atom(), undefined | non_neg_integer()) -> ok | {error, binary()}.
check_interval(Host, Step, Opt, Ms) ->
    case store(Host) of
        {ok, Handle} -> check_interval(Host, Handle, Step, Opt, Ms);
        {error, not_started} -> ok % mod_xmpp_hosting refused to start and said why
    end.

check_interval(_Host, _Handle, _Step, _Opt, undefined) ->
    ok;
check_interval(Host, Handle, Step, Opt, Ms) ->
    case xmpp_hosting_nif:housekeeping_new(Handle, #{Step => Ms / 1000}) of
        {ok, _} -> ok;
        {error, Err} ->
            Why = case Err of
                      {_Code, Message} when is_binary(Message) -> Message;
                      Other -> iolist_to_binary(io_lib:format("~p", [Other]))
                  end,
            Text = <<(atom_to_binary(Opt, utf8))/binary, ": ", Why/binary>>,
            ?CRITICAL_MSG("xmpp_hosting ~ts: option ~ts", [Host, Text]),
            {error, Text}
    end.

interval_options() ->
    [{checkpoint, checkpoint_interval}, {domain_recheck, recheck_interval},
     {invite_purge, purge_interval}, {certificates, certificates_interval}].

stop(Host) ->
    case gen_mod:is_loaded_elsewhere(Host, ?MODULE) of
        false -> ejabberd_commands:unregister_commands(get_commands_spec());
        true -> ok
    end,
    ejabberd_hooks:delete(remove_user, Host, ?MODULE, remove_user, 50),
    stop_housekeeping(Host),
    case gen_mod:is_loaded_elsewhere(Host, ?MODULE) of
        false -> stop_reporter();
        true -> ok
    end,
    %% The handle closes when the last process holding it drops it.
    _ = persistent_term:erase(key(Host)),
    ok.

%% @doc The remove_user hook: a removed account leaves nothing acting in its name. Its invites
%% are revoked and its upload exceptions dropped, so a later account of the same name inherits
%% neither. A write nobody waits for: behind another process's lock the core's worker makes it
%% once the lock is free (see background/3).
remove_user(User, Server) ->
    Account = <<User/binary, "@", Server/binary>>,
    case background(Server, {account_removed, Server, User}, <<"the removed account ", Account/binary, " is forgotten">>) of
        {ok, Removal} -> report_removal(Account, Removal);
        later -> ok;
        {error, not_started} -> ok;
        {error, Err} ->
            ?ERROR_MSG("xmpp_hosting: cannot forget removed account ~ts: ~p", [Account, Err])
    end.

report_removal(_Account, #{invites_revoked := 0, upload_limits_cleared := false}) -> ok;
report_removal(Account, #{invites_revoked := N, upload_limits_cleared := Cleared}) ->
    ?INFO_MSG("xmpp_hosting: account ~ts removed: ~B invite(s) revoked~ts",
              [Account, N, case Cleared of true -> ", upload exceptions dropped"; false -> "" end]).

%%%===================================================================
%%% Writes nobody waits for (a removed account forgotten, a login counted, the host added at
%%% start, an upload counted or its reservation given back). No scheduler waits for another
%%% process's lock on the store: the core tries the write at once without waiting, and when the
%%% CLI, Prosody on the same store or a backup holds the lock, its worker makes it once the lock
%%% is free, retried for minutes, as of the time it was asked. The outcome of such a late write
%%% goes to one reporter process, which logs it. The core also hands a write to its worker when
%%% the handle's connection is in use by another call of this node (all schedulers share it):
%%% nothing is held elsewhere then, so that is logged at debug level only.
%%%===================================================================

%% @doc Write (see xmpp_hosting_nif:background/4) on Host's store: {ok, Result} made now,
%% `later` (the reporter logs the outcome; What says the write in the log, e.g. <<"the login of
%% alice@example.org is counted">>), or {error, Err} ({error, not_started} without a store).
-spec background(binary() | xmpp_hosting_nif:handle(), tuple(), binary()) -> {ok, term()} | later | {error, term()}.
background(Host, Write, What) when is_binary(Host) ->
    case store(Host) of
        {ok, H} -> background(H, Write, What);
        {error, _} = Err -> Err
    end;
background(H, Write, What) ->
    case xmpp_hosting_nif:background(H, Write, reporter(), What) of
        {later, lock_held_elsewhere} ->
            ?INFO_MSG("xmpp_hosting: another process holds the store's write lock: ~ts once it is free", [What]),
            later;
        {later, connection_in_use} ->
            ?DEBUG("xmpp_hosting: the store's connection is in use by another call of this node: "
                   "~ts on the core's worker", [What]),
            later;
        Other -> Other
    end.

-define(REPORTER, xmpp_hosting_background).

reporter() ->
    case whereis(?REPORTER) of
        undefined ->
            Pid = spawn(fun() -> report_loop() end),
            try register(?REPORTER, Pid) of
                true -> Pid
            catch error:badarg -> % another process registered one first
                    exit(Pid, kill),
                    reporter()
            end;
        Pid -> Pid
    end.

stop_reporter() ->
    case whereis(?REPORTER) of
        undefined -> ok;
        Pid -> exit(Pid, kill), ok
    end.

report_loop() ->
    receive
        {xmpp_hosting_background, Kind, What, Why, Result} ->
            try report(Kind, What, Why, Result)
            catch _:_ -> ok
            end;
        _ -> ok
    end,
    ?MODULE:report_loop().

%% Why: lock_held_elsewhere (the start was logged at info level, so is the end) or
%% connection_in_use (another call of this node had the connection: a success is not news).
report(ensure_hosted, _What, _Why, {ok, #{log := Log}}) when is_binary(Log) ->
    ?INFO_MSG("xmpp_hosting: ~ts", [Log]);
report(account_removed, What, lock_held_elsewhere, {ok, #{invites_revoked := N}}) ->
    ?INFO_MSG("xmpp_hosting: done once the store's write lock was free: ~ts (~B invite(s) revoked)", [What, N]);
report(_Kind, What, lock_held_elsewhere, {ok, _}) ->
    ?INFO_MSG("xmpp_hosting: done once the store's write lock was free: ~ts", [What]);
report(_Kind, What, _Why, {ok, _}) ->
    ?DEBUG("xmpp_hosting: done on the core's worker: ~ts", [What]);
report(register_archive_store, What, _Why, {error, {not_found, _}}) ->
    %% Not a hosted domain: nothing to keep a promise about.
    ?DEBUG("xmpp_hosting: not registered, not hosted: ~ts", [What]);
report(commit_keyed_upload, What, _Why, {error, {not_found, _}}) ->
    %% A slot granted before this module was loaded, or for a domain it does not host.
    ?DEBUG("xmpp_hosting: not counted, no reservation: ~ts", [What]);
report(_Kind, What, _Why, {error, {_Code, Message}}) ->
    ?ERROR_MSG("xmpp_hosting: not done: ~ts: ~ts", [What, Message]);
report(_Kind, What, _Why, Other) ->
    ?ERROR_MSG("xmpp_hosting: not done: ~ts: ~p", [What, Other]).

%%%===================================================================
%%% Housekeeping: one loop per host; the first host with a store runs the pass for all (they
%%% share one store). The core decides what is due, runs it on its worker and answers with a
%%% finished report: log lines, notices for the admins, and when to come back. This module
%%% only delivers it, and answers the core's questions about accounts from ejabberd's own store.
%%%===================================================================

start_housekeeping(Host) ->
    Pid = spawn(fun() -> housekeeping_loop(Host, undefined, 1) end),
    persistent_term:put(housekeeping_key(Host), Pid).

stop_housekeeping(Host) ->
    case persistent_term:get(housekeeping_key(Host), undefined) of
        undefined -> ok;
        Pid ->
            exit(Pid, kill),
            _ = persistent_term:erase(housekeeping_key(Host)),
            ok
    end.

%% Sleeps until the next pass is due, as the last report said. HK is the core's housekeeping
%% object with the schedule it was made for, made again when the options change (an upload
%% host that starts after this module adds its sweep interval).
housekeeping_loop(Host, HK, Seconds) ->
    timer:sleep(timer:seconds(Seconds)),
    {HK1, Next} = try housekeep(Host, HK)
                  catch Class:Reason:Stack ->
                          ?WARNING_MSG("xmpp_hosting: housekeeping failed: ~p", [{Class, Reason, Stack}]),
                          {undefined, ?RETRY_S}
                  end,
    housekeeping_loop(Host, HK1, Next).

housekeep(Host, HK) ->
    case [H || H <- ejabberd_option:hosts(), {ok, _} <- [store(H)]] of
        [Host | _] ->
            case housekeeping(Host, HK) of
                {ok, {_, Obj} = HK1} -> {HK1, run_housekeeping(Host, Obj)};
                {error, Err} when HK =/= undefined ->
                    %% Options the core refuses (the reload said so): the schedule stays.
                    ?DEBUG("xmpp_hosting: housekeeping keeps its schedule: ~p", [Err]),
                    {_, Obj} = HK,
                    {HK, run_housekeeping(Host, Obj)};
                {error, {_Code, Message}} when is_binary(Message) ->
                    ?ERROR_MSG("xmpp_hosting: housekeeping cannot start: ~ts", [Message]),
                    {undefined, ?RETRY_S};
                {error, Err} ->
                    ?ERROR_MSG("xmpp_hosting: housekeeping cannot start: ~p", [Err]),
                    {undefined, ?RETRY_S}
            end;
        _ -> {HK, ?RETRY_S} % another host runs the pass on the shared store
    end.

%% The core's schedule, changed by this module's options and mod_xmpp_hosting_uploads'
%% sweep_interval (milliseconds here, seconds for the core); unset, the core's defaults apply.
schedule_overrides(Host) ->
    Own = [{Step, gen_mod:get_module_opt(Host, ?MODULE, Opt)} || {Step, Opt} <- interval_options()],
    Uploads = [{upload_upkeep, gen_mod:get_module_opt(H, mod_xmpp_hosting_uploads, sweep_interval)}
               || H <- ejabberd_option:hosts(), gen_mod:is_loaded(H, mod_xmpp_hosting_uploads)],
    Sweep = case [Ms || {_, Ms} <- Uploads, is_integer(Ms)] of
                [] -> [];
                Ms -> [{upload_upkeep, lists:min(Ms)}]
            end,
    maps:from_list([{Step, Ms / 1000} || {Step, Ms} <- Own ++ Sweep, is_integer(Ms)]).

housekeeping(Host, HK) ->
    Overrides = schedule_overrides(Host),
    case HK of
        {Overrides, _} -> {ok, HK};
        _ ->
            {ok, H} = store(Host),
            case xmpp_hosting_nif:housekeeping_new(H, Overrides) of
                {ok, Obj} ->
                    %% Its certificate step installs into certificates_dir (issue 14).
                    _ = xmpp_hosting_cert_commands:set_housekeeping_target(Obj, Host),
                    case HK of
                        undefined -> xmpp_hosting_cert_commands:load_installed(Host);
                        _ -> ok
                    end,
                    {ok, {Overrides, Obj}};
                {error, _} = Err -> Err
            end
    end.

%% One pass; returns the seconds until the next.
run_housekeeping(Host, HK) ->
    Tag = erlang:unique_integer([positive]),
    case xmpp_hosting_nif:housekeeping_run(HK, upload_roots(), account_answers(HK), Tag) of
        ok ->
            receive
                {xmpp_hosting_result, Tag, {ok, #{log := Log, notices := Notices, next_in := Next} = Report}} ->
                    [log_line(Line) || Line <- Log],
                    [deliver(Host, Notice) || Notice <- Notices],
                    case Report of
                        #{certificates := #{installed := #{} = Installed}} ->
                            xmpp_hosting_cert_commands:apply_install(Installed);
                        _ -> ok
                    end,
                    %% Archive sweeps the core found due run here, in ejabberd's storage
                    %% (mod_xmpp_hosting_retention); one cut short by its budget resumes soon.
                    case mod_xmpp_hosting_retention:run_due(maps:get(retention_due, Report, [])) of
                        true -> min(Next, 1);
                        false -> Next
                    end;
                {xmpp_hosting_result, Tag, {error, Err}} ->
                    ?WARNING_MSG("xmpp_hosting: housekeeping failed: ~p", [Err]),
                    ?RETRY_S
            after ?HOUSEKEEPING_WAIT_MS ->
                    ?WARNING_MSG("xmpp_hosting: no housekeeping report after ~B s", [?HOUSEKEEPING_WAIT_MS div 1000]),
                    ?RETRY_S
            end;
        {error, Err} ->
            ?WARNING_MSG("xmpp_hosting: housekeeping failed to start: ~p", [Err]),
            ?RETRY_S
    end.

log_line(#{level := <<"debug">>, text := Text}) -> ?DEBUG("xmpp_hosting: ~ts", [Text]);
log_line(#{level := <<"info">>, text := Text}) -> ?INFO_MSG("xmpp_hosting: ~ts", [Text]);
log_line(#{text := Text}) -> ?WARNING_MSG("xmpp_hosting: ~ts", [Text]).

%% The directories of the hosts' uploads, for the sweep of deleted files.
upload_roots() ->
    lists:usort([Root || H <- ejabberd_option:hosts(), gen_mod:is_loaded(H, mod_xmpp_hosting_uploads),
                         {ok, Root} <- [mod_xmpp_hosting_uploads:upload_root(H)]]).

%% Registrations that never finished, answered from ejabberd's account store (for this
%% server's hosts only: another server's accounts are not ours to vouch for).
account_answers(HK) ->
    case xmpp_hosting_nif:housekeeping_stale_registrations(HK) of
        {ok, Stale} ->
            Hosts = ejabberd_option:hosts(),
            [#{id => Id, account_exists => ejabberd_auth:user_exists(User, Domain)}
             || #{id := Id, domain := Domain, username := User} <- Stale, lists:member(Domain, Hosts)];
        {error, Err} ->
            ?WARNING_MSG("xmpp_hosting: cannot list unfinished registrations: ~p", [Err]),
            []
    end.

%% A notice of the core's, to the people it names: `admins` are the JIDs of the `notify`
%% option (by default the host's admins), written to from the host.
deliver(Host, #{to := <<"admins">>, text := Text}) ->
    From = jid:make(Host),
    [ejabberd_router:route(#message{from = From, to = To, type = chat, body = xmpp:mk_text(Text)})
     || To <- notify_jids(Host)],
    ok;
%% `owner`: the domain's owner (the account that proved it), from the domain when it is a host.
deliver(Host, #{to := <<"owner">>, account := Owner, domain := Domain, text := Text}) ->
    try jid:decode(Owner) of
        #jid{luser = <<_, _/binary>>} = To ->
            From = jid:make(case lists:member(Domain, ejabberd_option:hosts()) of true -> Domain; false -> Host end),
            ejabberd_router:route(#message{from = From, to = To, type = chat, body = xmpp:mk_text(Text)});
        _ -> ok
    catch _:_ -> ok
    end,
    ok;
deliver(_Host, _Notice) ->
    ok.

notify_jids(Host) ->
    case gen_mod:get_module_opt(Host, ?MODULE, notify) of
        admins -> admin_jids(Host);
        JIDs -> JIDs
    end.

%% The single users named in the `admin` ACL of the host and of the whole server (regular
%% expressions and other kinds of rule name no one to write to).
admin_jids(Host) ->
    Rules = lists:append([Rule || Scope <- [Host, global], {_, Rule} <- ets:lookup(acl, {admin, Scope})]),
    lists:usort([jid:make(U, S) || {user, {U, S}} <- Rules] ++ [jid:make(U, Host) || {user, U} <- Rules, is_binary(U)]).

%% Starts a DNS call on the core's worker and waits, in this process only, for its answer.
dns_call(Host, Start) ->
    case store(Host) of
        {ok, H} ->
            Tag = erlang:unique_integer([positive]),
            case Start(H, Tag) of
                ok ->
                    receive
                        {xmpp_hosting_result, Tag, Result} -> Result
                    after ?DNS_WAIT_MS -> {error, {timeout, <<"no answer from the DNS worker">>}}
                    end;
                {error, _} = Err -> Err
            end;
        {error, not_started} -> {error, {not_started, <<"mod_xmpp_hosting is not running">>}}
    end.

reload(Host, NewOpts, OldOpts) ->
    NewPath = database_path(gen_mod:get_opt(database, NewOpts)),
    %% The housekeeping loop reads the other options at every pass.
    _ = OldOpts,
    case persistent_term:get(key(Host), undefined) of
        {NewPath, Handle} ->
            %% Refused, it is logged; the housekeeping loop keeps the schedule it has. (An error
            %% returned here would abort the reload of the modules after this one.)
            _ = check_intervals(Host, Handle, NewOpts),
            ok;
        _ -> start(Host, NewOpts)
    end.

depends(_Host, _Opts) ->
    [].

mod_opt_type(database) ->
    econf:either(econf:enum([undefined]), econf:binary());
mod_opt_type(recheck_interval) ->
    econf:either(econf:enum([undefined]), econf:timeout(second));
mod_opt_type(purge_interval) ->
    econf:either(econf:enum([undefined]), econf:timeout(second));
mod_opt_type(checkpoint_interval) ->
    econf:either(econf:enum([undefined]), econf:timeout(second));
mod_opt_type(certificates_dir) ->
    econf:either(econf:enum([undefined]), econf:binary());
mod_opt_type(certificates_interval) ->
    econf:either(econf:enum([undefined]), econf:timeout(second));
mod_opt_type(notify) ->
    econf:either(econf:enum([admins]), econf:list(econf:jid())).

mod_options(_Host) ->
    [{database, undefined}, {recheck_interval, undefined}, {purge_interval, undefined},
     {checkpoint_interval, undefined}, {certificates_dir, undefined}, {certificates_interval, undefined},
     {notify, admins}].

mod_doc() ->
    #{desc =>
          ?T("Hosting chores for XMPP providers (hosted domains first) from the "
             "xmpp-hosting store, a SQLite file shared with the 'xmpp-hosting' "
             "command line tool. Adds the ejabberdctl commands "
             "'xmpp_hosting_domain_add', 'xmpp_hosting_domain_list', "
             "'xmpp_hosting_domain_show' and 'xmpp_hosting_domain_remove'."),
      opts =>
          [{database,
            #{value => ?T("Path"),
              desc =>
                  ?T("The store file. Every host (and the command line tool) should use "
                     "the same file. The default is 'xmpp_hosting.db' in the spool "
                     "directory (SPOOL_DIR of ejabberdctl.cfg).")}},
           {recheck_interval,
            #{value => "timeout()",
              desc => ?T("How often customers' verified domains whose time has come are "
                         "checked again. The default is the core's schedule (10 minutes).")}},
           {purge_interval,
            #{value => "timeout()",
              desc => ?T("How often invites nobody can use any more are deleted. The default "
                         "is the core's schedule (1 hour).")}},
           {checkpoint_interval,
            #{value => "timeout()",
              desc => ?T("How often the store's write-ahead log is moved into the database. "
                         "The default is the core's schedule (5 seconds).")}},
           {notify,
            #{value => ?T("admins | [JID]"),
              desc => ?T("Who gets a chat message when a customer's domain loses its "
                         "verification record: 'admins' (the default) are the users named "
                         "in the 'admin' ACL, or a list of JIDs.")}}]}.

%%%===================================================================
%%% API
%%%===================================================================

%% @doc The store handle of a host where the module runs, for calls into xmpp_hosting_nif.
-spec store(binary()) -> {ok, xmpp_hosting_nif:handle()} | {error, not_started}.
store(Host) ->
    case persistent_term:get(key(Host), undefined) of
        {_Path, Handle} -> {ok, Handle};
        undefined -> {error, not_started}
    end.

%%%===================================================================
%%% Commands
%%%===================================================================

get_commands_spec() ->
    domain_commands() ++ xmpp_hosting_invite_commands:spec() ++ xmpp_hosting_quota_commands:spec()
        ++ xmpp_hosting_cert_commands:spec() ++ xmpp_hosting_retention_commands:spec().

domain_commands() ->
    [#ejabberd_commands{name = xmpp_hosting_domain_add, tags = [xmpp_hosting],
                        desc = "Start hosting a domain",
                        longdesc = "Unicode names are stored in their IDNA ASCII form.",
                        policy = admin,
                        module = ?MODULE, function = domain_add,
                        args = [{domain, binary}],
                        args_desc = ["Domain name"],
                        args_example = [<<"customer.example">>],
                        result = {res, restuple},
                        result_desc = "The stored (ASCII) name",
                        result_example = {ok, <<"Added domain customer.example">>}},
     #ejabberd_commands{name = xmpp_hosting_domain_list, tags = [xmpp_hosting],
                        desc = "List the hosted domains",
                        policy = admin,
                        module = ?MODULE, function = domain_list,
                        args = [],
                        result = {domains, {list, {domain, string}}},
                        result_desc = "ASCII names, ordered",
                        result_example = [<<"customer.example">>, <<"xn--bcher-kva.example">>]},
     #ejabberd_commands{name = xmpp_hosting_domain_show, tags = [xmpp_hosting],
                        desc = "Show a hosted domain",
                        policy = admin,
                        module = ?MODULE, function = domain_show,
                        args = [{domain, binary}],
                        args_desc = ["Domain name"],
                        args_example = [<<"customer.example">>],
                        result = {domain, {tuple, [{name, string},
                                                   {unicode_name, string},
                                                   {created_at, integer},
                                                   {updated_at, integer},
                                                   {settings, string}]}},
                        result_desc = "Name, Unicode name, Unix times of creation and last "
                                      "change, settings as JSON"},
     #ejabberd_commands{name = xmpp_hosting_domain_remove, tags = [xmpp_hosting],
                        desc = "Stop hosting a domain and forget what is stored for it",
                        policy = admin,
                        module = ?MODULE, function = domain_remove,
                        args = [{domain, binary}],
                        args_desc = ["Domain name"],
                        args_example = [<<"customer.example">>],
                        result = {res, restuple},
                        result_example = {ok, <<"Removed domain customer.example">>}},
     #ejabberd_commands{name = xmpp_hosting_domain_set, tags = [xmpp_hosting],
                        desc = "Change one setting of a hosted domain",
                        longdesc = "SETTING is a dotted path such as registration.policy (invite, "
                                   "open or closed); VALUE is JSON (3, true, [\"a\"]) or a plain string.",
                        policy = admin,
                        module = ?MODULE, function = domain_set,
                        args = [{domain, binary}, {setting, binary}, {value, binary}],
                        args_example = [<<"customer.example">>, <<"registration.policy">>, <<"open">>],
                        result = {res, restuple},
                        result_example = {ok, <<"customer.example: registration.policy = open">>}},
     #ejabberd_commands{name = xmpp_hosting_domain_claim, tags = [xmpp_hosting],
                        desc = "Start a customer's claim on a domain; prints the DNS record that proves it",
                        policy = admin,
                        module = ?MODULE, function = domain_claim,
                        args = [{domain, binary}, {account, binary}],
                        args_example = [<<"her-name.org">>, <<"alice">>],
                        result = {res, restuple},
                        result_example = {ok, <<"her-name.org claimed for alice (pending). Create ...">>}},
     #ejabberd_commands{name = xmpp_hosting_domain_verify, tags = [xmpp_hosting],
                        desc = "Look for a claim's proof in DNS now and record the outcome",
                        policy = admin,
                        module = ?MODULE, function = domain_verify,
                        args = [{domain, binary}, {account, binary}],
                        args_example = [<<"her-name.org">>, <<"alice">>],
                        result = {res, restuple},
                        result_example = {ok, <<"her-name.org for alice: verified">>}},
     #ejabberd_commands{name = xmpp_hosting_domain_claims, tags = [xmpp_hosting],
                        desc = "List customers' claims with their verification state",
                        policy = admin,
                        module = ?MODULE, function = domain_claims,
                        args = [],
                        result = {claims, {list, {claim, string}}},
                        result_desc = "One line per claim: domain, account, state and what the last check found"},
     #ejabberd_commands{name = xmpp_hosting_dns_check, tags = [xmpp_hosting],
                        desc = "Check the DNS records a customer's domain needs",
                        policy = admin,
                        module = ?MODULE, function = dns_check,
                        args = [{domain, binary}],
                        args_example = [<<"her-name.org">>],
                        result = {rows, {list, {row, string}}},
                        result_desc = "One line per record: name, type, result, expected, found"}].

domain_add(Name) ->
    with_store(
      fun(H) ->
              case xmpp_hosting_nif:add_domain(H, Name) of
                  {ok, #{name := Ascii}} -> {ok, <<"Added domain ", Ascii/binary>>};
                  {error, Err} -> command_error(Err)
              end
      end).

domain_list() ->
    with_store(
      fun(H) ->
              case xmpp_hosting_nif:domains(H) of
                  {ok, Domains} -> [N || #{name := N} <- Domains];
                  {error, Err} -> command_error(Err)
              end
      end).

domain_show(Name) ->
    with_store(
      fun(H) ->
              case xmpp_hosting_nif:domain(H, Name) of
                  {ok, #{name := N, unicode_name := U, created_at := C, updated_at := M,
                         settings := S}} ->
                      {N, U, C, M, jiffy:encode(S)};
                  {ok, undefined} ->
                      command_error({not_found, <<"domain not found: ", Name/binary>>});
                  {error, Err} -> command_error(Err)
              end
      end).

domain_remove(Name) ->
    with_store(
      fun(H) ->
              case xmpp_hosting_nif:remove_domain(H, Name) of
                  ok -> {ok, <<"Removed domain ", Name/binary>>};
                  {error, Err} -> command_error(Err)
              end
      end).

domain_set(Name, Setting, Value) ->
    with_store(
      fun(H) ->
              case xmpp_hosting_nif:set_domain_setting(H, Name, Setting, Value) of
                  {ok, #{name := N}} -> {ok, <<N/binary, ": ", Setting/binary, " = ", Value/binary>>};
                  {error, Err} -> command_error(Err)
              end
      end).

%% The claim, verify and claims texts are the core's (`text`), the same as prosodyctl and the CLI print.
domain_claim(Domain, Account) ->
    with_store(
      fun(H) ->
              case xmpp_hosting_nif:claim_domain(H, Domain, Account) of
                  {ok, #{text := Text}} -> {ok, Text};
                  {error, Err} -> command_error(Err)
              end
      end).

domain_verify(Domain, Account) ->
    with_host(
      fun(Host) ->
              case dns_call(Host, fun(H, Tag) -> xmpp_hosting_nif:verify_domain(H, Domain, Account, Tag) end) of
                  {ok, #{text := Text}} -> {ok, Text};
                  {error, Err} -> command_error(Err)
              end
      end).

domain_claims() ->
    with_store(
      fun(H) ->
              case xmpp_hosting_nif:claims(H, undefined) of
                  {ok, Claims} -> [Text || #{text := Text} <- Claims];
                  {error, Err} -> command_error(Err)
              end
      end).

dns_check(Domain) ->
    with_host(
      fun(Host) ->
              case dns_call(Host, fun(H, Tag) -> xmpp_hosting_nif:dns_test(H, Domain, Tag) end) of
                  {ok, #{rows := Rows}} -> [row_line(R) || R <- Rows];
                  {error, Err} -> command_error(Err)
              end
      end).

row_line(#{name := N, type := T, status := S, expected := E, found := F}) ->
    Found = case F of
                [] -> <<"nothing">>;
                _ -> lists:join(<<", ">>, F)
            end,
    iolist_to_binary([N, " ", T, " ", S, " expected ", E, ", found ", Found]).

%%%===================================================================
%%% Internal
%%%===================================================================

%% Like with_store/1, for calls that need the host (DNS calls wait for a message).
with_host(Fun) ->
    case [Host || Host <- ejabberd_option:hosts(), {ok, _} <- [store(Host)]] of
        [Host | _] -> Fun(Host);
        [] -> {error, not_started, 1, "mod_xmpp_hosting is not running on any host"}
    end.

key(Host) ->
    {?MODULE, Host}.

housekeeping_key(Host) ->
    {?MODULE, housekeeping, Host}.

%% Commands are global while stores are per host: use the first host that has one. Hosts are
%% meant to share one store file (start/2 warns when they do not).
with_store(Fun) ->
    Stores = [S || Host <- ejabberd_option:hosts(), {ok, S} <- [store(Host)]],
    case Stores of
        [Handle | _] -> Fun(Handle);
        [] -> {error, not_started, 1, "mod_xmpp_hosting is not running on any host"}
    end.

%% A command of another file: Call(Handle) is the NIF call, Format turns what it returns (the
%% value of {ok, Value}, or ok) into the command's result; an error becomes ejabberd's form.
run_command(Call, Format) ->
    with_store(
      fun(H) ->
              case Call(H) of
                  ok -> Format(ok);
                  {ok, Value} -> Format(Value);
                  {error, Err} -> command_error(Err)
              end
      end).

command_error({Code, Message}) ->
    {error, ejabberd_error_type(Code), 1, binary_to_list(Message)}.

ejabberd_error_type(already_exists) -> conflict;
ejabberd_error_type(not_found) -> not_exists;
ejabberd_error_type(Code) -> Code.

database_path(undefined) ->
    filename:join(spool_dir(), ?DB_FILE);
database_path(Path) when is_binary(Path) ->
    binary_to_list(Path).

%% ejabberdctl passes SPOOL_DIR to the VM as the Mnesia directory.
spool_dir() ->
    case mnesia:system_info(directory) of
        Dir when is_list(Dir) -> Dir;
        _ -> "."
    end.

open_store(Path) ->
    case code:ensure_loaded(xmpp_hosting_nif) of
        {module, _} ->
            xmpp_hosting_nif:open(unicode:characters_to_binary(Path));
        {error, Why} ->
            {error, {nif_not_loaded, Why, xmpp_hosting_nif_so_path()}}
    end.

%% When on_load failed, xmpp_hosting_nif is not loaded, so its so_path/0 is not callable:
%% say where the library was expected from this module's own location.
xmpp_hosting_nif_so_path() ->
    Priv = case code:priv_dir(?MODULE) of
               {error, _} -> filename:join(filename:dirname(filename:dirname(code:which(?MODULE))),
                                           "priv");
               Dir -> Dir
           end,
    filename:join([Priv, "lib", "xmpp_hosting_nif.so"]).

warn_if_other_database(Host, Path) ->
    Others = [{H, P} || H <- ejabberd_option:hosts(), H /= Host,
                        {P, _} <- [persistent_term:get(key(H), undefined)], P /= Path],
    case Others of
        [] -> ok;
        _ -> ?WARNING_MSG("xmpp_hosting ~ts uses store ~ts, but other hosts use ~p; "
                          "the ejabberdctl commands act on one of them only",
                          [Host, Path, Others])
    end.

format_reason({nif_not_loaded, Why, SoPath}) ->
    io_lib:format("the NIF library ~ts did not load (~p); see the error logged above", [SoPath, Why]);
format_reason({Code, Message}) when is_atom(Code), is_binary(Message) ->
    io_lib:format("~ts (~p)", [Message, Code]);
format_reason(Other) ->
    io_lib:format("~p", [Other]).
