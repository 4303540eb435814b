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
%%% session opens (so a change takes effect at the next login) and before a new account is
%%% announced to the others.
-module(mod_xmpp_hosting_roster).

-behaviour(gen_mod).

-export([start/2, stop/1, reload/3, depends/2, mod_options/1, mod_doc/0]).
-export([c2s_session_opened/1, register_user/2, sync/1]).

-include("xmpp.hrl").
-include("logger.hrl").
-include("translate.hrl").

start(Host, _Opts) ->
    sync(Host),
    ejabberd_hooks:add(c2s_session_opened, Host, ?MODULE, c2s_session_opened, 10),
    %% Before mod_shared_roster's own register_user (50) pushes the new account to the group.
    ejabberd_hooks:add(register_user, Host, ?MODULE, register_user, 40),
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
