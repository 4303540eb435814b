%%% The domain's owner manages its users over ad-hoc commands (XEP-0050), the same nodes and
%%% forms as Prosody's mod_xmpp_hosting_users, sent to the domain itself (its host JID):
%%%   urn:xmpp-hosting:users#create        accountjid, password, password-verify
%%%   urn:xmpp-hosting:users#list          (the domain's accounts)
%%%   urn:xmpp-hosting:users#password      accountjid, password, password-verify
%%%   urn:xmpp-hosting:users#delete        accountjid
%%%   urn:xmpp-hosting:users#registration  policy: open, invite or closed
%%% Who may run them (the domain's owner, the account whose DNS proof made it theirs, while that
%%% claim is not suspended; and the operator's admins: `access_operator`, by default the
%%% `configure` rule of ejabberd's own admin commands), on which accounts (only this domain's)
%%% and what the client is told are the core's decision (xmpp_hosting_nif:decide_user_command);
%%% this module carries it out through ejabberd_auth. Operators keep ejabberdctl.
-module(mod_xmpp_hosting_users).

-behaviour(gen_mod).

-export([start/2, stop/1, reload/3, depends/2, mod_options/1, mod_opt_type/1, mod_doc/0]).
-export([adhoc_local_items/4, adhoc_local_commands/4, disco_local_identity/5, disco_local_features/5]).

-include("xmpp.hrl").
-include("logger.hrl").
-include("translate.hrl").

-define(NODE_PREFIX, "urn:xmpp-hosting:users#").
-define(NS_ADMIN_FORM, <<"http://jabber.org/protocol/admin">>).

start(Host, _Opts) ->
    ejabberd_hooks:add(adhoc_local_items, Host, ?MODULE, adhoc_local_items, 50),
    ejabberd_hooks:add(adhoc_local_commands, Host, ?MODULE, adhoc_local_commands, 50),
    ejabberd_hooks:add(disco_local_identity, Host, ?MODULE, disco_local_identity, 50),
    ejabberd_hooks:add(disco_local_features, Host, ?MODULE, disco_local_features, 50),
    ok.

stop(Host) ->
    ejabberd_hooks:delete(adhoc_local_items, Host, ?MODULE, adhoc_local_items, 50),
    ejabberd_hooks:delete(adhoc_local_commands, Host, ?MODULE, adhoc_local_commands, 50),
    ejabberd_hooks:delete(disco_local_identity, Host, ?MODULE, disco_local_identity, 50),
    ejabberd_hooks:delete(disco_local_features, Host, ?MODULE, disco_local_features, 50),
    ok.

reload(_Host, _NewOpts, _OldOpts) ->
    ok.

depends(_Host, _Opts) ->
    [{mod_xmpp_hosting, hard}, {mod_adhoc, hard}].

mod_opt_type(access_operator) ->
    econf:acl().

mod_options(_Host) ->
    [{access_operator, configure}].

mod_doc() ->
    #{desc =>
          ?T("Ad-hoc commands for the owner of a hosted domain (and the operator's admins) "
             "to create, list, re-password and delete the domain's accounts and set who may "
             "register, authorised by xmpp-hosting."),
      opts =>
          [{access_operator,
            #{value => ?T("AccessName"),
              desc => ?T("The operator's admins, who manage every domain's users. "
                         "The default is 'configure'.")}}]}.

%% {Node, Action, Name}
commands() ->
    [{<<?NODE_PREFIX "create">>, create, ?T("Create a user")},
     {<<?NODE_PREFIX "list">>, list, ?T("List users")},
     {<<?NODE_PREFIX "password">>, password, ?T("Change a user's password")},
     {<<?NODE_PREFIX "delete">>, delete, ?T("Delete a user")},
     {<<?NODE_PREFIX "registration">>, registration, ?T("Registration policy")}].

%% Listed only to those who may run them.
adhoc_local_items(Acc, From, #jid{luser = <<>>, lserver = Server} = To, Lang) ->
    Items = case Acc of {result, I} -> I; _ -> [] end,
    Mine = case decide(From, Server, undefined, #{}) of
               {allowed, _} ->
                   [#disco_item{jid = To, node = Node, name = translate:translate(Lang, Name)}
                    || {Node, _, Name} <- commands()];
               _ -> []
           end,
    {result, Items ++ Mine};
adhoc_local_items(Acc, _From, _To, _Lang) ->
    Acc.

%% A command node's disco#info (XEP-0050 3.2): its identity and features to who may run it,
%% forbidden to anyone else, as Prosody's mod_xmpp_hosting_users answers.
disco_local_identity(Acc, From, #jid{luser = <<>>, lserver = Server}, Node, Lang) ->
    case lists:keyfind(Node, 1, commands()) of
        {_, _, Name} ->
            case decide(From, Server, undefined, #{}) of
                {allowed, _} ->
                    Acc ++ [#identity{category = <<"automation">>, type = <<"command-node">>,
                                      name = translate:translate(Lang, Name)}];
                _ -> Acc
            end;
        false -> Acc
    end;
disco_local_identity(Acc, _From, _To, _Node, _Lang) ->
    Acc.

disco_local_features(Acc, From, #jid{luser = <<>>, lserver = Server}, Node, Lang) ->
    case lists:keymember(Node, 1, commands()) of
        true ->
            case decide(From, Server, undefined, #{}) of
                {allowed, _} -> {result, [?NS_COMMANDS, ?NS_XDATA]};
                _ -> {error, xmpp:err_forbidden(?T("This item is not available to you"), Lang)}
            end;
        false -> Acc
    end;
disco_local_features(Acc, _From, _To, _Node, _Lang) ->
    Acc.

adhoc_local_commands(Acc, From, #jid{luser = <<>>, lserver = Server}, #adhoc_command{node = Node} = Req) ->
    case lists:keyfind(Node, 1, commands()) of
        {_, Action, _} -> run(Action, From, Server, Req);
        false -> Acc
    end;
adhoc_local_commands(Acc, _From, _To, _Req) ->
    Acc.

run(_Action, _From, _Server, #adhoc_command{action = cancel} = Req) ->
    xmpp_util:make_adhoc_response(Req, #adhoc_command{status = canceled});
run(list, From, Server, #adhoc_command{lang = Lang} = Req) ->
    case decide(From, Server, list, #{}) of
        {allowed, _} ->
            Users = [U || {U, _} <- ejabberd_auth:get_users(Server)],
            case with_store(Server, fun(H) -> xmpp_hosting_nif:domain_user_list(H, Server, Users) end) of
                {ok, #{jids := Jids, text := Text}} ->
                    Form = #xdata{type = result,
                                  fields = [hidden_form_type(),
                                            #xdata_field{var = <<"accountjids">>, type = 'jid-multi',
                                                         label = translate:translate(Lang, ?T("Accounts")),
                                                         values = Jids}]},
                    xmpp_util:make_adhoc_response(
                      Req, #adhoc_command{status = completed, xdata = Form,
                                          notes = [#adhoc_note{type = info, data = Text}]});
                {error, Err} ->
                    ?ERROR_MSG("xmpp_hosting_users ~ts: cannot list users: ~p", [Server, Err]),
                    {error, xmpp:err_internal_server_error()}
            end;
        {refused, Err} -> {error, stanza_error(Err, Lang)}
    end;
run(Action, From, Server, #adhoc_command{xdata = undefined, lang = Lang} = Req) ->
    case decide(From, Server, undefined, #{}) of
        {allowed, _} ->
            xmpp_util:make_adhoc_response(
              Req, #adhoc_command{status = executing, xdata = form(Action, Lang),
                                  actions = #adhoc_actions{execute = complete, complete = true}});
        {refused, Err} -> {error, stanza_error(Err, Lang)}
    end;
run(Action, From, Server, #adhoc_command{xdata = #xdata{} = X, lang = Lang} = Req) ->
    Fields = maps:from_list([{Var, V} || #xdata_field{var = Var, values = [V | _]} <- X#xdata.fields]),
    case decide(From, Server, Action, Fields) of
        {allowed, D} ->
            case carry_out(Action, D, Fields, Server) of
                ok ->
                    ?INFO_MSG("xmpp_hosting_users: ~ts (by ~ts as ~ts)",
                              [maps:get(done, D), jid:encode(jid:remove_resource(From)), maps:get(as, D)]),
                    xmpp_util:make_adhoc_response(
                      Req, #adhoc_command{status = completed,
                                          notes = [#adhoc_note{type = info, data = maps:get(done, D)}]});
                {refused, Err} -> {error, stanza_error(Err, Lang)};
                {failed, Why} ->
                    ?ERROR_MSG("xmpp_hosting_users ~ts: ~ts failed: ~p", [Server, Action, Why]),
                    {error, xmpp:err_internal_server_error()}
            end;
        {refused, Err} -> {error, stanza_error(Err, Lang)}
    end.

%% The core's decision; `internal` when the store cannot answer.
decide(From, Server, Action, Fields) ->
    Bare = jid:remove_resource(From),
    Operator = acl:match_rule(Server, gen_mod:get_module_opt(Server, ?MODULE, access_operator), From) == allow,
    Cmd = #{domain => Server, requester => jid:encode(Bare), operator_admin => Operator,
            action => Action,
            account => maps:get(<<"accountjid">>, Fields, undefined),
            password => maps:get(<<"password">>, Fields, undefined),
            password_verify => maps:get(<<"password-verify">>, Fields, undefined),
            policy => maps:get(<<"policy">>, Fields, undefined)},
    case with_store(Server, fun(H) -> xmpp_hosting_nif:decide_user_command(H, Cmd) end) of
        {ok, #{decision := <<"allowed">>} = D} -> {allowed, D};
        {ok, #{decision := <<"refused">>} = R} -> {refused, R};
        {error, Err} ->
            ?ERROR_MSG("xmpp_hosting_users ~ts: cannot decide ~p: ~p", [Server, Action, Err]),
            {refused, internal}
    end.

carry_out(registration, _D, _Fields, _Server) ->
    ok;  % the core has set it
carry_out(Action, #{username := User} = D, Fields, Server) ->
    Exists = ejabberd_auth:user_exists(User, Server),
    case {Exists, D} of
        {true, #{if_exists := #{} = Refusal}} -> {refused, Refusal};
        {false, #{if_missing := #{} = Refusal}} -> {refused, Refusal};
        _ -> account_api(Action, User, Server, maps:get(<<"password">>, Fields, undefined))
    end.

account_api(create, User, Server, Password) ->
    case ejabberd_auth:try_register(User, Server, Password) of
        ok -> ok;
        {error, Why} -> {failed, Why}
    end;
account_api(password, User, Server, Password) ->
    case ejabberd_auth:set_password(User, Server, Password) of
        ok -> ok;
        {error, Why} -> {failed, Why}
    end;
account_api(delete, User, Server, _Password) ->
    ejabberd_auth:remove_user(User, Server),
    ok.

stanza_error(internal, _Lang) ->
    xmpp:err_internal_server_error();
stanza_error(#{type := Type, condition := Cond, text := Text}, Lang) ->
    xmpp_hosting_stanza:error(Type, Cond, Text, Lang).

hidden_form_type() ->
    #xdata_field{var = <<"FORM_TYPE">>, type = hidden, values = [?NS_ADMIN_FORM]}.

form(registration, Lang) ->
    T = fun(S) -> translate:translate(Lang, S) end,
    #xdata{type = form, title = T(?T("Who may register on this domain")),
           fields = [hidden_form_type(),
                     #xdata_field{var = <<"policy">>, type = 'list-single', required = true,
                                  label = T(?T("Registration")),
                                  options = [#xdata_option{label = T(?T("Anyone")), value = <<"open">>},
                                             #xdata_option{label = T(?T("With an invite")), value = <<"invite">>},
                                             #xdata_option{label = T(?T("Nobody")), value = <<"closed">>}]}]};
form(delete, Lang) ->
    #xdata{type = form, title = translate:translate(Lang, ?T("Account")),
           fields = [hidden_form_type(), account_field(Lang)]};
form(_CreateOrPassword, Lang) ->
    T = fun(S) -> translate:translate(Lang, S) end,
    #xdata{type = form, title = T(?T("Account and password")),
           fields = [hidden_form_type(), account_field(Lang),
                     #xdata_field{var = <<"password">>, type = 'text-private', required = true,
                                  label = T(?T("Password"))},
                     #xdata_field{var = <<"password-verify">>, type = 'text-private', required = true,
                                  label = T(?T("Password again"))}]}.

account_field(Lang) ->
    #xdata_field{var = <<"accountjid">>, type = 'jid-single', required = true,
                 label = translate:translate(Lang, ?T("The account's JID"))}.

with_store(Host, Fun) ->
    case mod_xmpp_hosting:store(Host) of
        {ok, H} -> Fun(H);
        {error, _} = Err -> Err
    end.
