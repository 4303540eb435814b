%%% The Erlang face of the Rust NIF (crates/nif): loads priv/lib/xmpp_hosting_nif.so.
%%%
%%% Kept apart from mod_xmpp_hosting on purpose: when -on_load fails, the VM unloads the module
%%% that declared it, so a broken or missing .so takes down only this module (calls then fail
%%% with a clear not_loaded error from mod_xmpp_hosting:start/2), never the gen_mod.
%%%
%%% API (all strings are UTF-8 binaries; wrong types raise badarg):
%%%   version() -> binary()
%%%   open(Path :: binary()) -> {ok, handle()} | {error, {Code :: atom(), Msg :: binary()}}
%%%   add_domain(H, Name) -> {ok, domain()} | {error, {Code, Msg}}
%%%   domain(H, Name) -> {ok, domain() | undefined} | {error, {Code, Msg}}
%%%   domains(H) -> {ok, [domain()]} | {error, {Code, Msg}}
%%%   remove_domain(H, Name) -> ok | {error, {Code, Msg}}
%%% domain() is #{name, unicode_name, settings, created_at, updated_at} (atom keys).
%%% Codes come from the core: invalid_domain, invalid_argument, not_found, already_exists,
%%% not_allowed, store, corrupt.
-module(xmpp_hosting_nif).

-export([version/0, open/1, add_domain/2, domain/2, domains/1, remove_domain/2]).
-export([so_path/0]).

-on_load(load/0).

-define(LIB, "xmpp_hosting_nif").
%% The OTP application directory the contrib installer creates; code:priv_dir/1 finds it when
%% its ebin is in the code path.
-define(APP, mod_xmpp_hosting).

-type handle() :: reference().
-type error() :: {error, {atom(), binary()}}.
-type domain() :: #{name := binary(), unicode_name := binary(), settings := map(),
                    created_at := integer(), updated_at := integer()}.
-export_type([handle/0, domain/0]).

load() ->
    Path = so_path(),
    case erlang:load_nif(Path, 0) of
        ok -> ok;
        %% Loading the same library again (module reloaded) keeps the loaded one.
        {error, {reload, _}} -> ok;
        {error, {Reason, Text}} ->
            error_logger:error_msg("xmpp_hosting_nif: cannot load ~ts.so: ~p: ~ts~n",
                                   [Path, Reason, Text]),
            {error, Reason}
    end.

%% @doc Where the library is looked for, without the .so suffix (erlang:load_nif/2 adds it).
-spec so_path() -> string().
so_path() ->
    PrivDir = case code:priv_dir(?APP) of
                  {error, bad_name} ->
                      %% Not installed as an application (compiled by hand, or the directory has
                      %% another name): priv/ is beside the ebin/ this module came from.
                      filename:join(filename:dirname(filename:dirname(beam_path())), "priv");
                  Dir -> Dir
              end,
    filename:join([PrivDir, "lib", ?LIB]).

beam_path() ->
    case code:which(?MODULE) of
        File when is_list(File) -> File;
        _ -> filename:join(["ebin", atom_to_list(?MODULE) ++ ".beam"])
    end.

-spec version() -> binary().
version() -> not_loaded(?LINE).

-spec open(binary()) -> {ok, handle()} | error().
open(_Path) -> not_loaded(?LINE).

-spec add_domain(handle(), binary()) -> {ok, domain()} | error().
add_domain(_H, _Name) -> not_loaded(?LINE).

-spec domain(handle(), binary()) -> {ok, domain() | undefined} | error().
domain(_H, _Name) -> not_loaded(?LINE).

-spec domains(handle()) -> {ok, [domain()]} | error().
domains(_H) -> not_loaded(?LINE).

-spec remove_domain(handle(), binary()) -> ok | error().
remove_domain(_H, _Name) -> not_loaded(?LINE).

not_loaded(Line) ->
    erlang:nif_error({not_loaded, [{module, ?MODULE}, {line, Line}, {library, so_path()}]}).
