%%% ejabberdctl commands for retention (issue 13), registered with mod_xmpp_hosting's own commands:
%%%   xmpp_hosting_retention_show DOMAIN             the policy (archive, muc, uploads, backups)
%%%   xmpp_hosting_retention_set DOMAIN WHAT PERIOD  WHAT: archive, muc, uploads or backups; or
%%%                                                  user:NAME for a user's own shorter archive
%%%                                                  retention (PERIOD "domain" clears it)
%%%   xmpp_hosting_retention_sweep DOMAIN KIND DRY   sweep archive, muc (mod_xmpp_hosting_retention,
%%%                                                  here in ejabberd) or uploads now; DRY true
%%%                                                  counts only
%%%   xmpp_hosting_retention_log DOMAIN LIMIT        the audit log ("" for every domain)
%%% Periods, checks and wording are the core's, as on the other command lines.
-module(xmpp_hosting_retention_commands).

-export([spec/0]).
-export([show/1, set/3, sweep/3, log/2]).

-include("ejabberd_commands.hrl").

%% A sweep runs to its end, in short steps (a large one takes minutes); past this the command
%% stops waiting, and says so, rather than hang ejabberdctl.
-define(SWEEP_WAIT_MS, 1800000).

spec() ->
    [#ejabberd_commands{name = xmpp_hosting_retention_show, tags = [xmpp_hosting],
                        desc = "Show how long a domain keeps archives and uploads",
                        policy = admin,
                        module = ?MODULE, function = show,
                        args = [{domain, binary}],
                        args_example = [<<"customer.example">>],
                        result = {res, restuple},
                        result_example = {ok, <<"archive 1w, muc never, uploads 30d, backups 1y (declared)">>}},
     #ejabberd_commands{name = xmpp_hosting_retention_set, tags = [xmpp_hosting],
                        desc = "Set how long a domain keeps one kind of data, or a user's own archive",
                        longdesc = "WHAT is archive, muc, uploads or backups (declared only), or user:NAME "
                                   "for NAME's own archive, which may only be shorter than the domain's "
                                   "(PERIOD domain removes it). PERIOD as 1w, 30d, 1y, seconds, or never.",
                        policy = admin,
                        module = ?MODULE, function = set,
                        args = [{domain, binary}, {what, binary}, {period, binary}],
                        args_example = [<<"customer.example">>, <<"archive">>, <<"30d">>],
                        result = {res, restuple},
                        result_example = {ok, <<"archive 30d, muc never, uploads never, backups never (declared)">>}},
     #ejabberd_commands{name = xmpp_hosting_retention_sweep, tags = [xmpp_hosting],
                        desc = "Delete a domain's expired archives (archive, muc) or uploads now",
                        longdesc = "Runs (or resumes) the sweep to its end in short steps; DRY true only "
                                   "counts. Archives need mod_xmpp_hosting_retention on the domain.",
                        policy = admin,
                        module = ?MODULE, function = sweep,
                        args = [{domain, binary}, {kind, binary}, {dry, binary}],
                        args_example = [<<"customer.example">>, <<"archive">>, <<"false">>],
                        result = {res, restuple},
                        result_example = {ok, <<"#3 customer.example archive before 1700000000: done (...)">>}},
     #ejabberd_commands{name = xmpp_hosting_retention_log, tags = [xmpp_hosting],
                        desc = "List the latest retention sweeps, newest first",
                        policy = admin,
                        module = ?MODULE, function = log,
                        args = [{domain, binary}, {limit, integer}],
                        args_desc = ["Domain, or \"\" for every domain", "How many"],
                        args_example = [<<"customer.example">>, 20],
                        result = {sweeps, {list, {sweep, string}}}}].

show(Domain) ->
    call(fun(H) -> xmpp_hosting_nif:describe_retention(H, Domain) end, fun(Text) -> {ok, Text} end).

set(Domain, <<"user:", User/binary>>, Period) ->
    Value = case Period of <<"domain">> -> undefined; <<>> -> undefined; _ -> Period end,
    call(fun(H) -> xmpp_hosting_nif:set_user_archive_retention(H, Domain, User, Value) end,
         fun(Kept) -> {ok, <<User/binary, "@", Domain/binary, ": archive kept for ", Kept/binary>>} end);
set(Domain, What, Period) ->
    call(fun(H) ->
                 case xmpp_hosting_nif:set_retention(H, Domain, What, Period) of
                     {ok, _} -> xmpp_hosting_nif:describe_retention(H, Domain);
                     Err -> Err
                 end
         end,
         fun(Text) -> {ok, Text} end).

sweep(Domain, Kind, Dry) ->
    DryRun = lists:member(Dry, [<<"true">>, <<"yes">>, <<"1">>, <<"dry-run">>]),
    Result = case Kind of
                 K when K == <<"archive">>; K == <<"muc">> ->
                     mod_xmpp_hosting_retention:sweep(Domain, K, #{dry_run => DryRun, wait => true});
                 _ ->
                     uploads_sweep(Domain, Kind, DryRun)
             end,
    case Result of
        {ok, #{text := Text}} -> {ok, Text};
        {ok, #{} = Rec} -> {ok, iolist_to_binary(io_lib:format("~p", [Rec]))};
        {error, {Code, Message}} when is_atom(Code), is_binary(Message) ->
            {error, binary_to_list(Message)};
        {error, Other} -> {error, lists:flatten(io_lib:format("~p", [Other]))}
    end.

log(Domain, Limit) ->
    D = case Domain of <<>> -> undefined; _ -> Domain end,
    call(fun(H) -> xmpp_hosting_nif:describe_retention_log(H, D, Limit) end,
         fun(Lines) -> [binary_to_list(L) || L <- Lines] end).

%%%===================================================================
%%% Internal
%%%===================================================================

call(Call, Format) ->
    mod_xmpp_hosting:run_command(Call, Format).

%% Uploads are swept by the core itself, inside the upload directories it watches: the
%% hosts' docroots, as for the housekeeping pass (ejabberd registers none in the store).
uploads_sweep(Domain, Kind, DryRun) ->
    case mod_xmpp_hosting:store(Domain) of
        {ok, H} ->
            Tag = erlang:unique_integer([positive]),
            case xmpp_hosting_nif:retention_sweep(H, Domain, Kind, DryRun, mod_xmpp_hosting:upload_roots(), Tag) of
                ok ->
                    receive
                        {xmpp_hosting_result, Tag, {ok, Rec}} ->
                            case xmpp_hosting_nif:describe_retention_log(H, Domain, 1) of
                                {ok, Lines} -> {ok, Rec#{text => hd(Lines ++ [<<>>])}};
                                {error, _} -> {ok, Rec}
                            end;
                        {xmpp_hosting_result, Tag, Err} -> Err
                    after ?SWEEP_WAIT_MS ->
                            {error, {timeout, iolist_to_binary(
                                                io_lib:format("no answer from the sweep after ~B s; it may still be "
                                                              "running: see xmpp_hosting_retention_log",
                                                              [?SWEEP_WAIT_MS div 1000]))}}
                    end;
                Err -> Err
            end;
        {error, _} -> {error, {not_started, <<"mod_xmpp_hosting is not running on ", Domain/binary>>}}
    end.
