%%% What a hosted domain publishes, from the settings it enforces (issue 15).
%%%
%%% Thin glue over the core (xmpp_hosting_nif): every answer is computed from the store by the
%%% request that asks, so a changed retention, upload limit or registration policy is published
%%% by the next request with nothing else to edit.
%%%
%%% - HTTP: add the module as a request handler of an ejabberd_http listener, on both paths:
%%%       request_handlers:
%%%         /.well-known/xmpp-provider-v2.json: mod_xmpp_hosting_publish
%%%         /policy: mod_xmpp_hosting_publish
%%%   `/.well-known/xmpp-provider-v2.json` is the XMPP Providers provider file (v2); `/policy` the
%%%   policy page (HTML for phones), `/policy/json` the same as JSON. The domain is the request's
%%%   Host; a host this server does not serve, or the store does not host, is 404.
%%% - disco#info: the XEP-0157 contact addresses and the policy as XEP-0128 forms, replacing
%%%   mod_disco's `server_info` form (do not set `server_info` as well).
%%% - In-band account deletion (XEP-0077 <remove/>) is mod_register's and stays possible while
%%%   registration is closed (mod_xmpp_hosting_invites only answers unauthenticated requests to
%%%   register); the policy page says so, so this module depends on mod_register.
%%% - New accounts get the domain's support room (publication.support_room) as a bookmark
%%%   (XEP-0402), joined automatically, published to their PEP with mod_pubsub (load it with the
%%%   pep plugin; without it no bookmark is made, and the log says so).
%%% - ejabberdctl xmpp_hosting_publish_show|set|provider_file|page.
-module(mod_xmpp_hosting_publish).

-behaviour(gen_mod).

-export([start/2, stop/1, reload/3, depends/2, mod_options/1, mod_doc/0]).
-export([process/2, disco_info/5, register_user/2, sm_register_connection_hook/3]).
-export([show/1, set/3, provider_file/1, page/1]).

-include("xmpp.hrl").
-include("logger.hrl").
-include("translate.hrl").
-include("ejabberd_http.hrl").
-include("ejabberd_commands.hrl").

-define(POLICY_CSP, <<"default-src 'none'; style-src 'unsafe-inline'">>).

%%%===================================================================
%%% gen_mod
%%%===================================================================

start(Host, _Opts) ->
    %% After mod_disco's get_info (100), which answers with its own server_info form.
    ejabberd_hooks:add(disco_info, Host, ?MODULE, disco_info, 110),
    ejabberd_hooks:add(register_user, Host, ?MODULE, register_user, 60),
    ejabberd_hooks:add(sm_register_connection_hook, Host, ?MODULE, sm_register_connection_hook, 60),
    ejabberd_commands:register_commands(commands()),
    ok.

stop(Host) ->
    ejabberd_hooks:delete(disco_info, Host, ?MODULE, disco_info, 110),
    ejabberd_hooks:delete(register_user, Host, ?MODULE, register_user, 60),
    ejabberd_hooks:delete(sm_register_connection_hook, Host, ?MODULE, sm_register_connection_hook, 60),
    case gen_mod:is_loaded_elsewhere(Host, ?MODULE) of
        false -> ejabberd_commands:unregister_commands(commands());
        true -> ok
    end,
    ok.

reload(_Host, _NewOpts, _OldOpts) ->
    ok.

depends(_Host, _Opts) ->
    [{mod_xmpp_hosting, hard}, {mod_disco, hard}, {mod_register, hard}].

mod_options(_Host) ->
    [].

mod_doc() ->
    #{desc => ?T("Serves each hosted domain's provider file, policy page and disco#info "
                 "contact addresses from the settings xmpp-hosting enforces.")}.

%%%===================================================================
%%% HTTP
%%%===================================================================

process(_LocalPath, #request{method = 'GET', host = Host0, path = Path, lang = Lang}) ->
    Host = jid:nameprep(Host0),
    case {lists:member(Host, ejabberd_option:hosts()), Path} of
        {false, _} ->
            not_found();
        {true, [<<".well-known">>, <<"xmpp-provider-v2.json">>]} ->
            reply(Host, fun(H) -> xmpp_hosting_nif:provider_file(H, Host) end,
                  [{<<"Content-Type">>, <<"application/json">>},
                   %% Fetched by other sites' scripts (the providers list, web clients).
                   {<<"Access-Control-Allow-Origin">>, <<"*">>}]);
        {true, [<<"policy">>]} ->
            reply(Host, fun(H) -> xmpp_hosting_nif:policy_page(H, Host, Lang, accounts(Host), html) end,
                  [{<<"Content-Type">>, <<"text/html; charset=utf-8">>},
                   {<<"Content-Security-Policy">>, ?POLICY_CSP}]);
        {true, [<<"policy">>, <<"json">>]} ->
            reply(Host, fun(H) -> xmpp_hosting_nif:policy_page(H, Host, Lang, accounts(Host), json) end,
                  [{<<"Content-Type">>, <<"application/json">>}]);
        {true, _} ->
            not_found()
    end;
process(_LocalPath, _Request) ->
    {405, [{<<"Allow">>, <<"GET">>}], <<"Only GET\n">>}.

reply(Host, Call, Headers) ->
    case mod_xmpp_hosting:store(Host) of
        {ok, H} ->
            case Call(H) of
                {ok, Body} ->
                    {200, [{<<"Cache-Control">>, <<"no-cache">>},
                           {<<"X-Content-Type-Options">>, <<"nosniff">>} | Headers], Body};
                {error, {not_found, _}} ->
                    not_found();
                {error, {Code, Message}} ->
                    ?ERROR_MSG("Cannot publish ~ts: ~ts (~ts)", [Host, Message, Code]),
                    {500, [], <<"The policy of this server cannot be read now.\n">>}
            end;
        {error, not_started} ->
            not_found()
    end.

not_found() ->
    {404, [{<<"Content-Type">>, <<"text/plain">>}], <<"Not found\n">>}.

%% The host's accounts as its authentication backends count them, or undefined.
accounts(Host) ->
    try ejabberd_auth:count_users(Host) of
        N when is_integer(N), N >= 0 -> N;
        _ -> undefined
    catch _:_ -> undefined
    end.

%%%===================================================================
%%% disco#info
%%%===================================================================

%% The server's own disco#info (mod_disco runs the hook with itself on 23.01 and 24.12):
%% mod_disco's serverinfo form is replaced by ours, our policy form added.
disco_info(Acc, Host, Mod, <<>>, _Lang) when Mod == mod_disco; Mod == undefined ->
    case mod_xmpp_hosting:store(Host) of
        {ok, H} ->
            case xmpp_hosting_nif:disco_forms(H, Host) of
                {ok, Forms} ->
                    Ours = [xdata(F) || F <- Forms],
                    Types = [T || #{form_type := T} <- Forms] ++ [?NS_SERVERINFO],
                    [X || X <- Acc, not lists:member(form_type(X), Types)] ++ Ours;
                {error, {not_found, _}} ->
                    Acc;
                {error, {_Code, Message}} ->
                    ?ERROR_MSG("Cannot read what ~ts publishes: ~ts", [Host, Message]),
                    Acc
            end;
        {error, not_started} ->
            Acc
    end;
disco_info(Acc, _Host, _Mod, _Node, _Lang) ->
    Acc.

xdata(#{form_type := Type, fields := Fields}) ->
    #xdata{type = result,
           fields = [#xdata_field{type = hidden, var = <<"FORM_TYPE">>, values = [Type]}
                     | [#xdata_field{var = Var, values = Values} || #{var := Var, values := Values} <- Fields]]}.

form_type(#xdata{fields = Fields}) ->
    case [V || #xdata_field{var = <<"FORM_TYPE">>, values = [V | _]} <- Fields] of
        [Type | _] -> Type;
        [] -> undefined
    end;
form_type(_) ->
    undefined.

%%%===================================================================
%%% Logins, for the daily and monthly active accounts
%%%===================================================================

%% One short write by key on a dirty scheduler (the core keeps one row per account, by a digest
%% of its name, rewritten at most once an hour). Never waited for: while another process holds
%% the store's lock, the core's worker counts it once the lock is free (mod_xmpp_hosting:background/3).
sm_register_connection_hook(_SID, #jid{luser = User, lserver = Server}, _Info) ->
    What = <<"the login of ", User/binary, "@", Server/binary, " is counted">>,
    case mod_xmpp_hosting:background(Server, {record_activity, Server, User}, What) of
        {ok, _} -> ok;
        later -> ok;
        {error, not_started} -> ok;
        {error, {_Code, Message}} -> ?WARNING_MSG("Cannot count the login of ~ts@~ts: ~ts", [User, Server, Message])
    end.

%%%===================================================================
%%% The support room bookmark
%%%===================================================================

register_user(User, Server) ->
    case mod_xmpp_hosting:store(Server) of
        {ok, H} ->
            case xmpp_hosting_nif:support_bookmark(H, Server) of
                {ok, #{jid := Room, name := Name, autojoin := Autojoin}} ->
                    bookmark(User, Server, Room, Name, Autojoin);
                {ok, _None} ->
                    ok;
                {error, {_Code, Message}} ->
                    ?ERROR_MSG("No support bookmark for ~ts@~ts: ~ts", [User, Server, Message])
            end;
        {error, not_started} ->
            ok
    end.

bookmark(User, Server, Room, Name, Autojoin) ->
    case gen_mod:is_loaded(Server, mod_pubsub) of
        false ->
            ?WARNING_MSG("No support bookmark for ~ts@~ts: mod_pubsub (with the pep plugin) is not loaded",
                         [User, Server]);
        true ->
            JID = jid:make(User, Server),
            El = #xmlel{name = <<"conference">>,
                        attrs = [{<<"xmlns">>, <<"urn:xmpp:bookmarks:1">>}, {<<"name">>, Name},
                                 {<<"autojoin">>, atom_to_binary(Autojoin, utf8)}]},
            %% The node's configuration as XEP-0402 asks for and ejabberd's own mod_private makes
            %% it: pep's default max_items (1) would let the client's next bookmark replace this
            %% one, and a client publishing with the XEP's publish-options would fail their
            %% precondition.
            PubOpts = [{persist_items, true}, {access_model, whitelist}, {max_items, max},
                       {notify_retract, true}, {notify_delete, true}, {send_last_published_item, never}],
            case mod_pubsub:publish_item(jid:remove_resource(jid:tolower(JID)), Server, <<"urn:xmpp:bookmarks:1">>,
                                         JID, Room, [El], PubOpts, all) of
                {result, _} -> ok;
                {error, Err} -> ?ERROR_MSG("Cannot bookmark ~ts for ~ts@~ts: ~p", [Room, User, Server, Err])
            end
    end.

%%%===================================================================
%%% ejabberdctl
%%%===================================================================

commands() ->
    [#ejabberd_commands{name = xmpp_hosting_publish_show, tags = [xmpp_hosting],
                        desc = "Show what a domain publishes: its description and what it enforces",
                        policy = admin, module = ?MODULE, function = show,
                        args = [{domain, binary}], args_example = [<<"customer.example">>],
                        result = {res, restuple}},
     #ejabberd_commands{name = xmpp_hosting_publish_set, tags = [xmpp_hosting],
                        desc = "Set one field of a domain's published description",
                        longdesc = "FIELD: description, language, jurisdiction, server_locations, "
                                   "since, organization, bus_factor, professional_hosting, "
                                   "free_of_charge, server_testing, alternative_jids, rules, website, "
                                   "terms, privacy, legal_notice, password_reset, data_export, "
                                   "account_deletion, third_parties, contacts.ROLE, support_room. "
                                   "VALUE is JSON or text; null clears. A per-language field "
                                   "takes one language as FIELD.LANG (terms.de), null removing it.",
                        policy = admin, module = ?MODULE, function = set,
                        args = [{domain, binary}, {field, binary}, {value, binary}],
                        args_example = [<<"customer.example">>, <<"jurisdiction">>, <<"de">>],
                        result = {res, restuple}},
     #ejabberd_commands{name = xmpp_hosting_publish_provider_file, tags = [xmpp_hosting],
                        desc = "Print a domain's XMPP Providers provider file (v2)",
                        policy = admin, module = ?MODULE, function = provider_file,
                        args = [{domain, binary}], args_example = [<<"customer.example">>],
                        result = {res, restuple}},
     #ejabberd_commands{name = xmpp_hosting_publish_page, tags = [xmpp_hosting],
                        desc = "Print a domain's policy page (HTML)",
                        policy = admin, module = ?MODULE, function = page,
                        args = [{domain, binary}], args_example = [<<"customer.example">>],
                        result = {res, restuple}}].

show(Domain) ->
    command(fun(H) -> xmpp_hosting_nif:describe_publication(H, Domain) end).

set(Domain, Field, Value) ->
    command(fun(H) ->
                    case xmpp_hosting_nif:set_publication(H, Domain, Field, Value) of
                        {ok, _} -> xmpp_hosting_nif:describe_publication(H, Domain);
                        Error -> Error
                    end
            end).

provider_file(Domain) ->
    command(fun(H) -> xmpp_hosting_nif:provider_file(H, Domain) end).

page(Domain) ->
    command(fun(H) -> xmpp_hosting_nif:policy_page(H, Domain, <<>>, accounts(Domain), html) end).

command(Call) ->
    mod_xmpp_hosting:run_command(Call, fun(Text) -> {ok, Text} end).
