%%% Invite-only registration for ejabberd, decided by xmpp-hosting.
%%%
%%% ejabberd 23.01 has no hook that can veto a registration, so this module answers the
%%% unauthenticated registration IQs itself, before mod_register sees them (c2s hook priority 40
%%% against mod_register's 50), and creates accounts through mod_register:try_register/5, which
%%% keeps mod_register's own checks (password strength, access, ip_access). The client flow is
%%% the one Prosody offers, from the same rules in the Rust core:
%%%   1. stream features urn:xmpp:invite and urn:xmpp:ibr-token:0;
%%%   2. <iq type='set'><preauth xmlns='urn:xmpp:pars:0' token='...'/></iq>, answered with a
%%%      result or cancel/item-not-found (modify/bad-request without a token);
%%%   3. XEP-0077 registration, decided by the domain's policy (invite, open, closed); a use of
%%%      the invite is spent only when the account exists, and a roster invite ends with the new
%%%      account and the inviter subscribed to each other.
%%% Someone who already has an account uses a roster invite by sending the inviter a
%%% subscription request that carries the token (XEP-0379); it is approved for the inviter, who
%%% asks back, so both end subscribed. The invite's use is spent as a registration would spend it.
%%%
%%% Configure mod_register with `allow_modules: [mod_xmpp_hosting_invites]` (so no other path,
%%% such as web registration, creates accounts around the gate) and `registration_timeout:
%%% infinity` (the per-IP limits of `open` domains are the store's).
-module(mod_xmpp_hosting_invites).

-behaviour(gen_mod).

-export([start/2, stop/1, reload/3, depends/2, mod_options/1, mod_opt_type/1, mod_doc/0]).
-export([c2s_unauthenticated_packet/2, c2s_pre_auth_features/2, roster_in_subscription/2]).
-export([adhoc_local_items/4, adhoc_local_commands/4]).

-include("xmpp.hrl").
-include("logger.hrl").
-include("translate.hrl").

-define(NS_PARS, <<"urn:xmpp:pars:0">>).
-define(NS_INVITE, <<"urn:xmpp:invite">>).
-define(NS_IBR_TOKEN, <<"urn:xmpp:ibr-token:0">>).

%%%===================================================================
%%% gen_mod
%%%===================================================================

start(Host, _Opts) ->
    ensure_hosted(Host),
    ejabberd_hooks:add(c2s_pre_auth_features, Host, ?MODULE, c2s_pre_auth_features, 50),
    ejabberd_hooks:add(c2s_unauthenticated_packet, Host, ?MODULE, c2s_unauthenticated_packet, 40),
    %% After mod_roster (50) has recorded the request as pending.
    ejabberd_hooks:add(roster_in_subscription, Host, ?MODULE, roster_in_subscription, 60),
    ejabberd_hooks:add(adhoc_local_items, Host, ?MODULE, adhoc_local_items, 50),
    ejabberd_hooks:add(adhoc_local_commands, Host, ?MODULE, adhoc_local_commands, 50),
    ok.

stop(Host) ->
    ejabberd_hooks:delete(c2s_pre_auth_features, Host, ?MODULE, c2s_pre_auth_features, 50),
    ejabberd_hooks:delete(c2s_unauthenticated_packet, Host, ?MODULE, c2s_unauthenticated_packet, 40),
    ejabberd_hooks:delete(roster_in_subscription, Host, ?MODULE, roster_in_subscription, 60),
    ejabberd_hooks:delete(adhoc_local_items, Host, ?MODULE, adhoc_local_items, 50),
    ejabberd_hooks:delete(adhoc_local_commands, Host, ?MODULE, adhoc_local_commands, 50),
    ok.

reload(_Host, _NewOpts, _OldOpts) ->
    ok.

depends(_Host, _Opts) ->
    [{mod_xmpp_hosting, hard}, {mod_register, hard}, {mod_roster, hard}, {mod_adhoc, soft}].

%% Who may run urn:xmpp:invite#create-account; `configure` is the rule ejabberd's own admin
%% commands (mod_configure) use.
mod_opt_type(access_create_account) ->
    econf:acl().

mod_options(_Host) ->
    [{access_create_account, configure}].

mod_doc() ->
    #{desc =>
          ?T("Invite-only in-band registration (XEP-0401, XEP-0445) from the xmpp-hosting "
             "store: the domain's registration policy (invite, open or closed), invites "
             "created with the 'xmpp_hosting_invite_create*' commands or the 'xmpp-hosting' "
             "command line tool, and mutual subscriptions for roster invites. Set "
             "mod_register's 'allow_modules' to [mod_xmpp_hosting_invites]. Ad-hoc commands "
             "(XEP-0401): urn:xmpp:invite#invite for local users when the domain lets users "
             "invite, urn:xmpp:invite#create-account for 'access_create_account'."),
      opts =>
          [{access_create_account,
            #{value => ?T("AccessName"),
              desc => ?T("Who may create account invites with the ad-hoc command. "
                         "The default is 'configure'.")}}]}.

%%%===================================================================
%%% Hooks
%%%===================================================================

c2s_pre_auth_features(Acc, _Host) ->
    [#xmlel{name = <<"register">>, attrs = [{<<"xmlns">>, ?NS_INVITE}]},
     #xmlel{name = <<"register">>, attrs = [{<<"xmlns">>, ?NS_IBR_TOKEN}]} | Acc].

c2s_unauthenticated_packet(State, #iq{type = set, sub_els = [#xmlel{name = <<"preauth">>} = El]} = IQ) ->
    case fxml:get_tag_attr_s(<<"xmlns">>, El) of
        ?NS_PARS -> {stop, preauth(State, IQ, fxml:get_tag_attr_s(<<"token">>, El))};
        _ -> State
    end;
c2s_unauthenticated_packet(State, #iq{type = set, sub_els = [_]} = IQ) ->
    try xmpp:try_subtag(IQ, #register{}) of
        #register{username = User, password = Password, remove = false}
          when is_binary(User), is_binary(Password) ->
            {stop, register(State, IQ, User, Password)};
        _ -> State
    catch
        _:{xmpp_codec, _} -> State  % mod_register answers malformed requests
    end;
c2s_unauthenticated_packet(State, _) ->
    State.

%% A subscription request to a local user that carries a roster invite's token (XEP-0379). When
%% the store approves it (and spends the use), the inviter approves and asks back, and the
%% request is not shown to the inviter's clients (false); any other request goes on as usual.
roster_in_subscription(Acc, #presence{type = subscribe, from = From, to = To} = Pres) ->
    Inviter = jid:remove_resource(To),
    Contact = jid:remove_resource(From),
    case preauth_token(Pres) of
        undefined -> Acc;
        Token ->
            case pending_in(Inviter, Contact) andalso preauthorized(Inviter, Contact, Token) of
                true -> approve_and_ask_back(Inviter, Contact), false;
                false -> Acc
            end
    end;
roster_in_subscription(Acc, _Pres) ->
    Acc.

-define(NODE_INVITE, <<"urn:xmpp:invite#invite">>).
-define(NODE_CREATE_ACCOUNT, <<"urn:xmpp:invite#create-account">>).

%% The commands, listed under the server's commands node (mod_adhoc).
adhoc_local_items(Acc, From, #jid{lserver = Server} = To, Lang) ->
    Items = case Acc of {result, I} -> I; _ -> [] end,
    Mine = [#disco_item{jid = To, node = Node, name = translate:translate(Lang, Name)}
            || {Node, Name} <- [{?NODE_INVITE, ?T("Create new contact invite")},
                                {?NODE_CREATE_ACCOUNT, ?T("Create new account invite")}],
               may_run(Node, From, Server)],
    {result, Items ++ Mine}.

%% Single-stage commands: executing one creates the invite and answers with its URI.
adhoc_local_commands(_Acc, From, #jid{lserver = Server}, #adhoc_command{node = Node} = Request)
  when Node == ?NODE_INVITE; Node == ?NODE_CREATE_ACCOUNT ->
    #adhoc_command{action = Action, lang = Lang} = Request,
    case {Action, may_run(Node, From, Server)} of
        {execute, true} -> adhoc_create(Node, From, Server, Request);
        {execute, false} -> {error, xmpp:err_forbidden(?T("Access denied by service policy"), Lang)};
        _ -> {error, xmpp:err_bad_request(?T("Incorrect value of 'action' attribute"), Lang)}
    end;
adhoc_local_commands(Acc, _From, _To, _Request) ->
    Acc.

%% Contact invites are for the domain's own users (the core checks users_may_invite).
may_run(?NODE_INVITE, #jid{luser = User, lserver = Server}, Server) -> User /= <<>>;
may_run(?NODE_CREATE_ACCOUNT, From, Server) ->
    Access = gen_mod:get_module_opt(Server, ?MODULE, access_create_account),
    acl:match_rule(Server, Access, From) == allow;
may_run(_Node, _From, _Server) -> false.

adhoc_create(Node, From, Server, #adhoc_command{lang = Lang} = Request) ->
    Spec = case Node of
               ?NODE_INVITE ->
                   Bare = jid:encode(jid:remove_resource(From)),
                   #{domain => Server, kind => roster, created_by => Bare, inviter => Bare};
               ?NODE_CREATE_ACCOUNT ->
                   ?INFO_MSG("xmpp_hosting_invites: ~ts creates an account invite", [jid:encode(From)]),
                   #{domain => Server, kind => account}
           end,
    Response = case with_store(Server, fun(H) -> xmpp_hosting_nif:create_invite(H, Spec) end) of
                   {ok, #{uri := Uri, invite := Invite} = Created} ->
                       #adhoc_command{status = completed, xdata = invite_form(Uri, Created, Invite, Lang)};
                   {error, {_Code, Msg}} ->
                       #adhoc_command{status = completed, notes = [#adhoc_note{type = error, data = Msg}]};
                   {error, Other} ->
                       ?ERROR_MSG("xmpp_hosting_invites ~ts: cannot create an invite: ~p", [Server, Other]),
                       #adhoc_command{status = completed,
                                      notes = [#adhoc_note{type = error, data = <<"Internal error">>}]}
               end,
    xmpp_util:make_adhoc_response(Request, Response).

%% The result form of XEP-0401 (and Prosody's mod_invites_adhoc): uri, landing-url, expire.
invite_form(Uri, Created, Invite, Lang) ->
    Url = [#xdata_field{var = <<"landing-url">>, type = 'text-single', values = [U],
                        label = translate:translate(Lang, ?T("Invite web page"))}
           || U <- [maps:get(landing_url, Created, null)], is_binary(U)],
    Expire = [#xdata_field{var = <<"expire">>, type = 'text-single',
                           label = translate:translate(Lang, ?T("Invite valid until")),
                           values = [xmpp_util:encode_timestamp({T div 1000000, T rem 1000000, 0})]}
              || T <- [maps:get(expires_at, Invite, null)], is_integer(T)],
    #xdata{type = result, title = translate:translate(Lang, ?T("Your invite has been created")),
           fields = [#xdata_field{var = <<"uri">>, type = 'text-single', values = [Uri],
                                  label = translate:translate(Lang, ?T("Invite URI"))}
                     | Url ++ Expire]}.

%%%===================================================================
%%% Internal
%%%===================================================================

%% The token a client presents before registering; kept in the session until it registers.
preauth(#{lang := Lang} = State, IQ, <<>>) ->
    send(State, xmpp:make_error(IQ, xmpp:err_bad_request(?T("The preauth element needs a token"), Lang)));
preauth(#{server := Server, lang := Lang} = State, IQ, Token) ->
    case with_store(Server, fun(H) -> xmpp_hosting_nif:check_invite(H, Server, Token) end) of
        {ok, #{id := _}} ->
            send(State#{xmpp_hosting_token => Token}, xmpp:make_iq_result(IQ));
        {ok, undefined} ->
            Txt = ?T("The invite is not valid (unknown, expired or already used)"),
            send(State, xmpp:make_error(IQ, xmpp:err_item_not_found(Txt, Lang)));
        {error, Err} ->
            ?ERROR_MSG("xmpp_hosting_invites ~ts: cannot check an invite: ~p", [Server, Err]),
            send(State, xmpp:make_error(IQ, xmpp:err_internal_server_error()))
    end.

%% mod_register's captcha_protected refuses a registration without a solved CAPTCHA (a plain
%% username and password form) with not-allowed, and this module answers before mod_register:
%% it refuses them alike, unless the client presented an invite the store accepted, which
%% stands for the CAPTCHA (a bot on an open domain has none). The CAPTCHA form itself goes to
%% mod_register.
register(#{server := Server} = State, IQ, User, Password) ->
    Invited = maps:get(xmpp_hosting_token, State, undefined) /= undefined,
    case not Invited andalso mod_register_opt:captcha_protected(Server) of
        true -> send(State, xmpp:make_error(IQ, xmpp:err_not_allowed()));
        false -> register_checked(State, IQ, User, Password)
    end.

register_checked(#{server := Server, lang := Lang, ip := {Address, _}} = State, IQ, User, Password) ->
    Token = maps:get(xmpp_hosting_token, State, undefined),
    Ip = ip_text(Address),
    Request = #{domain => Server, username => User, ip => Ip, token => Token},
    Begin = fun(H) -> xmpp_hosting_nif:begin_registration(H, Request) end,
    case with_store(Server, Begin) of
        {ok, #{decision := <<"refused">>, type := Type, condition := Cond, text := Text, reason := Why}} ->
            ?INFO_MSG("xmpp_hosting_invites: registration of ~ts@~ts from ~ts refused: ~ts",
                      [User, Server, Ip, Why]),
            send(State, xmpp:make_error(IQ, xmpp_hosting_stanza:error(Type, Cond, Text, Lang)));
        {ok, #{decision := <<"allowed">>, id := Ticket, username := Prepped} = Ticket0} ->
            %% The account is created under the name the core checked: nodeprep'd, so that a
            %% look-alike (admin + U+00AD) met the reserved and blocked names as it will exist.
            Result = create(Ticket0, Prepped, Server, Password, Address),
            Finish = fun(H) -> xmpp_hosting_nif:finish_registration(H, Ticket, Result == ok) end,
            case with_store(Server, Finish) of
                ok -> ok;
                {error, Err} -> ?ERROR_MSG("xmpp_hosting_invites: cannot finish registration ~p: ~p",
                                           [Ticket, Err])
            end,
            case Result of
                ok ->
                    subscribe_both(Ticket0, Prepped, Server),
                    send(State#{xmpp_hosting_token => undefined}, xmpp:make_iq_result(IQ));
                {error, Why} ->
                    send(State, xmpp:make_error(IQ, registration_error(Why, Lang)))
            end;
        {error, Err} ->
            ?ERROR_MSG("xmpp_hosting_invites ~ts: registration refused, the store failed: ~p", [Server, Err]),
            Txt = ?T("Registration is unavailable, try again later"),
            send(State, xmpp:make_error(IQ, xmpp:err_internal_server_error(Txt, Lang)))
    end.

preauth_token(#presence{sub_els = Els}) ->
    Tokens = [fxml:get_tag_attr_s(<<"token">>, El)
              || #xmlel{name = <<"preauth">>} = El <- Els, fxml:get_tag_attr_s(<<"xmlns">>, El) == ?NS_PARS],
    case Tokens of
        [Token | _] when Token /= <<>> -> Token;
        _ -> undefined
    end.

%% mod_roster recorded the request and the inviter has not approved the contact yet. (A request
%% to an account that no longer exists is bounced before this hook: the invite scenarios check
%% that a removed inviter's token approves nothing.)
pending_in(#jid{luser = User, lserver = Server}, Contact) ->
    {Sub, Ask, _} = ejabberd_hooks:run_fold(roster_get_jid_info, Server, {none, none, []},
                                            [User, Server, Contact]),
    (Sub == none orelse Sub == to) andalso (Ask == in orelse Ask == both).

preauthorized(#jid{lserver = Server} = Inviter, Contact, Token) ->
    InviterBin = jid:encode(Inviter),
    ContactBin = jid:encode(Contact),
    Decide = fun(H) -> xmpp_hosting_nif:preauthorize_subscription(H, InviterBin, ContactBin, Token) end,
    case with_store(Server, Decide) of
        {ok, #{decision := <<"approved">>, invite_id := Id}} ->
            ?INFO_MSG("xmpp_hosting_invites: subscription of ~ts to ~ts pre-approved by invite ~p",
                      [ContactBin, InviterBin, Id]),
            true;
        {ok, #{decision := <<"ignored">>, reason := Why}} ->
            ?DEBUG("xmpp_hosting_invites: the token from ~ts to ~ts approves nothing: ~ts",
                   [ContactBin, InviterBin, Why]),
            false;
        {error, Err} ->
            ?ERROR_MSG("xmpp_hosting_invites ~ts: cannot check a subscription token: ~p", [Server, Err]),
            false
    end.

%% What the inviter's client would have sent, through the hook ejabberd_c2s runs for it:
%% subscribed, then subscribe unless the inviter already has or asked for the contact's
%% presence. mod_roster updates the roster, pushes it to the inviter's clients and sends the
%% inviter's presence to the contact.
approve_and_ask_back(#jid{luser = User, lserver = Server} = Inviter, Contact) ->
    send_subscription(subscribed, Inviter, Contact),
    case ejabberd_hooks:run_fold(roster_get_jid_info, Server, {none, none, []}, [User, Server, Contact]) of
        {from, none, _} -> send_subscription(subscribe, Inviter, Contact);
        _ -> ok
    end.

send_subscription(Type, #jid{lserver = Server} = From, To) ->
    Pres = #presence{type = Type, from = From, to = To},
    ejabberd_hooks:run(roster_out_subscription, Server, [Pres]),
    ejabberd_router:route(Pres).

%% A reset invite sets the password of its existing account; any other creates the account.
create(#{reset := true}, User, Server, Password, _Address) ->
    case {ejabberd_auth:user_exists(User, Server), password_check(Server, Password)} of
        {false, _} -> {error, not_exists};
        {true, ok} -> ejabberd_auth:set_password(User, Server, Password);
        {true, Err} -> Err
    end;
create(_Ticket, User, Server, Password, Address) ->
    case mod_register:try_register(User, Server, Password, Address, ?MODULE) of
        ok ->
            registered(jid:make(User, Server), Address),
            ok;
        Err -> Err
    end.

%% What mod_register does after its own registrations (in try_register/6, not exported): the
%% welcome_message to the new account and the note to registration_watchers.
registered(#jid{lserver = Server} = JID, Address) ->
    case mod_register_opt:welcome_message(Server) of
        {<<>>, <<>>} -> ok;
        {Subject, Body} ->
            ejabberd_router:route(#message{from = jid:make(Server), to = JID,
                                           subject = xmpp:mk_text(Subject), body = xmpp:mk_text(Body)})
    end,
    mod_register:send_registration_notifications(?MODULE, JID, Address).

%% The checks mod_register makes on a new account's password (its own are not exported), so
%% that a reset cannot set a password a registration would refuse.
password_check(Server, Password) ->
    case jid:resourceprep(Password) of
        error -> {error, invalid_password};
        _ ->
            case mod_register_opt:password_strength(Server) of
                0 -> ok;
                Min -> case ejabberd_auth:entropy(Password) >= Min of
                           true -> ok;
                           false -> {error, weak_password}
                       end
            end
    end.

subscribe_both(#{roster_with := Inviter}, User, Server) when is_binary(Inviter) ->
    %% The core stored the inviter as a bare JID on this domain; the account may have been
    %% removed since the invite was made, and a roster for a missing account would linger.
    #jid{luser = IUser, lserver = IServer} = InviterJID = jid:decode(Inviter),
    NewJID = jid:make(User, Server),
    case ejabberd_auth:user_exists(IUser, IServer) of
        true ->
            ?INFO_MSG("xmpp_hosting_invites: subscribing ~ts and ~ts to each other (roster invite)",
                      [jid:encode(NewJID), Inviter]),
            both(InviterJID, NewJID),
            both(NewJID, InviterJID);
        false ->
            ?WARNING_MSG("xmpp_hosting_invites: ~ts registered with a roster invite from ~ts, "
                         "which no longer exists: no subscription", [jid:encode(NewJID), Inviter])
    end;
subscribe_both(_Ticket, _User, _Server) ->
    ok.

both(Owner, Contact) ->
    Item = #roster_item{jid = Contact, subscription = both},
    mod_roster:set_item_and_notify_clients(Owner, Item, true).

%% mod_register's reasons, answered as mod_register answers them.
registration_error(Why, Lang) ->
    Txt = format_error(Why),
    case Why of
        exists -> xmpp:err_conflict(Txt, Lang);
        not_exists -> xmpp:err_item_not_found(Txt, Lang);
        invalid_jid -> xmpp:err_jid_malformed(Txt, Lang);
        eaccess -> xmpp:err_forbidden(Txt, Lang);
        wait -> xmpp:err_resource_constraint(Txt, Lang);
        weak_password -> xmpp:err_not_acceptable(Txt, Lang);
        invalid_password -> xmpp:err_not_acceptable(Txt, Lang);
        not_allowed -> xmpp:err_not_allowed(Txt, Lang);
        _ -> xmpp:err_internal_server_error(Txt, Lang)
    end.

format_error(not_exists) -> <<"The account does not exist">>;
format_error(Why) -> mod_register:format_error(Why).

send(#{server := Server} = State, Reply) ->
    ejabberd_c2s:send(State, xmpp:set_from_to(Reply, jid:make(Server), undefined)).

%% The client's address; the core counts an IPv4-mapped IPv6 address (a dual-stack listener's
%% ::ffff:a.b.c.d) as the IPv4 address, as Prosody and the CLI see it.
ip_text(Address) ->
    list_to_binary(inet:ntoa(Address)).

with_store(Host, Fun) ->
    case mod_xmpp_hosting:store(Host) of
        {ok, H} -> Fun(H);
        {error, _} = Err -> Err
    end.

%% A host that loads this module is hosted (the core's rule, the same on Prosody): the store is
%% told so, with the default (invite-only) policy until an admin changes it. Never waited for:
%% while another process holds the store's lock, the core's worker adds the host once it is
%% free (unless an operator removed it in the meantime), and mod_xmpp_hosting logs the outcome.
ensure_hosted(Host) ->
    case mod_xmpp_hosting:background(Host, {ensure_hosted, Host}, <<Host/binary, " is added to the store">>) of
        {ok, #{log := Log}} when is_binary(Log) -> ?INFO_MSG("xmpp_hosting_invites: ~ts", [Log]);
        {ok, _} -> ok;
        later -> ok;
        {error, Err} -> ?ERROR_MSG("xmpp_hosting_invites: cannot add ~ts to the store: ~p", [Host, Err])
    end.
