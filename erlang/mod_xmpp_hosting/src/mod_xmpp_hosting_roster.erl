%%% "Everyone is in everybody else's contact list", per hosted domain, through ejabberd's own
%%% mod_shared_roster: a group whose members are `@all@` (all_users) and that is displayed to
%%% itself, so every account of the vhost sees every other one, and mod_shared_roster pushes a
%%% new account to the online members (its register_user hook).
%%%
%%% The setting lives in the xmpp-hosting store (`xmpp-hosting domain settings DOMAIN
%%% shared_roster on|off`, `ejabberdctl xmpp_hosting_domain_set DOMAIN shared_roster on`); the
%%% core says whether the domain has one and what the group is called. This module keeps
%%% mod_shared_roster's group in line with that answer (created or updated through
%%% mod_shared_roster's API, deleted when switched off) when the module starts, before each
%%% session opens and before a new account is announced to the others.
%%%
%%% A switch made anywhere (the CLI, ejabberdctl, the panel: any process) reaches the users
%%% online at the time: one watcher process per node asks the core every few seconds (its
%%% interval) which domains' settings changed since it last looked (one indexed read for all
%%% domains), brings the group in line and pushes the contacts added or taken out to each online
%%% user's clients. mod_shared_roster's own API does not push when a group is created, changed
%%% or deleted (only its web admin pushes, to a group's explicit members, never to @all@), so
%%% this module pushes as mod_shared_roster does for a new member (mod_roster:push_item with the
%%% contact in the group's label); switched off, a contact the user has in their own roster is
%%% pushed as their own item, any other is removed.
-module(mod_xmpp_hosting_roster).

-behaviour(gen_mod).

-export([start/2, stop/1, reload/3, depends/2, mod_options/1, mod_doc/0]).
-export([c2s_session_opened/1, register_user/2, sync/1, switched/1]).

-define(WATCHER, xmpp_hosting_roster_watcher).
-define(RETRY_S, 60).

-include("xmpp.hrl").
-include("logger.hrl").
-include("translate.hrl").

start(Host, _Opts) ->
    sync(Host),
    ejabberd_hooks:add(c2s_session_opened, Host, ?MODULE, c2s_session_opened, 10),
    %% Before mod_shared_roster's own register_user (50) pushes the new account to the group.
    ejabberd_hooks:add(register_user, Host, ?MODULE, register_user, 40),
    start_watcher(),
    ok.

stop(Host) ->
    ejabberd_hooks:delete(c2s_session_opened, Host, ?MODULE, c2s_session_opened, 10),
    ejabberd_hooks:delete(register_user, Host, ?MODULE, register_user, 40),
    ok.

reload(_Host, _NewOpts, _OldOpts) ->
    ok.

depends(_Host, _Opts) ->
    [{mod_xmpp_hosting, hard}, {mod_shared_roster, hard}].

mod_options(_Host) ->
    [].

mod_doc() ->
    #{desc =>
          ?T("The xmpp-hosting domain setting 'shared_roster' (everyone is in everybody "
             "else's contact list), enforced with mod_shared_roster: an '@all@' group per "
             "vhost, created or removed as the setting says. Load mod_shared_roster too.")}.

c2s_session_opened(#{lserver := Server} = State) ->
    sync(Server),
    State.

register_user(_User, Server) ->
    sync(Server).

%% @doc Brings mod_shared_roster's group of Host in line with the store's setting.
-spec sync(binary()) -> ok.
sync(Host) ->
    case mod_xmpp_hosting:store(Host) of
        {ok, H} ->
            case xmpp_hosting_nif:shared_roster(H, Host, undefined, []) of
                {ok, #{on := true, id := Id, group := Label}} -> ensure_group(Host, Id, Label);
                {ok, #{on := false, id := Id}} -> ensure_no_group(Host, Id);
                {error, Err} -> ?WARNING_MSG("xmpp_hosting_roster ~ts: cannot read the setting: ~p", [Host, Err])
            end;
        {error, Err} ->
            ?WARNING_MSG("xmpp_hosting_roster ~ts: no store: ~p", [Host, Err])
    end,
    ok.

ensure_group(Host, Id, Label) ->
    Wanted = [{label, Label}, {all_users, true}, {displayed_groups, [Id]}],
    case mod_shared_roster:get_group_opts(Host, Id) of
        Opts when is_list(Opts) ->
            case lists:sort(Opts) == lists:sort(Wanted) of
                true -> ok;
                false -> mod_shared_roster:set_group_opts(Host, Id, Wanted)
            end;
        _ ->
            ?INFO_MSG("xmpp_hosting_roster ~ts: shared roster on (group ~ts)", [Host, Id]),
            mod_shared_roster:create_group(Host, Id, Wanted)
    end.

ensure_no_group(Host, Id) ->
    case mod_shared_roster:get_group_opts(Host, Id) of
        Opts when is_list(Opts) ->
            ?INFO_MSG("xmpp_hosting_roster ~ts: shared roster off (group ~ts removed)", [Host, Id]),
            mod_shared_roster:delete_group(Host, Id);
        _ ->
            ok
    end.

%% @doc The shared roster setting of Host changed: the group brought in line, and each online
%% user's clients told which contacts came or went.
-spec switched(binary()) -> ok.
switched(Host) ->
    sync(Host),
    case {mod_xmpp_hosting:store(Host), online_users(Host)} of
        {{ok, _}, []} -> ok;
        {{ok, H}, Online} ->
            Accounts = [U || {U, _} <- ejabberd_auth:get_users(Host)],
            Pushed = lists:sum([push_switch(H, Host, User, Accounts) || User <- Online]),
            ?INFO_MSG("xmpp_hosting_roster ~ts: shared roster setting changed: ~B roster item(s) pushed",
                      [Host, Pushed]);
        {{error, Err}, _} ->
            ?WARNING_MSG("xmpp_hosting_roster ~ts: no store: ~p", [Host, Err])
    end,
    ok.

%% One domain's failure is logged and does not keep the others from being brought in line.
switched_safely(Host) ->
    try switched(Host)
    catch Class:Reason:Stack ->
            ?ERROR_MSG("xmpp_hosting_roster ~ts: cannot apply the shared roster switch: ~p",
                       [Host, {Class, Reason, Stack}])
    end.

online_users(Host) ->
    lists:usort([U || {U, _, _} <- ejabberd_sm:get_vh_session_list(Host)]).

%% Pushes User's contacts as the core says (all of them either way: in the group when on, out
%% again when off); returns how many were pushed.
push_switch(H, Host, User, Accounts) ->
    case xmpp_hosting_nif:shared_roster(H, Host, User, Accounts) of
        {ok, #{on := On, group := Group, contacts := Contacts}} ->
            To = jid:make(User, Host),
            lists:foreach(fun(Contact) -> push_contact(To, jid:decode(Contact), On, Group) end, Contacts),
            length(Contacts);
        {ok, #{on := false}} -> 0; % no longer hosted: nothing to apply
        {error, Err} ->
            ?WARNING_MSG("xmpp_hosting_roster ~ts: cannot read the shared roster of ~ts: ~p", [Host, User, Err]),
            0
    end.

push_contact(#jid{luser = U, lserver = S} = To, Contact, On, Group) ->
    {Sub, Ask, Groups} = mod_roster:get_jid_info({none, none, []}, U, S, Contact),
    Own = Sub /= none orelse Ask /= none orelse Groups /= [],
    Shared = #roster_item{jid = Contact, subscription = both, groups = lists:usort([Group | Groups])},
    %% A request the user sent and the contact has not answered yet stays marked pending (ask
    %% out or both in mod_roster's terms), as ejabberd's own roster items show it.
    Mine = #roster_item{jid = Contact, subscription = Sub, ask = pending(Ask), groups = Groups},
    case {On, Own} of
        {true, _} -> mod_roster:push_item(To, Mine#roster_item{subscription = none}, Shared);
        {false, true} -> mod_roster:push_item(To, Shared, Mine);
        {false, false} -> mod_roster:push_item(To, Shared, #roster_item{jid = Contact, subscription = remove})
    end.

pending(Ask) when Ask == out; Ask == both -> subscribe;
pending(_) -> undefined.

%% One watcher per node (a registered process): started by the first host's start, it ends by
%% itself once no host has this module loaded.
start_watcher() ->
    case whereis(?WATCHER) of
        undefined ->
            _ = spawn(fun() ->
                              try register(?WATCHER, self()) of
                                  true -> watch(undefined)
                              catch error:badarg -> ok % another host's start was first
                              end
                      end),
            ok;
        _ -> ok
    end.

watch(Revision) ->
    case [H || H <- ejabberd_option:hosts(), gen_mod:is_loaded(H, ?MODULE)] of
        [] -> ok;
        [First | _] = Hosts ->
            {Next, Sleep} =
                try look(First, Hosts, Revision)
                catch Class:Reason:Stack ->
                        ?WARNING_MSG("xmpp_hosting_roster: watching settings failed: ~p", [{Class, Reason, Stack}]),
                        {Revision, ?RETRY_S}
                end,
            timer:sleep(timer:seconds(Sleep)),
            watch(Next)
    end.

look(First, Hosts, Revision) ->
    case mod_xmpp_hosting:store(First) of
        {ok, H} ->
            case xmpp_hosting_nif:settings_changes(H, Revision) of
                {ok, #{revision := Now, shared_roster_switched := Switched, next_in := NextIn}} ->
                    %% Only the domains whose shared roster the core says was switched: a change
                    %% to another setting must not push every contact to every online user.
                    [switched_safely(D) || Revision /= undefined, D <- Switched, lists:member(D, Hosts)],
                    {Now, NextIn};
                {error, Err} ->
                    ?WARNING_MSG("xmpp_hosting_roster: cannot read which settings changed: ~p", [Err]),
                    {Revision, ?RETRY_S}
            end;
        {error, _} -> {Revision, ?RETRY_S}
    end.
