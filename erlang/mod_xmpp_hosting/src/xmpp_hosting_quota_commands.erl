%%% ejabberdctl commands for upload limits, registered with mod_xmpp_hosting's own commands:
%%%   xmpp_hosting_quota_show DOMAIN USER           limits and usage of USER ("" for the domain)
%%%   xmpp_hosting_quota_set DOMAIN USER LIMIT BYTES   a domain's limit (USER ""; user_daily,
%%%                                                 domain_storage, ...) or USER's exception
%%%                                                 (max_file_size, storage, daily, weekly,
%%%                                                 monthly); BYTES "null" removes it
%%%   xmpp_hosting_quota_clear DOMAIN USER          USER is back on the domain's limits
%%%   xmpp_hosting_quota_audit / _repair            recount storage from the ledger's files and
%%%                                                 slots; list (and repair) totals that differ
%%% The limit names, the checks and the wording are the core's, as on the other command lines.
-module(xmpp_hosting_quota_commands).

-export([spec/0]).
-export([show/2, set/4, clear/2, audit/0, repair/0]).

-include("ejabberd_commands.hrl").

spec() ->
    [#ejabberd_commands{name = xmpp_hosting_quota_show, tags = [xmpp_hosting],
                        desc = "Show the upload limits and usage of a user or a domain",
                        policy = admin,
                        module = ?MODULE, function = show,
                        args = [{domain, binary}, {user, binary}],
                        args_desc = ["Domain", "Username, or \"\" for the whole domain"],
                        args_example = [<<"customer.example">>, <<"alice">>],
                        result = {res, restuple},
                        result_example = {ok, <<"alice@customer.example\nLargest file: 10 MB\n...">>}},
     #ejabberd_commands{name = xmpp_hosting_quota_set, tags = [xmpp_hosting],
                        desc = "Set one upload limit of a domain, or one user's exception",
                        longdesc = "Domain limits (USER \"\"): max_file_size, user_storage, "
                                   "domain_storage, user_daily, user_weekly, user_monthly, "
                                   "domain_daily, domain_weekly, domain_monthly, slot_lifetime. "
                                   "A user's exceptions: max_file_size, storage, daily, weekly, "
                                   "monthly. BYTES is a number of bytes, or null to remove the limit.",
                        policy = admin,
                        module = ?MODULE, function = set,
                        args = [{domain, binary}, {user, binary}, {limit, binary}, {bytes, binary}],
                        args_example = [<<"customer.example">>, <<"">>, <<"user_daily">>, <<"100000000">>],
                        result = {res, restuple},
                        result_example = {ok, <<"customer.example: user_daily = 100000000">>}},
     #ejabberd_commands{name = xmpp_hosting_quota_clear, tags = [xmpp_hosting],
                        desc = "Remove a user's upload exceptions (the domain's limits apply)",
                        policy = admin,
                        module = ?MODULE, function = clear,
                        args = [{domain, binary}, {user, binary}],
                        args_example = [<<"customer.example">>, <<"alice">>],
                        result = {res, restuple},
                        result_example = {ok, <<"alice@customer.example: exceptions removed">>}},
     #ejabberd_commands{name = xmpp_hosting_quota_audit, tags = [xmpp_hosting],
                        desc = "List the upload totals that differ from a recount of the ledger",
                        policy = admin,
                        module = ?MODULE, function = audit,
                        args = [],
                        result = {drifts, {list, {drift, string}}},
                        result_desc = "One line per scope whose totals differ; none when all match"},
     #ejabberd_commands{name = xmpp_hosting_quota_repair, tags = [xmpp_hosting],
                        desc = "Set the upload totals that differ to a recount of the ledger",
                        policy = admin,
                        module = ?MODULE, function = repair,
                        args = [],
                        result = {drifts, {list, {drift, string}}},
                        result_desc = "One line per scope that was repaired"}].

%% The core's words, scope first: for a domain also the limits each user has by default, for a
%% user their exceptions.
show(Domain, User) ->
    call(fun(H) -> xmpp_hosting_nif:describe_upload_quota(H, Domain, user(User)) end,
         fun(Text) -> {ok, Text} end).

set(Domain, User, Limit, Bytes) ->
    call(fun(H) -> xmpp_hosting_nif:set_upload_limit(H, Domain, user(User), Limit, Bytes) end,
         fun(_Report) -> {ok, <<(scope(Domain, User))/binary, ": ", Limit/binary, " = ", Bytes/binary>>} end).

clear(Domain, User) ->
    call(fun(H) -> xmpp_hosting_nif:clear_user_upload_limits(H, Domain, User) end,
         fun(ok) -> {ok, <<(scope(Domain, User))/binary, ": exceptions removed">>} end).

audit() ->
    call(fun(H) -> xmpp_hosting_nif:audit_upload_ledger(H, false) end, fun drift_lines/1).

repair() ->
    call(fun(H) -> xmpp_hosting_nif:audit_upload_ledger(H, true) end, fun drift_lines/1).

%%%===================================================================
%%% Internal
%%%===================================================================

call(Call, Format) ->
    mod_xmpp_hosting:run_command(Call, Format).

user(<<>>) -> undefined;
user(User) -> User.

scope(Domain, <<>>) -> Domain;
scope(Domain, User) -> <<User/binary, "@", Domain/binary>>.

%% Each drift's line is the core's (`text`), as prosodyctl and the CLI print it.
drift_lines(Drifts) ->
    [Text || #{text := Text} <- Drifts].
