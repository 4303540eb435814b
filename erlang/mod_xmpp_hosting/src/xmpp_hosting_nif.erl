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
%%% Store writes somebody waits for (commands, registrations, slot decisions) never wait for
%%% another process's lock on a scheduler: their NIF (Name_nif) is wrapped by answer/1, which
%%% waits for the core's worker in receive when the lock is held elsewhere (see answer/1).
-module(xmpp_hosting_nif).

-export([version/0, open/1, add_domain/2, domain/2, domains/1, remove_domain/2,
         set_domain_setting/4, checkpoint/1]).
-export([claim_domain/3, claims/2, verify_domain/4, dns_test/3, recheck_due/3]).
-export([stale_registrations/2, settle_stale_registrations/2, ensure_hosted/2]).
-export([create_invite/2, check_invite/3, invites/2, revoke_invite/3, purge_invites/1,
         invite_audit/3, begin_registration/2, finish_registration/3,
         preauthorize_subscription/4]).
-export([authorize_upload/6, commit_upload/4, commit_keyed_upload/4, release_keyed_upload/3, release_upload/2,
         forget_file/2, upload_report/3, describe_upload_usage/3, describe_upload_quota/3, upload_upkeep/3, audit_upload_ledger/2,
         set_upload_limit/5, clear_user_upload_limits/3]).
-export([account_removed/3, background/4]).
-export([decide_user_command/2, domain_user_list/3, shared_roster/4, settings_changes/2]).
-export([publication/2, set_publication/4, describe_publication/2, provider_file/2, disco_forms/2, policy_page/5,
         support_bookmark/2, record_activity/3]).
-export([retention_policy/2, set_retention/4, set_user_archive_retention/4, retention_sweep/6, retention_log/3]).
-export([retention_sweep_archive/5, archive_answer/2, register_archive_store/7, user_archive_retention/3,
         describe_retention/2, describe_retention_log/3]).
-export([housekeeping_new/2, housekeeping_stale_registrations/1, housekeeping_run/4,
         housekeeping_next_in/1]).
-export([panel_open/2, panel_handle/9, panel_finish_login/4, panel_finish_account/7]).
-export([cert_generate/5, cert_acme/3, cert_show/2, cert_import/3, cert_pem/2, cert_csr/2, cert_posh/3,
         cert_posh_check/3, cert_check/1, cert_install/3, housekeeping_install_certificates/3]).
-export([so_path/0, answer/1]).

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

%% Certificates (crates/nif/src/certificates.rs): none takes or returns a private key.
%% cert_generate/5 answers later as {xmpp_hosting_result, Tag, {ok, Info} | {error, _}}.
cert_generate(_H, _Domain, _Key, _Days, _Tag) -> not_loaded(?LINE).
%% cert_acme/3 answers later the same way (the exchange with the CA runs on the core's worker).
cert_acme(_H, _Domain, _Tag) -> not_loaded(?LINE).
cert_show(_H, _Domain) -> not_loaded(?LINE).
cert_import(H, Domain, Pem) -> answer(cert_import_nif(H, Domain, Pem)).
cert_import_nif(_H, _Domain, _Pem) -> not_loaded(?LINE).
cert_pem(_H, _Domain) -> not_loaded(?LINE).
cert_csr(_H, _Domain) -> not_loaded(?LINE).
cert_posh(_H, _Domain, _Service) -> not_loaded(?LINE).
cert_posh_check(_H, _Domain, _Published) -> not_loaded(?LINE).
cert_check(_H) -> not_loaded(?LINE).
cert_install(_H, _Dir, _Layout) -> not_loaded(?LINE).
housekeeping_install_certificates(_HK, _Dir, _Layout) -> not_loaded(?LINE).

-spec add_domain(handle(), binary()) -> {ok, domain()} | error().
add_domain(H, Name) -> answer(add_domain_nif(H, Name)).
add_domain_nif(_H, _Name) -> not_loaded(?LINE).

-spec domain(handle(), binary()) -> {ok, domain() | undefined} | error().
domain(_H, _Name) -> not_loaded(?LINE).

-spec domains(handle()) -> {ok, [domain()]} | error().
domains(_H) -> not_loaded(?LINE).

-spec remove_domain(handle(), binary()) -> ok | error().
remove_domain(H, Name) -> answer(remove_domain_nif(H, Name)).
remove_domain_nif(_H, _Name) -> not_loaded(?LINE).

%% Changes one setting by its dotted path: set_domain_setting(H, <<"example.org">>,
%% <<"registration.policy">>, <<"open">>). The value is JSON or a plain string.
-spec set_domain_setting(handle(), binary(), binary(), binary()) -> {ok, domain()} | error().
set_domain_setting(H, Name, Path, Value) -> answer(set_domain_setting_nif(H, Name, Path, Value)).
set_domain_setting_nif(_H, _Name, _Path, _Value) -> not_loaded(?LINE).

%% Moves the write-ahead log into the database file (mod_xmpp_hosting's timer calls it).
-spec checkpoint(handle()) -> ok | error().
checkpoint(_H) -> not_loaded(?LINE).

%% Customers' domains. DNS work runs on the core's worker thread: verify_domain/4, dns_test/3
%% and recheck_due/3 return ok at once, and the calling process later receives
%% {xmpp_hosting_result, Tag, {ok, Result} | error()}.
-spec claim_domain(handle(), binary(), binary()) -> {ok, map()} | error().
claim_domain(H, Domain, Account) -> answer(claim_domain_nif(H, Domain, Account)).
claim_domain_nif(_H, _Domain, _Account) -> not_loaded(?LINE).

-spec claims(handle(), binary() | undefined) -> {ok, [map()]} | error().
claims(_H, _Domain) -> not_loaded(?LINE).

-spec verify_domain(handle(), binary(), binary(), integer()) -> ok | error().
verify_domain(_H, _Domain, _Account, _Tag) -> not_loaded(?LINE).

-spec dns_test(handle(), binary(), integer()) -> ok | error().
dns_test(_H, _Domain, _Tag) -> not_loaded(?LINE).

-spec recheck_due(handle(), non_neg_integer(), integer()) -> ok | error().
recheck_due(_H, _Limit, _Tag) -> not_loaded(?LINE).

%% Invites. Specs and results are the core's shapes as maps with atom keys; a spec needs only
%% `domain` (kind, username, inviter, uses, expiry, note, created_by are optional).
-spec create_invite(handle(), map()) -> {ok, map()} | error().
create_invite(H, Spec) -> answer(create_invite_nif(H, Spec)).
create_invite_nif(_H, _Spec) -> not_loaded(?LINE).

-spec check_invite(handle(), binary(), binary()) -> {ok, map() | undefined} | error().
check_invite(_H, _Domain, _Token) -> not_loaded(?LINE).

-spec invites(handle(), binary()) -> {ok, [map()]} | error().
invites(_H, _Domain) -> not_loaded(?LINE).

%% Id: an integer or its digits in a binary (as an admin typed it).
-spec revoke_invite(handle(), binary(), integer() | binary()) -> {ok, map()} | error().
revoke_invite(H, Domain, Id) -> answer(revoke_invite_nif(H, Domain, Id)).
revoke_invite_nif(_H, _Domain, _Id) -> not_loaded(?LINE).

%% Registrations whose outcome never came: {ok, [#{id, domain, username}]}, at most Limit.
-spec stale_registrations(handle(), non_neg_integer()) -> {ok, [map()]} | error().
stale_registrations(_H, _Limit) -> not_loaded(?LINE).

%% The node's word on them: [#{id => Id, account_exists => boolean()}] -> {ok, Settled}.
-spec settle_stale_registrations(handle(), [map()]) -> {ok, non_neg_integer()} | error().
settle_stale_registrations(H, Outcomes) -> answer(settle_stale_registrations_nif(H, Outcomes)).
settle_stale_registrations_nif(_H, _Outcomes) -> not_loaded(?LINE).

%% A host that loads mod_xmpp_hosting_invites is hosted: {ok, #{domain, added, log}}.
-spec ensure_hosted(handle(), binary()) -> {ok, map()} | error().
ensure_hosted(_H, _Domain) -> not_loaded(?LINE).

-spec purge_invites(handle()) -> {ok, map()} | error().
purge_invites(H) -> answer(purge_invites_nif(H)).
purge_invites_nif(_H) -> not_loaded(?LINE).

-spec invite_audit(handle(), binary(), non_neg_integer()) -> {ok, [map()]} | error().
invite_audit(_H, _Domain, _Limit) -> not_loaded(?LINE).

%% The registration gate, with the Lua binding's fields: begin_registration(H, #{domain => D,
%% username => U, ip => Ip, token => T}) (ip and token may be left out or undefined) ->
%% {ok, #{decision := <<"allowed">>, id := Ticket, ...}} or
%% {ok, #{decision := <<"refused">>, reason, type, condition, text}}; any other key is badarg.
-spec begin_registration(handle(), #{domain := binary(), username := binary(),
                                     ip => binary() | undefined, token => binary() | undefined}) ->
          {ok, map()} | error().
begin_registration(H, Spec) -> answer(begin_registration_nif(H, Spec)).
begin_registration_nif(_H, _Spec) -> not_loaded(?LINE).

-spec finish_registration(handle(), integer(), boolean()) -> ok | error().
finish_registration(H, Ticket, Created) -> answer(finish_registration_nif(H, Ticket, Created)).
finish_registration_nif(_H, _Ticket, _Created) -> not_loaded(?LINE).

%% XEP-0379: a subscription request from Contact to the local user Inviter (bare JIDs) carried
%% Token. {ok, #{decision := <<"approved">>, invite_id}} (approve it; the use is spent) or
%% {ok, #{decision := <<"ignored">>, reason}} (the inviter decides, as for any request).
-spec preauthorize_subscription(handle(), binary(), binary(), binary()) -> {ok, map()} | error().
preauthorize_subscription(H, Inviter, Contact, Token) ->
    answer(preauthorize_subscription_nif(H, Inviter, Contact, Token)).
preauthorize_subscription_nif(_H, _Inviter, _Contact, _Token) -> not_loaded(?LINE).

%% The node removed an account: its invites are revoked and its upload exceptions dropped.
%% {ok, #{invites_revoked, upload_limits_cleared}}; nothing to do for a domain not hosted.
-spec account_removed(handle(), binary(), binary()) -> {ok, map()} | error().
account_removed(_H, _Domain, _User) -> not_loaded(?LINE).

%% A write nobody waits for, Write one of {account_removed, Domain, User},
%% {record_activity, Domain, User}, {ensure_hosted, Domain}, {commit_keyed_upload, SlotKey,
%% Bytes, FileId}, {release_keyed_upload, SlotKey, Bytes}, {register_archive_store, Domain, Kind,
%% ServerHost, Backend, Location | undefined, Store} (as register_archive_store/7): made at once ({ok, Result} as the
%% plain call's, or its error) unless another process holds the store's write lock; then
%% {later, lock_held_elsewhere}, and the core's worker makes it once the lock is free (retried
%% for minutes, as of this call's time); {later, connection_in_use} when another call of this
%% node had the handle's connection (the worker makes it the same way, usually at once). Then
%% Reporter receives {xmpp_hosting_background, Kind, What, Why, {ok, Result} | {error, {Code,
%% Msg}}} (Kind the write's first atom, What the binary given, Why as in {later, Why}).
-spec background(handle(), tuple(), pid(), binary()) ->
          {ok, term()} | {later, lock_held_elsewhere | connection_in_use} | error().
background(_H, _Write, _Reporter, _What) -> not_loaded(?LINE).

%% The hosted domain's users (mod_xmpp_hosting_users, mod_xmpp_hosting_roster).
%% decide_user_command(H, #{domain, requester, operator_admin, action, account, password,
%% password_verify, policy}) -> {ok, #{decision := <<"allowed">>, domain, as, username, jid,
%% if_exists, if_missing, done}} | {ok, #{decision := <<"refused">>, type, condition, text}}.
-spec decide_user_command(handle(), map()) -> {ok, map()} | error().
decide_user_command(H, Command) -> answer(decide_user_command_nif(H, Command)).
decide_user_command_nif(_H, _Command) -> not_loaded(?LINE).
%% {ok, #{jids, text}}: the accounts the node listed, as the manager is shown them.
-spec domain_user_list(handle(), binary(), [binary()]) -> {ok, map()} | error().
domain_user_list(_H, _Domain, _Usernames) -> not_loaded(?LINE).
%% {ok, #{on, id, group, contacts}} (the contacts whether on or off), or {ok, #{on := false, id}}
%% for a domain not hosted. settings_changes: {ok, #{revision, domains, next_in}}.
-spec shared_roster(handle(), binary(), binary() | undefined, [binary()]) -> {ok, map()} | error().
shared_roster(_H, _Domain, _User, _Accounts) -> not_loaded(?LINE).
-spec settings_changes(handle(), integer() | undefined) -> {ok, map()} | error().
settings_changes(_H, _Since) -> not_loaded(?LINE).

%% Upload quotas. authorize_upload(H, Domain, User, Size, SlotKey | undefined, Lifetime | undefined) ->
%% {ok, #{decision := <<"granted">>, id, size, expires_at}} or
%% {ok, #{decision := <<"denied">>, limit, limit_value, usage, requested, type, condition, text,
%% retry_at => Unix}}; a size that is not a positive 64-bit number is {error, {invalid_argument, _}}.
%% A grant under a slot key is committed by that key and the size (commit_keyed_upload/4), and
%% holds its bytes for Lifetime seconds (the server's slot life; undefined: the domain's).
-spec authorize_upload(handle(), binary(), binary(), integer(), binary() | undefined,
                       non_neg_integer() | undefined) -> {ok, map()} | error().
authorize_upload(H, Domain, User, Size, SlotKey, Lifetime) ->
    answer(authorize_upload_nif(H, Domain, User, Size, SlotKey, Lifetime)).
authorize_upload_nif(_H, _Domain, _User, _Size, _SlotKey, _Lifetime) -> not_loaded(?LINE).

-spec commit_upload(handle(), integer(), non_neg_integer(), binary()) -> ok | error().
commit_upload(_H, _Reservation, _Bytes, _FileId) -> not_loaded(?LINE).

-spec commit_keyed_upload(handle(), binary(), non_neg_integer(), binary()) -> ok | error().
commit_keyed_upload(_H, _SlotKey, _Bytes, _FileId) -> not_loaded(?LINE).

%% A PUT failed after mod_http_upload used the slot up: {ok, true} when an open reservation of
%% that key and size was given back.
-spec release_keyed_upload(handle(), binary(), integer()) -> {ok, boolean()} | error().
release_keyed_upload(_H, _Key, _Bytes) -> not_loaded(?LINE).

-spec release_upload(handle(), integer()) -> ok | error().
release_upload(_H, _Reservation) -> not_loaded(?LINE).

-spec forget_file(handle(), binary()) -> {ok, boolean()} | error().
forget_file(_H, _FileId) -> not_loaded(?LINE).

-spec upload_report(handle(), binary(), binary() | undefined) -> {ok, map()} | error().
upload_report(_H, _Domain, _User) -> not_loaded(?LINE).

%% The report in words, as the user's ad-hoc command shows it.
-spec describe_upload_usage(handle(), binary(), binary() | undefined) -> {ok, binary()} | error().
describe_upload_usage(_H, _Domain, _User) -> not_loaded(?LINE).

%% What an admin's quota show prints (scope first), the same text on every command line.
-spec describe_upload_quota(handle(), binary(), binary() | undefined) -> {ok, binary()} | error().
describe_upload_quota(_H, _Domain, _User) -> not_loaded(?LINE).

%% Purges the ledger and forgets the files under Roots that are gone, on the core's worker: ok
%% at once, then {xmpp_hosting_result, Tag, {ok, #{purged, files_checked, files_forgotten}} | error()}.
-spec upload_upkeep(handle(), [binary()], integer()) -> ok | error().
upload_upkeep(_H, _Roots, _Tag) -> not_loaded(?LINE).

-spec audit_upload_ledger(handle(), boolean()) -> {ok, [map()]} | error().
audit_upload_ledger(H, Repair) -> answer(audit_upload_ledger_nif(H, Repair)).
audit_upload_ledger_nif(_H, _Repair) -> not_loaded(?LINE).

%% One limit by the name an admin types: a domain's (user_daily, domain_storage, ...) when User is
%% undefined, else the user's exception (max_file_size, storage, daily, weekly, monthly). Value
%% is bytes or <<"null">> to remove it. {ok, Report} of the scope as it now stands.
-spec set_upload_limit(handle(), binary(), binary() | undefined, binary(), binary()) -> {ok, map()} | error().
set_upload_limit(H, Domain, User, Limit, Value) ->
    answer(set_upload_limit_nif(H, Domain, User, Limit, Value)).
set_upload_limit_nif(_H, _Domain, _User, _Limit, _Value) -> not_loaded(?LINE).

-spec clear_user_upload_limits(handle(), binary(), binary()) -> ok | error().
clear_user_upload_limits(H, Domain, User) -> answer(clear_user_upload_limits_nif(H, Domain, User)).
clear_user_upload_limits_nif(_H, _Domain, _User) -> not_loaded(?LINE).

%% Publication (issue 15): the description and enforced values as JSON text ({ok, Json}), the
%% provider file v2 as JSON text, the disco#info forms [#{form_type, fields => [#{var, values}]}],
%% the policy page for a reader's language (<<>> for the domain's own) with the accounts counted
%% (or undefined), as html or json.
-spec publication(handle(), binary()) -> {ok, binary()} | error().
publication(_H, _Domain) -> not_loaded(?LINE).
-spec set_publication(handle(), binary(), binary(), binary()) -> {ok, binary()} | error().
set_publication(H, Domain, Field, Value) -> answer(set_publication_nif(H, Domain, Field, Value)).
set_publication_nif(_H, _Domain, _Field, _Value) -> not_loaded(?LINE).
-spec describe_publication(handle(), binary()) -> {ok, binary()} | error().
describe_publication(_H, _Domain) -> not_loaded(?LINE).
-spec provider_file(handle(), binary()) -> {ok, binary()} | error().
provider_file(_H, _Domain) -> not_loaded(?LINE).
-spec disco_forms(handle(), binary()) -> {ok, [map()]} | error().
disco_forms(_H, _Domain) -> not_loaded(?LINE).
-spec policy_page(handle(), binary(), binary(), non_neg_integer() | undefined, html | json) -> {ok, binary()} | error().
policy_page(_H, _Domain, _Language, _Accounts, _Format) -> not_loaded(?LINE).
%% {ok, #{jid, name, autojoin}} or {ok, null}: the XEP-0402 bookmark a new account gets.
-spec support_bookmark(handle(), binary()) -> {ok, map() | null} | error().
support_bookmark(_H, _Domain) -> not_loaded(?LINE).
%% ok: a login of User, for the daily and monthly active accounts.
-spec record_activity(handle(), binary(), binary()) -> ok | error().
record_activity(_H, _Domain, _User) -> not_loaded(?LINE).

%% Retention (issue 13): a domain's policy #{archive, muc, uploads, backups} (periods as written,
%% <<"never">> for no expiry), a user's own shorter archive retention, sweeps and their log.
-spec retention_policy(handle(), binary()) -> {ok, map()} | error().
retention_policy(_H, _Domain) -> not_loaded(?LINE).

-spec set_retention(handle(), binary(), binary(), binary()) -> {ok, map()} | error().
set_retention(H, Domain, What, Value) ->
    answer(set_retention_nif(H, Domain, What, Value)).
set_retention_nif(_H, _Domain, _What, _Value) -> not_loaded(?LINE).

%% Value undefined: back to the domain's period. {ok, Period} kept for that user's archive now.
-spec set_user_archive_retention(handle(), binary(), binary(), binary() | undefined) -> {ok, binary()} | error().
set_user_archive_retention(H, Domain, User, Value) ->
    answer(set_user_archive_retention_nif(H, Domain, User, Value)).
set_user_archive_retention_nif(_H, _Domain, _User, _Value) -> not_loaded(?LINE).

%% Sweeps one kind (<<"archive">>, <<"muc">>, <<"uploads">>) of a domain on the core's worker: ok
%% at once, then {xmpp_hosting_result, Tag, {ok, Record} | error()} with the sweep's audit record.
-spec retention_sweep(handle(), binary(), binary(), boolean(), [binary()], integer()) -> ok | error().
retention_sweep(_H, _Domain, _Kind, _DryRun, _Roots, _Tag) -> not_loaded(?LINE).

-spec retention_log(handle(), binary() | undefined, non_neg_integer()) -> {ok, [map()]} | error().
retention_log(_H, _Domain, _Limit) -> not_loaded(?LINE).

%% Sweeps a domain's ejabberd archives (<<"archive">> or <<"muc">>) on the core's worker, each step
%% carried out by the calling process (mod_xmpp_hosting_retention:sweep/3): it receives
%% {xmpp_hosting_archive, Id, #{sql := Text} | #{batch := [Text], finally := [Text]} |
%% #{step := Step}} and answers with archive_answer(Id, #{rows := [[integer()]]} |
%% #{results := [[[integer()]]], us := Micros} | #{matched := N, next := Cursor | null} |
%% #{error := Why}) until {xmpp_hosting_result, Tag, {ok, Record} | error()} arrives.
%% Options: #{backend := <<"sql">> | <<"mnesia">>, schema => <<"default">> | <<"new">>,
%% sql_type => <<"sqlite">> | ..., sqlite_file => Path, dry_run => boolean(), budget_ms => N,
%% max_steps => N}.
-spec retention_sweep_archive(handle(), binary(), binary(), map(), integer()) -> ok | error().
retention_sweep_archive(_H, _Domain, _Kind, _Options, _Tag) -> not_loaded(?LINE).

-spec archive_answer(non_neg_integer(), map()) -> ok.
archive_answer(_Id, _Answer) -> not_loaded(?LINE).

%% Where ejabberd keeps a hosted domain's archive of a kind (backend <<"ejabberd_sql">> or
%% <<"ejabberd_mnesia">>), so the core's housekeeping reports its sweeps when due.
-spec register_archive_store(handle(), binary(), binary(), binary(), binary(), binary() | undefined, binary()) ->
          {ok, map()} | error().
register_archive_store(_H, _Domain, _Kind, _ServerHost, _Backend, _Location, _Store) -> not_loaded(?LINE).

%% {ok, Period}: how long the user's archive is kept now (their own choice, else the domain's).
-spec user_archive_retention(handle(), binary(), binary()) -> {ok, binary()} | error().
user_archive_retention(_H, _Domain, _User) -> not_loaded(?LINE).

%% The policy, and the log one sweep a line, in the core's words.
-spec describe_retention(handle(), binary()) -> {ok, binary()} | error().
describe_retention(_H, _Domain) -> not_loaded(?LINE).
-spec describe_retention_log(handle(), binary() | undefined, non_neg_integer()) -> {ok, [binary()]} | error().
describe_retention_log(_H, _Domain, _Limit) -> not_loaded(?LINE).

%% The core's housekeeping pass (mod_xmpp_hosting's one timer). Overrides change the core's
%% schedule: #{checkpoint | domain_recheck | invite_purge | upload_upkeep => Seconds,
%% recheck_batch => N}.
-spec housekeeping_new(handle(), map()) -> {ok, reference()} | error().
housekeeping_new(_H, _Overrides) -> not_loaded(?LINE).

%% Registrations that never finished, listed only when the invite purge is due:
%% [#{id, domain, username}], to answer with #{id => Id, account_exists => boolean()}.
-spec housekeeping_stale_registrations(reference()) -> {ok, [map()]} | error().
housekeeping_stale_registrations(_HK) -> not_loaded(?LINE).

%% Runs what is due on the core's worker: ok at once, then {xmpp_hosting_result, Tag,
%% {ok, #{log, notices, next_in, ...}} | error()}.
-spec housekeeping_run(reference(), [binary()], [map()], integer()) -> ok | error().
housekeeping_run(_HK, _UploadRoots, _Answers, _Tag) -> not_loaded(?LINE).

-spec housekeeping_next_in(reference()) -> non_neg_integer().
housekeeping_next_in(_HK) -> not_loaded(?LINE).

%% The customers' web panel (mod_xmpp_hosting_panel): {ok, Panel} for the panel mounted at Base;
%% panel_handle/9 (method, path under Base, Cookie, X-CSRF-Token and Content-Type headers or <<>>,
%% body, peer address, over TLS) answers {respond, Status, Reason, [{Name, Value}], Body} (names in
%% lower case) or, for a login, {check_password, Ticket, User, Host, Password}, which ejabberd's
%% authentication checks and panel_finish_login/4 (ticket, password ok, operator admin) completes.
%% When the store gave no answer in time (see answer/1), both answer the core's 503, try again.
-spec panel_open(handle(), binary()) -> {ok, reference()} | error().
panel_open(_H, _Base) -> not_loaded(?LINE).
-spec panel_handle(reference(), binary(), binary(), binary(), binary(), binary(), binary(), binary(), boolean()) ->
          {respond, pos_integer(), binary(), [{binary(), binary()}], binary()} |
          {check_password, binary(), binary(), binary(), binary()} |
          {account, binary(), binary(), binary(), binary(), binary(), binary()}.
panel_handle(P, Method, Path, Cookie, Csrf, ContentType, Body, Address, Tls) ->
    answer(panel_handle_nif(P, Method, Path, Cookie, Csrf, ContentType, Body, Address, Tls)).
panel_handle_nif(_P, _Method, _Path, _Cookie, _Csrf, _ContentType, _Body, _Address, _Tls) -> not_loaded(?LINE).
-spec panel_finish_login(reference(), binary(), boolean(), boolean()) ->
          {respond, pos_integer(), binary(), [{binary(), binary()}], binary()}.
panel_finish_login(P, Ticket, Ok, Admin) -> answer(panel_finish_login_nif(P, Ticket, Ok, Admin)).
panel_finish_login_nif(_P, _Ticket, _Ok, _Admin) -> not_loaded(?LINE).
%% The users page: panel_handle/9 answers {account, Ticket, Action, Host, User, Password, Require}
%% (<<>> for none), carried out with ejabberd_auth; panel_finish_account/7 (ticket, host not served,
%% account existed, done, error or <<>>, the host's usernames for a list) gives the answer.
-spec panel_finish_account(reference(), binary(), boolean(), boolean(), boolean(), binary(), [binary()]) ->
          {respond, pos_integer(), binary(), [{binary(), binary()}], binary()}.
panel_finish_account(_P, _Ticket, _NotServed, _Existed, _Done, _Error, _Users) -> not_loaded(?LINE).

%% The answer of a store call somebody waits for (every function above that calls answer/1).
%% The NIF tries the call at once without waiting for any lock; when another process (the
%% command line, Prosody on the same store, a backup) holds the store's write lock, it hands the
%% call to the core's worker and returns {xmpp_hosting_later, Tag, Ms, Unanswered} at once, and
%% this process waits here for the answer, which comes as {xmpp_hosting_answer, Tag, Answer} once
%% the lock is free. Waiting in receive holds no scheduler (before, such calls waited up to 2 s on
%% a dirty I/O scheduler, and a few dozen at once occupied all of them: OTP's file I/O runs there
%% too). The worker starts the call only within its wait (Ms less a grace); a call that has
%% changed something goes on at most until just before Ms. After Ms, which only a stalled machine
%% reaches, this process gives the answer up (answer_given_up/1): when none was sent, none will
%% be, and the answer is Unanswered, the core's (the store did not answer in time: check, and try
%% again); when one was sent just before, it is taken, so that nothing is left in the mailbox
%% (a long-lived caller such as mod_http_upload's gen_server would get it as unexpected).
-spec answer(term()) -> term().
answer({xmpp_hosting_later, Tag, Ms, Unanswered}) ->
    receive
        {xmpp_hosting_answer, Tag, Answer} -> Answer
    after Ms ->
            case answer_given_up(Tag) of
                gave_up -> Unanswered;
                sent ->
                    receive
                        {xmpp_hosting_answer, Tag, Answer} -> Answer
                    after 60000 -> Unanswered
                    end
            end
    end;
answer(Answer) ->
    Answer.

answer_given_up(_Tag) -> not_loaded(?LINE).

not_loaded(Line) ->
    erlang:nif_error({not_loaded, [{module, ?MODULE}, {line, Line}, {library, so_path()}]}).
