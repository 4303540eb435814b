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
%%%
%%% Configure mod_register with `allow_modules: [mod_xmpp_hosting_invites]` (so no other path,
%%% such as web registration, creates accounts around the gate) and `registration_timeout:
%%% infinity` (the per-IP limits of `open` domains are the store's).
-module(mod_xmpp_hosting_invites).

-behaviour(gen_mod).

-export([start/2, stop/1, reload/3, depends/2, mod_options/1, mod_opt_type/1, mod_doc/0]).
-export([c2s_unauthenticated_packet/2, c2s_pre_auth_features/2]).

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
    ok.

stop(Host) ->
    ejabberd_hooks:delete(c2s_pre_auth_features, Host, ?MODULE, c2s_pre_auth_features, 50),
    ejabberd_hooks:delete(c2s_unauthenticated_packet, Host, ?MODULE, c2s_unauthenticated_packet, 40),
    ok.

reload(_Host, _NewOpts, _OldOpts) ->
    ok.

depends(_Host, _Opts) ->
    [{mod_xmpp_hosting, hard}, {mod_register, hard}, {mod_roster, hard}].

mod_opt_type(_) ->
    econf:any().

mod_options(_Host) ->
    [].

mod_doc() ->
    #{desc =>
          ?T("Invite-only in-band registration (XEP-0401, XEP-0445) from the xmpp-hosting "
             "store: the domain's registration policy (invite, open or closed), invites "
             "created with the 'xmpp_hosting_invite_create' command or the 'xmpp-hosting' "
             "command line tool, and mutual subscriptions for roster invites. Set "
             "mod_register's 'allow_modules' to [mod_xmpp_hosting_invites].")}.

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

register(#{server := Server, lang := Lang, ip := {Address, _}} = State, IQ, User, Password) ->
    Token = maps:get(xmpp_hosting_token, State, undefined),
    Ip = list_to_binary(inet:ntoa(Address)),
    Request = #{domain => Server, username => User, ip => Ip, token => Token},
    Begin = fun(H) -> xmpp_hosting_nif:begin_registration(H, Request) end,
    case with_store(Server, Begin) of
        {ok, #{decision := <<"refused">>, type := Type, condition := Cond, text := Text, reason := Why}} ->
            ?INFO_MSG("xmpp_hosting_invites: registration of ~ts@~ts from ~ts refused: ~ts",
                      [User, Server, Ip, Why]),
            send(State, xmpp:make_error(IQ, stanza_error(Type, Cond, Text, Lang)));
        {ok, #{decision := <<"allowed">>, id := Ticket} = Ticket0} ->
            Result = create(Ticket0, User, Server, Password, Address),
            Finish = fun(H) -> xmpp_hosting_nif:finish_registration(H, Ticket, Result == ok) end,
            case with_store(Server, Finish) of
                ok -> ok;
                {error, Err} -> ?ERROR_MSG("xmpp_hosting_invites: cannot finish registration ~p: ~p",
                                           [Ticket, Err])
            end,
            case Result of
                ok ->
                    subscribe_both(Ticket0, User, Server),
                    send(State#{xmpp_hosting_token => undefined}, xmpp:make_iq_result(IQ));
                {error, Why} ->
                    send(State, xmpp:make_error(IQ, registration_error(Why, Lang)))
            end;
        {error, Err} ->
            ?ERROR_MSG("xmpp_hosting_invites ~ts: registration refused, the store failed: ~p", [Server, Err]),
            Txt = ?T("Registration is unavailable, try again later"),
            send(State, xmpp:make_error(IQ, xmpp:err_internal_server_error(Txt, Lang)))
    end.

%% A reset invite sets the password of its existing account; any other creates the account.
create(#{reset := true}, User, Server, Password, _Address) ->
    case ejabberd_auth:user_exists(User, Server) of
        true -> ejabberd_auth:set_password(User, Server, Password);
        false -> {error, not_exists}
    end;
create(_Ticket, User, Server, Password, Address) ->
    mod_register:try_register(User, Server, Password, Address, ?MODULE).

subscribe_both(#{roster_with := Inviter}, User, Server) when is_binary(Inviter) ->
    case jid:decode(Inviter) of
        #jid{} = InviterJID ->
            NewJID = jid:make(User, Server),
            ?INFO_MSG("xmpp_hosting_invites: subscribing ~ts and ~ts to each other (roster invite)",
                      [jid:encode(NewJID), Inviter]),
            both(InviterJID, NewJID),
            both(NewJID, InviterJID);
        _ -> ok
    end;
subscribe_both(_Ticket, _User, _Server) ->
    ok.

both(Owner, Contact) ->
    Item = #roster_item{jid = Contact, subscription = both},
    mod_roster:set_item_and_notify_clients(Owner, Item, true).

%% The stanza error the core chose for a refusal.
stanza_error(Type, Cond, Text, Lang) ->
    #stanza_error{type = binary_to_existing_atom(Type, utf8),
                  reason = binary_to_existing_atom(Cond, utf8),
                  text = xmpp:mk_text(Text, Lang)}.

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

with_store(Host, Fun) ->
    case mod_xmpp_hosting:store(Host) of
        {ok, H} -> Fun(H);
        {error, _} = Err -> Err
    end.

%% A host that loads this module is hosted: make sure the store knows it, with the default
%% (invite-only) policy until an admin changes it.
ensure_hosted(Host) ->
    with_store(Host,
               fun(H) ->
                       case xmpp_hosting_nif:domain(H, Host) of
                           {ok, undefined} ->
                               ?INFO_MSG("xmpp_hosting_invites: added ~ts to the store "
                                         "(registration: invite only)", [Host]),
                               xmpp_hosting_nif:add_domain(H, Host);
                           Other -> Other
                       end
               end).
