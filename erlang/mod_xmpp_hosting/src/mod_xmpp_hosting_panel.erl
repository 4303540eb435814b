%%% mod_xmpp_hosting_panel: the customers' web panel as an ejabberd request handler.
%%%
%%% In ejabberd.yml, on an ejabberd_http listener (with mod_xmpp_hosting loaded):
%%%     request_handlers:
%%%       /panel: mod_xmpp_hosting_panel
%%% Customers log in with their XMPP address (an account on any host of this node) and see only
%%% their own domains. The operator's admins see every domain: on the account's host, the access
%%% rule of mod_xmpp_hosting_users' `access_operator` option where that module is loaded (so both
%%% agree on who the operator is), else the `configure` rule of ejabberd's own admin commands.
%%%
%%% This module only converts: the core's router (pages, JSON API, sessions, CSRF, login
%%% throttling, authorisation) answers every request through the NIF. The one thing done here is
%%% the password check, by ejabberd's own authentication (ejabberd_auth:check_password/4), in this
%%% HTTP connection's own process: the core never sees a stored password. The users page works
%%% the same way: the core decides who may create, re-password or delete which account (the same
%%% decision as mod_xmpp_hosting_users' ad-hoc commands) and hands this module the change to carry
%%% out with ejabberd_auth, as that module does, then says what to answer.

-module(mod_xmpp_hosting_panel).

-export([process/2]).

-include("logger.hrl").
-include("ejabberd_http.hrl").

process(LocalPath, #request{method = Method, path = Path, raw_path = Raw} = R) ->
    Base = base(Path, LocalPath),
    case LocalPath == [] andalso not ends_with_slash(Raw) of
        true ->
            %% The page's links are relative: it must be loaded as /panel/, not /panel.
            {301, [{<<"Location">>, <<Base/binary, "/">>}], <<>>};
        false ->
            case panel(R#request.host, Base) of
                {ok, P} -> serve(P, Method, LocalPath, R);
                {error, Why} ->
                    ?ERROR_MSG("The panel cannot open the store: ~p", [Why]),
                    {500, [], <<"The panel is not available now.\n">>}
            end
    end.

serve(P, Method, LocalPath, #request{headers = Headers, data = Body, ip = {IP, _}, tp = Tp}) ->
    Answer = xmpp_hosting_nif:panel_handle(
               P, atom_to_binary(Method, utf8), path(LocalPath),
               header(<<"cookie">>, Headers), header(<<"x-csrf-token">>, Headers),
               header(<<"content-type">>, Headers), Body,
               list_to_binary(inet:ntoa(IP)), Tp == https),
    case Answer of
        {check_password, Ticket, User, Server, Password} ->
            Ok = password_ok(User, Server, Password),
            reply(xmpp_hosting_nif:panel_finish_login(P, Ticket, Ok, Ok andalso is_admin(User, Server)));
        {account, Ticket, Action, Host, User, Password, Require} ->
            {NotServed, Existed, Done, Error, Users} = carry_out(Action, Host, User, Password, Require),
            reply(xmpp_hosting_nif:panel_finish_account(P, Ticket, NotServed, Existed, Done, Error, Users));
        _ ->
            reply(Answer)
    end.

%% With the reason phrase: ejabberd_http has none of its own for some codes the core uses (429).
%% The core names headers in lower case; ejabberd_http adds a Content-Type of its own (text/html)
%% unless it finds one spelt <<"Content-Type">>, so names go back in the usual capitalisation.
reply({respond, Status, Reason, Headers, Body}) ->
    {Status, Reason, [{capitalise(Name), Value} || {Name, Value} <- Headers], Body}.

capitalise(Name) ->
    Parts = binary:split(Name, <<"-">>, [global]),
    iolist_to_binary(lists:join(<<"-">>, [string:titlecase(Part) || Part <- Parts])).

%% The server's verdict on a login's password; an address on a host this node does not serve is a
%% wrong password like any other (and counted as one).
password_ok(User, Server, Password) ->
    lists:member(Server, ejabberd_option:hosts())
        andalso ejabberd_auth:check_password(User, <<>>, Server, Password) == true.

%% An account change the core allowed, carried out on the domain's host with ejabberd's own
%% account API; what happened ({NotServed, Existed, Done, Error, Usernames}) goes back to the core,
%% which words the answer. The password is used here and nowhere logged.
carry_out(Action, Host, User, Password, Require) ->
    case lists:member(Host, ejabberd_option:hosts()) of
        false ->
            {true, false, false, <<>>, []};
        true when Action == <<"list">> ->
            {false, false, false, <<>>, [U || {U, _} <- ejabberd_auth:get_users(Host)]};
        true ->
            Existed = ejabberd_auth:user_exists(User, Host),
            case {Require, Existed} of
                {<<"absent">>, true} -> {false, true, false, <<>>, []};
                {<<"present">>, false} -> {false, false, false, <<>>, []};
                _ ->
                    case account_api(Action, User, Host, Password) of
                        ok ->
                            ?INFO_MSG("Panel: ~ts of ~ts@~ts done", [Action, User, Host]),
                            {false, Existed, true, <<>>, []};
                        {error, Why} ->
                            ?WARNING_MSG("Panel: ~ts of ~ts@~ts failed: ~p", [Action, User, Host, Why]),
                            {false, Existed, false, iolist_to_binary(io_lib:format("~p", [Why])), []}
                    end
            end
    end.

account_api(<<"create">>, User, Host, Password) -> ejabberd_auth:try_register(User, Host, Password);
account_api(<<"password">>, User, Host, Password) -> ejabberd_auth:set_password(User, Host, Password);
account_api(<<"delete">>, User, Host, _Password) -> ejabberd_auth:remove_user(User, Host), ok;
account_api(_Other, _User, _Host, _Password) -> {error, unknown_action}.

is_admin(User, Server) ->
    acl:match_rule(Server, operator_rule(Server), jid:make(User, Server)) == allow.

operator_rule(Server) ->
    case gen_mod:is_loaded(Server, mod_xmpp_hosting_users) of
        true -> gen_mod:get_module_opt(Server, mod_xmpp_hosting_users, access_operator);
        false -> configure
    end.

%% One panel per listener path on this node, made on first use (it holds the running jobs and the
%% logins waiting for a verdict, so two requests racing to make it must end up with the same one).
panel(Host0, Base) ->
    Key = {?MODULE, Base},
    case persistent_term:get(Key, undefined) of
        undefined ->
            global:trans({Key, self()}, fun() -> open_panel(Key, Host0, Base) end, [node()]);
        P ->
            {ok, P}
    end.

open_panel(Key, Host0, Base) ->
    case persistent_term:get(Key, undefined) of
        undefined ->
            Hosts = ejabberd_option:hosts(),
            Host = case lists:member(Host0, Hosts) of true -> Host0; false -> hd(Hosts) end,
            case mod_xmpp_hosting:store(Host) of
                {ok, H} ->
                    case xmpp_hosting_nif:panel_open(H, Base) of
                        {ok, P} ->
                            persistent_term:put(Key, P),
                            {ok, P};
                        {error, _} = Error ->
                            Error
                    end;
                {error, _} = Error ->
                    Error
            end;
        P ->
            {ok, P}
    end.

base(Path, LocalPath) ->
    Prefix = lists:sublist(Path, length(Path) - length(LocalPath)),
    iolist_to_binary([[<<"/">>, Segment] || Segment <- Prefix]).

path(LocalPath) ->
    iolist_to_binary([<<"/">> | lists:join(<<"/">>, LocalPath)]).

ends_with_slash(Raw) ->
    [PathPart | _] = binary:split(Raw, <<"?">>),
    binary:last(<<" ", PathPart/binary>>) == $/.

header(Name, Headers) ->
    case [V || {K, V} <- Headers, string:lowercase(to_binary(K)) == Name] of
        [Value | _] -> Value;
        [] -> <<>>
    end.

to_binary(K) when is_atom(K) -> atom_to_binary(K, utf8);
to_binary(K) -> K.
