%%% Upload quotas from xmpp-hosting for ejabberd's mod_http_upload.
%%%
%%% Each slot request is decided by the uploader's domain's limits (max file size, storage per
%%% user/domain/global, daily/weekly/monthly volume) in the `http_upload_slot_request` fold, at
%%% priority 40, before mod_http_upload_quota (50), and refused with the XEP-0363 errors:
%%% file-too-large (modify/not-acceptable with max-file-size), a quota (wait/resource-constraint
%%% with a retry stamp when waiting helps), a bad size (modify/bad-request). Users of domains the
%%% store does not host are left to mod_http_upload alone. mod_http_upload checks its own
%%% `max_size` before the fold: set it to `infinity`, so the store's limit is the one that
%%% applies and the one the service's disco#info advertises.
%%%
%%% ejabberd fires no event when an upload completes or a file is deleted, so:
%%%   - completion: this module is the HTTP handler for the upload path (`request_handlers:
%%%     "/upload": mod_xmpp_hosting_uploads` instead of mod_http_upload); it hands every request
%%%     to mod_http_upload:process/2 and counts a PUT answered 201. The slot request names only
%%%     the uploader's directory, so the grant is reserved under that directory (the slot key)
%%%     and the finished PUT, which names the same directory, commits it. The file is recorded
%%%     under its path. A PUT that fails after mod_http_upload used the slot up (the connection
%%%     closed: 404; the write failed: 500) gives its reservation back at once.
%%%   - deletion: every `sweep_interval` mod_xmpp_hosting's housekeeping pass has the core look
%%%     for the recorded files under mod_http_upload's docroot and forget those gone (expired by mod_http_upload_quota's
%%%     `max_days`, removed with their account, or by an admin), on its worker thread. The same
%%%     pass releases slots never used: a reservation lasts as long as mod_http_upload's slot,
%%%     five hours.
-module(mod_xmpp_hosting_uploads).

-behaviour(gen_mod).

-export([start/2, stop/1, reload/3, depends/2, mod_options/1, mod_opt_type/1, mod_doc/0]).
-export([http_upload_slot_request/6, disco_info/5, upload_root/1]).
-export([adhoc_local_items/4, adhoc_local_commands/4]).
-export([process/2]).

-include("xmpp.hrl").
-include("logger.hrl").
-include("translate.hrl").
-include("ejabberd_http.hrl").

%% How long mod_http_upload keeps a slot usable (its add_slot timer in 23.01): the reservation
%% holds the bytes as long, so slots granted in a burst can never be used to overshoot a limit.
-define(SLOT_LIFETIME, 5 * 3600).

%%%===================================================================
%%% gen_mod
%%%===================================================================

start(Host, Opts) ->
    case check_sweep_interval(Host, Opts) of
        ok -> add_hooks(Host);
        {error, _} = Err -> Err
    end.

%% The core judges sweep_interval (at most a week): a value it refuses would stop every
%% housekeeping pass (see mod_xmpp_hosting:check_interval/4).
check_sweep_interval(Host, Opts) ->
    mod_xmpp_hosting:check_interval(Host, upload_upkeep, sweep_interval, gen_mod:get_opt(sweep_interval, Opts)).

add_hooks(Host) ->
    ejabberd_hooks:add(http_upload_slot_request, Host, ?MODULE, http_upload_slot_request, 40),
    %% After mod_disco (100), whose server-info form replaces what came before it.
    ejabberd_hooks:add(disco_info, Host, ?MODULE, disco_info, 110),
    ejabberd_hooks:add(adhoc_local_items, Host, ?MODULE, adhoc_local_items, 50),
    ejabberd_hooks:add(adhoc_local_commands, Host, ?MODULE, adhoc_local_commands, 50),
    ok.

stop(Host) ->
    ejabberd_hooks:delete(http_upload_slot_request, Host, ?MODULE, http_upload_slot_request, 40),
    ejabberd_hooks:delete(disco_info, Host, ?MODULE, disco_info, 110),
    ejabberd_hooks:delete(adhoc_local_items, Host, ?MODULE, adhoc_local_items, 50),
    ejabberd_hooks:delete(adhoc_local_commands, Host, ?MODULE, adhoc_local_commands, 50),
    ok.

%% mod_xmpp_hosting's housekeeping reads sweep_interval at every pass.
reload(Host, NewOpts, _OldOpts) ->
    %% Refused, it is logged and the housekeeping keeps its schedule (see mod_xmpp_hosting).
    _ = check_sweep_interval(Host, NewOpts),
    ok.

depends(_Host, _Opts) ->
    [{mod_xmpp_hosting, hard}, {mod_http_upload, hard}, {mod_adhoc, soft}].

mod_opt_type(sweep_interval) ->
    econf:either(econf:enum([undefined]), econf:timeout(second)).

mod_options(_Host) ->
    [{sweep_interval, undefined}].

mod_doc() ->
    #{desc =>
          ?T("Upload quotas from the xmpp-hosting store for mod_http_upload: per-domain maximum "
             "file size, storage per user, domain and service, and daily, weekly and monthly "
             "upload volume, decided when a slot is requested. Use it as the HTTP handler of the "
             "upload path in place of mod_http_upload (request_handlers: \"/upload\": "
             "mod_xmpp_hosting_uploads), so completed uploads are counted, and set "
             "mod_http_upload's max_size to infinity so the store's limit is the one that "
             "applies."),
      opts =>
          [{sweep_interval,
            #{value => "timeout()",
              desc => ?T("How often the files counted are looked for on disk, so that deleted "
                         "ones free their storage (by mod_xmpp_hosting's housekeeping pass). The "
                         "default is the core's schedule (5 minutes).")}}]}.


%%%===================================================================
%%% The slot request
%%%===================================================================

%% Another module already refused: nothing to reserve.
http_upload_slot_request(Acc, _ServerHost, _JID, _UserDir, _Size, _Lang) when Acc /= allow ->
    Acc;
http_upload_slot_request(allow, ServerHost, #jid{luser = User, lserver = Domain} = JID, UserDir, Size, Lang) ->
    Decision = case mod_xmpp_hosting:store(ServerHost) of
                   {ok, H} -> xmpp_hosting_nif:authorize_upload(H, Domain, User, Size, UserDir, ?SLOT_LIFETIME);
                   {error, not_started} -> {error, {not_started, <<"mod_xmpp_hosting is not running">>}}
               end,
    case Decision of
        {ok, #{decision := <<"granted">>, id := Id}} ->
            ?DEBUG("xmpp_hosting_uploads: slot of ~B bytes for ~ts (reservation ~B)",
                   [Size, jid:encode(JID), Id]),
            allow;
        {ok, #{decision := <<"denied">>, text := Text} = Denial} ->
            ?INFO_MSG("xmpp_hosting_uploads: upload slot for ~ts refused: ~ts", [jid:encode(JID), Text]),
            {stop, denial_error(Denial, Lang)};
        {error, {not_found, _}} ->
            allow;  % a domain the store does not host: not ours to decide
        {error, {invalid_argument, Msg}} ->
            {stop, xmpp:err_bad_request(Msg, Lang)};
        {error, Err} ->
            ?ERROR_MSG("xmpp_hosting_uploads: upload quota check for ~ts failed: ~p", [jid:encode(JID), Err]),
            {stop, xmpp:err_internal_server_error()}
    end.

%% The XEP-0363 error of a denial: the core chose type, condition and text; the payload says
%% which number to respect (file-too-large) or when to come back (retry).
denial_error(#{type := Type, condition := Cond, text := Text} = Denial, Lang) ->
    #stanza_error{sub_els = Els} = Err = xmpp_hosting_stanza:error(Type, Cond, Text, Lang),
    Extra = case Denial of
                #{limit := <<"file-size">>, limit_value := Max} ->
                    [#upload_file_too_large{'max-file-size' = Max, xmlns = ?NS_HTTP_UPLOAD_0}];
                #{retry_at := At} ->
                    [#upload_retry{stamp = {At div 1000000, At rem 1000000, 0}}];
                _ -> []
            end,
    Err#stanza_error{sub_els = Extra ++ Els}.

%% @doc The upload service's disco#info carries the domain's max-file-size (XEP-0363 section 4).
%% mod_http_upload runs this fold without saying who asks, so the domain's limit is shown, not a
%% user's exception; mod_http_upload adds its own form only when its max_size is not infinity.
disco_info(Acc, ServerHost, mod_http_upload, <<"">>, Lang) ->
    Max = case mod_xmpp_hosting:store(ServerHost) of
              {ok, H} ->
                  case xmpp_hosting_nif:upload_report(H, ServerHost, undefined) of
                      {ok, #{limits := #{max_file_size := N}}} when is_integer(N) -> N;
                      _ -> undefined
                  end;
              _ -> undefined
          end,
    case Max of
        undefined -> Acc;
        _ -> Acc ++ [#xdata{type = result, fields = http_upload:encode([{'max-file-size', Max}], NS, Lang)}
                     || NS <- [?NS_HTTP_UPLOAD_0, ?NS_HTTP_UPLOAD]]
    end;
disco_info(Acc, _Host, _Module, _Node, _Lang) ->
    Acc.

%%%===================================================================
%%% Ad-hoc: a user's own usage
%%%===================================================================

-define(NODE_USAGE, <<"urn:xmpp-hosting:upload-usage">>).

%% Listed under the server's commands node (mod_adhoc) for the host's own users.
adhoc_local_items(Acc, #jid{luser = User, lserver = Server}, #jid{lserver = Server} = To, Lang)
  when User /= <<>> ->
    Items = case Acc of {result, I} -> I; _ -> [] end,
    {result, Items ++ [#disco_item{jid = To, node = ?NODE_USAGE,
                                   name = translate:translate(Lang, ?T("My upload usage"))}]};
adhoc_local_items(Acc, _From, _To, _Lang) ->
    Acc.

%% Single stage: executing it answers with the usage beside the limits, in the core's words.
adhoc_local_commands(_Acc, #jid{luser = User, lserver = Server}, #jid{lserver = Server},
                     #adhoc_command{node = ?NODE_USAGE, action = execute} = Request) when User /= <<>> ->
    Note = case mod_xmpp_hosting:store(Server) of
               {ok, H} ->
                   case xmpp_hosting_nif:describe_upload_usage(H, Server, User) of
                       {ok, Text} -> #adhoc_note{type = info, data = Text};
                       {error, Err} ->
                           ?ERROR_MSG("xmpp_hosting_uploads: upload usage of ~ts@~ts: ~p", [User, Server, Err]),
                           #adhoc_note{type = error, data = <<"Your usage cannot be shown right now">>}
                   end;
               {error, _} -> #adhoc_note{type = error, data = <<"Your usage cannot be shown right now">>}
           end,
    xmpp_util:make_adhoc_response(Request, #adhoc_command{status = completed, notes = [Note]});
adhoc_local_commands(_Acc, _From, _To, #adhoc_command{node = ?NODE_USAGE, lang = Lang}) ->
    {error, xmpp:err_bad_request(?T("Incorrect value of 'action' attribute"), Lang)};
adhoc_local_commands(Acc, _From, _To, _Request) ->
    Acc.

%%%===================================================================
%%% HTTP: completed uploads
%%%===================================================================

%% @doc The request handler for the upload path: mod_http_upload does the work. A PUT it
%% answers 201 is counted. It answers 404 (the client's connection closed) or 500 (the file
%% could not be written) after it has used the slot up, so those give the reservation back now
%% rather than at the slot's expiry; a 413 (wrong size) or 403 (no such slot) leaves it alone.
process(LocalPath, #request{method = 'PUT', length = Length} = Request) ->
    Response = mod_http_upload:process(LocalPath, Request),
    case Response of
        {201, _, _} -> with_slot(Request, fun(H, UserDir, FileId) -> count(H, UserDir, Length, FileId) end);
        {Failed, _, _} when Failed == 404; Failed == 500 ->
            with_slot(Request, fun(H, UserDir, _FileId) -> release(H, UserDir, Length, Failed) end);
        _ -> ok
    end,
    Response;
process(LocalPath, Request) ->
    mod_http_upload:process(LocalPath, Request).

%% The upload's slot is the last three path components, UserDir/Random/File, below the prefix
%% that (with the Host) names the mod_http_upload process that issued it; the reservation's key
%% is the user's directory.
with_slot(#request{host = Host0, path = Path}, Fun) when length(Path) >= 3 ->
    Host = jid:nameprep(Host0),
    {Prefix, [UserStr, Rand, File]} = lists:split(length(Path) - 3, Path),
    Proc = gen_mod:get_module_proc(str:join([Host | Prefix], <<$/>>), mod_http_upload),
    try
        {ok, DocRoot, _} = gen_server:call(Proc, get_conf),
        UserDir = <<DocRoot/binary, $/, UserStr/binary>>,
        {ok, H} = store_of(Proc),
        Fun(H, UserDir, str:join([UserDir, Rand, File], <<$/>>))
    catch Class:Reason ->
            ?ERROR_MSG("xmpp_hosting_uploads: cannot account for an upload to ~ts: ~p:~p", [Host, Class, Reason])
    end;
with_slot(_Request, _Fun) ->
    ok.

%% Counting a finished upload and giving a failed one's reservation back are writes nobody
%% waits for: while another process holds the store's lock, the core's worker makes them once it
%% is free, and mod_xmpp_hosting logs the outcome (see mod_xmpp_hosting:background/3).
count(H, UserDir, Length, FileId) ->
    case mod_xmpp_hosting:background(H, {commit_keyed_upload, UserDir, Length, FileId},
                                     <<"the upload ", FileId/binary, " is counted">>) of
        {ok, _} -> ?DEBUG("xmpp_hosting_uploads: counted ~ts (~B bytes)", [FileId, Length]);
        later -> ok;
        {error, {not_found, _}} ->
            %% A slot granted before this module was loaded, or for a domain it does not host.
            ?DEBUG("xmpp_hosting_uploads: ~ts has no reservation; not counted", [FileId]);
        {error, Err} ->
            ?ERROR_MSG("xmpp_hosting_uploads: cannot count upload ~ts: ~p", [FileId, Err])
    end.

release(H, UserDir, Length, Status) ->
    case mod_xmpp_hosting:background(H, {release_keyed_upload, UserDir, Length},
                                     iolist_to_binary(io_lib:format("the reservation of a failed upload to ~ts (~B bytes) is given back",
                                                                    [UserDir, Length]))) of
        {ok, Released} ->
            ?DEBUG("xmpp_hosting_uploads: PUT to ~ts answered ~B; reservation released: ~p",
                   [UserDir, Status, Released]);
        later -> ok;
        {error, Err} ->
            ?ERROR_MSG("xmpp_hosting_uploads: cannot release a failed upload's slot: ~p", [Err])
    end.

%% The store of the virtual host whose mod_http_upload process issued the slot.
store_of(Proc) ->
    Hosts = [H || H <- ejabberd_option:hosts(), gen_mod:is_loaded(H, ?MODULE),
                  mod_http_upload:get_proc_name(H, mod_http_upload) == Proc],
    case Hosts of
        [Host | _] -> mod_xmpp_hosting:store(Host);
        [] -> {error, not_started}
    end.

%%%===================================================================
%%% Upkeep
%%%===================================================================

%% @doc The directory mod_http_upload keeps this host's files in, for the sweep of deleted files
%% that mod_xmpp_hosting's housekeeping pass runs (with the release of slots never used).
upload_root(Host) ->
    try gen_server:call(mod_http_upload:get_proc_name(Host, mod_http_upload), get_conf) of
        {ok, DocRoot, _} -> {ok, DocRoot};
        _ -> error
    catch _:_ -> error
    end.
