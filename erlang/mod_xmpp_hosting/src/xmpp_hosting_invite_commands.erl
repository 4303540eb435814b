%%% ejabberdctl commands for invites, registered with mod_xmpp_hosting's own commands. EXPIRES_IN
%%% is seconds (0 for the domain's default, 7 days); NOTE is kept for the admins ("" for none);
%%% each create command prints the invite's id, its token (shown only then) and its URI.
%%%   xmpp_hosting_invite_create DOMAIN USES EXPIRES_IN NOTE        an account, any username
%%%   xmpp_hosting_invite_create_named DOMAIN USERNAME EXPIRES_IN NOTE
%%%                                   an account with this username, reserved until it expires
%%%   xmpp_hosting_invite_create_roster DOMAIN INVITER USES EXPIRES_IN NOTE
%%%                                   an account (or, for an existing account, a subscription)
%%%                                   subscribed both ways with INVITER, a bare JID on DOMAIN
%%%   xmpp_hosting_invite_create_reset DOMAIN USERNAME EXPIRES_IN NOTE
%%%                                   a new password for an existing account
%%%   xmpp_hosting_invite_list DOMAIN   one line per invite
%%%   xmpp_hosting_invite_revoke DOMAIN ID
%%%   xmpp_hosting_invite_purge         delete invites nobody can use any more
-module(xmpp_hosting_invite_commands).

-export([spec/0]).
-export([create/4, create_named/4, create_roster/5, create_reset/4, list/1, revoke/2, purge/0]).

-include("ejabberd_commands.hrl").

-define(CREATED, {ok, <<"Invite 1 token Xy... uri xmpp:customer.example?register;preauth=Xy...">>}).

spec() ->
    [#ejabberd_commands{name = xmpp_hosting_invite_create, tags = [xmpp_hosting],
                        desc = "Create an account invite; prints its token and URI",
                        longdesc = "USES accounts may register with it. EXPIRES_IN is seconds "
                                   "(0: the domain's default, 7 days). NOTE is kept with the invite "
                                   "for the admins (\"\" for none). The token is shown only now.",
                        policy = admin,
                        module = ?MODULE, function = create,
                        args = [{domain, binary}, {uses, integer}, {expires_in, integer}, {note, binary}],
                        args_example = [<<"customer.example">>, 1, 0, <<"for Alice">>],
                        result = {res, restuple},
                        result_example = ?CREATED},
     #ejabberd_commands{name = xmpp_hosting_invite_create_named, tags = [xmpp_hosting],
                        desc = "Create an invite for one username, reserved until it expires",
                        policy = admin,
                        module = ?MODULE, function = create_named,
                        args = [{domain, binary}, {username, binary}, {expires_in, integer}, {note, binary}],
                        args_example = [<<"customer.example">>, <<"alice">>, 0, <<"">>],
                        result = {res, restuple},
                        result_example = ?CREATED},
     #ejabberd_commands{name = xmpp_hosting_invite_create_roster, tags = [xmpp_hosting],
                        desc = "Create a contact invite: the new account, or an existing one that "
                               "subscribes with it, and INVITER end subscribed both ways",
                        policy = admin,
                        module = ?MODULE, function = create_roster,
                        args = [{domain, binary}, {inviter, binary}, {uses, integer}, {expires_in, integer},
                                {note, binary}],
                        args_example = [<<"customer.example">>, <<"alice@customer.example">>, 1, 0, <<"">>],
                        result = {res, restuple},
                        result_example = {ok, <<"Invite 2 token Xy... uri xmpp:alice@customer.example?roster;"
                                                "preauth=Xy...;ibr=y">>}},
     #ejabberd_commands{name = xmpp_hosting_invite_create_reset, tags = [xmpp_hosting],
                        desc = "Create a password reset invite for an existing account",
                        policy = admin,
                        module = ?MODULE, function = create_reset,
                        args = [{domain, binary}, {username, binary}, {expires_in, integer}, {note, binary}],
                        args_example = [<<"customer.example">>, <<"alice">>, 3600, <<"lost phone">>],
                        result = {res, restuple},
                        result_example = ?CREATED},
     #ejabberd_commands{name = xmpp_hosting_invite_list, tags = [xmpp_hosting],
                        desc = "List a domain's invites",
                        policy = admin,
                        module = ?MODULE, function = list,
                        args = [{domain, binary}],
                        args_example = [<<"customer.example">>],
                        result = {invites, {list, {invite, string}}},
                        result_desc = "One line per invite: id, kind, status, uses left/total, "
                                      "expiry (ISO 8601 UTC), creator, then username, inviter, note"},
     #ejabberd_commands{name = xmpp_hosting_invite_revoke, tags = [xmpp_hosting],
                        desc = "Revoke an invite",
                        policy = admin,
                        module = ?MODULE, function = revoke,
                        args = [{domain, binary}, {id, integer}],
                        args_example = [<<"customer.example">>, 1],
                        result = {res, restuple},
                        result_example = {ok, <<"Revoked invite 1">>}},
     #ejabberd_commands{name = xmpp_hosting_invite_purge, tags = [xmpp_hosting],
                        desc = "Delete invites nobody can use any more",
                        policy = admin,
                        module = ?MODULE, function = purge,
                        args = [],
                        result = {res, restuple},
                        result_example = {ok, <<"Removed 2 invite(s)">>}}].

create(Domain, Uses, ExpiresIn, Note) ->
    new(#{domain => Domain, kind => account, uses => Uses}, ExpiresIn, Note).

create_named(Domain, Username, ExpiresIn, Note) ->
    new(#{domain => Domain, kind => account, username => Username}, ExpiresIn, Note).

create_roster(Domain, Inviter, Uses, ExpiresIn, Note) ->
    new(#{domain => Domain, kind => roster, inviter => Inviter, uses => Uses}, ExpiresIn, Note).

create_reset(Domain, Username, ExpiresIn, Note) ->
    new(#{domain => Domain, kind => reset, username => Username}, ExpiresIn, Note).

list(Domain) ->
    call(fun(H) -> xmpp_hosting_nif:invites(H, Domain) end,
         fun(Invites) -> [line(I) || I <- Invites] end).

%% The id goes to the core as digits: one too big for the store is refused in words there.
revoke(Domain, Id) ->
    call(fun(H) -> xmpp_hosting_nif:revoke_invite(H, Domain, integer_to_binary(Id)) end,
         fun(#{id := Revoked}) -> {ok, iolist_to_binary(io_lib:format("Revoked invite ~B", [Revoked]))} end).

%% Registrations that never finished are settled first by this node's account store (a use is
%% never given back for an account that exists; other nodes' domains are left to them).
purge() ->
    call(fun(H) ->
                 case settle_stale(H) of
                     {ok, Settled} ->
                         case xmpp_hosting_nif:purge_invites(H) of
                             {ok, Report} -> {ok, Report#{settled => Settled}};
                             Other -> Other
                         end;
                     Err -> Err
                 end
         end,
         fun(#{invites_removed := N, settled := S, registrations_unsettled := U}) ->
                 {ok, iolist_to_binary(
                        [io_lib:format("Removed ~B invite(s)", [N]),
                         [io_lib:format("; settled ~B registration(s) that never finished", [S]) || S > 0],
                         [io_lib:format("; ~B registration(s) that never finished wait for their server", [U])
                          || U > 0]])}
         end).

%%%===================================================================
%%% Internal
%%%===================================================================

settle_stale(H) ->
    case xmpp_hosting_nif:stale_registrations(H, 100) of
        {ok, Stale} ->
            Hosts = ejabberd_option:hosts(),
            Answers = [#{id => Id, account_exists => ejabberd_auth:user_exists(User, Domain)}
                       || #{id := Id, domain := Domain, username := User} <- Stale, lists:member(Domain, Hosts)],
            case Answers of
                [] -> {ok, 0};
                _ -> xmpp_hosting_nif:settle_stale_registrations(H, Answers)
            end;
        Err -> Err
    end.

%% The core checks the spec (kinds, usernames, the inviter's domain, uses, the expiry) and says
%% what is wrong. Numbers go as digits, so that a 20-digit one is refused in words by the core
%% rather than failing as a bignum in the NIF.
new(Spec, ExpiresIn, Note) ->
    Expiry = case ExpiresIn of
                 0 -> default;
                 _ -> integer_to_binary(ExpiresIn)
             end,
    Digits = maps:map(fun(uses, N) when is_integer(N) -> integer_to_binary(N); (_, V) -> V end, Spec),
    Full = Digits#{expiry => Expiry, note => case Note of <<>> -> undefined; _ -> Note end},
    call(fun(H) -> xmpp_hosting_nif:create_invite(H, Full) end,
         fun(#{token := Token, uri := Uri, invite := #{id := Id}}) ->
                 {ok, iolist_to_binary(io_lib:format("Invite ~B token ~ts uri ~ts", [Id, Token, Uri]))}
         end).

call(Call, Format) ->
    mod_xmpp_hosting:run_command(Call, Format).

%% The core's line: status (active, expired, used-up, revoked) by its clock, times in ISO 8601 UTC.
line(#{line := Line}) ->
    Line.
