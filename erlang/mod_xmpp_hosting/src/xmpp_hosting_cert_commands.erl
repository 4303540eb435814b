%%% Certificates of the hosted domains in ejabberd (issue 14): ejabberdctl commands, registered
%%% with mod_xmpp_hosting's own commands, and how the installed files reach ejabberd's pkix.
%%%   xmpp_hosting_cert_generate DOMAIN KEY DAYS   new key + self-signed certificate (KEY ecdsa|rsa,
%%%                                                 DAYS 0 for the default 365); served at once
%%%   xmpp_hosting_cert_show DOMAIN                 names, validity, fingerprints (never the key)
%%%   xmpp_hosting_cert_pem DOMAIN                  the certificate and its chain (never the key)
%%%   xmpp_hosting_cert_csr DOMAIN                  a CSR (PEM) from the domain's key
%%%   xmpp_hosting_cert_import DOMAIN FILE          a CA-signed certificate and its chain; served at once
%%%   xmpp_hosting_cert_acme DOMAIN                 a CA-signed certificate by ACME DNS-01 through the
%%%                                                 customer's CNAME; served at once
%%%   xmpp_hosting_cert_posh DOMAIN SERVICE         the POSH JSON (client|server)
%%%   xmpp_hosting_cert_posh_check DOMAIN FILE      compares a published POSH file (error: no match)
%%%   xmpp_hosting_cert_check                       days left, every domain (exit 1 under 7 days)
%%%   xmpp_hosting_cert_install                     brings the certificates directory in line now
%%%
%%% Where: mod_xmpp_hosting's `certificates_dir` (default SPOOL_DIR/xmpp-hosting-certs), one
%%% DOMAIN.pem (certificate, chain, key; 0600) per domain, written by the core, which keeps the
%%% directory equal to its store in the housekeeping pass and right after a command here. The
%%% files are handed to ejabberd_pkix one by one (add_certfile/del_certfile, then commit), the way
%%% its certfiles are reloaded, so no `certfiles` glob is needed and no restart. No private key
%%% passes through Erlang: the core writes the files itself.
-module(xmpp_hosting_cert_commands).

-export([spec/0]).
-export([generate/3, acme/1, show/1, pem/1, csr/1, import/2, posh/2, posh_check/2, check/0, install/0]).
%% For mod_xmpp_hosting.
-export([directory/1, set_housekeeping_target/2, load_installed/1, apply_install/1]).

-include("logger.hrl").
-include("ejabberd_commands.hrl").

-define(LAYOUT, <<"ejabberd">>).
-define(GENERATE_WAIT_MS, 120000).

spec() ->
    [cmd(xmpp_hosting_cert_generate, generate, "Make a new key and self-signed certificate for a domain",
         [{domain, binary}, {key, binary}, {days, integer}], [<<"customer.example">>, <<"ecdsa">>, 0]),
     cmd(xmpp_hosting_cert_acme, acme, "Obtain a CA-signed certificate for a domain by ACME DNS-01",
         [{domain, binary}], [<<"customer.example">>]),
     cmd(xmpp_hosting_cert_show, show, "Show a domain's certificate (names, validity, fingerprints)",
         [{domain, binary}], [<<"customer.example">>]),
     cmd(xmpp_hosting_cert_pem, pem, "Print a domain's certificate and its chain (never the key)",
         [{domain, binary}], [<<"customer.example">>]),
     cmd(xmpp_hosting_cert_csr, csr, "Print a CSR for a domain, from its key",
         [{domain, binary}], [<<"customer.example">>]),
     cmd(xmpp_hosting_cert_import, import, "Serve a CA-signed certificate (PEM file: certificate, then chain)",
         [{domain, binary}, {file, binary}], [<<"customer.example">>, <<"/tmp/chain.pem">>]),
     cmd(xmpp_hosting_cert_posh, posh, "Print the POSH file for a domain (service client or server)",
         [{domain, binary}, {service, binary}], [<<"customer.example">>, <<"client">>]),
     cmd(xmpp_hosting_cert_posh_check, posh_check, "Compare a published POSH file with the served certificate",
         [{domain, binary}, {file, binary}], [<<"customer.example">>, <<"/tmp/xmpp-client.json">>]),
     cmd(xmpp_hosting_cert_check, check, "Days left for every domain's certificate (error under 7 days)", [], []),
     cmd(xmpp_hosting_cert_install, install, "Install the stored certificates where ejabberd reads them", [], [])].

cmd(Name, Function, Desc, Args, Example) ->
    #ejabberd_commands{name = Name, tags = [xmpp_hosting], desc = Desc, policy = admin,
                       module = ?MODULE, function = Function,
                       args = Args, args_example = Example,
                       result = {res, restuple}}.

%% The key is made on the core's worker (RSA takes a while); this process waits for it.
generate(Domain, Key, Days) ->
    Tag = erlang:unique_integer([positive]),
    call(fun(H) ->
                 case xmpp_hosting_nif:cert_generate(H, Domain, Key, Days, Tag) of
                     ok ->
                         receive {xmpp_hosting_result, Tag, Result} -> Result
                         after ?GENERATE_WAIT_MS -> {error, {timeout, <<"no key from the core's worker">>}}
                         end;
                     Err -> Err
                 end
         end, fun installed_text/1).

%% The exchange with the CA runs on the core's worker; this process waits for it.
acme(Domain) ->
    Tag = erlang:unique_integer([positive]),
    call(fun(H) ->
                 case xmpp_hosting_nif:cert_acme(H, Domain, Tag) of
                     ok ->
                         receive {xmpp_hosting_result, Tag, Result} -> Result
                         after ?GENERATE_WAIT_MS -> {error, {timeout, <<"no answer from the ACME exchange">>}}
                         end;
                     Err -> Err
                 end
         end, fun installed_text/1).

show(Domain) ->
    call(fun(H) -> xmpp_hosting_nif:cert_show(H, Domain) end, fun(#{text := Text}) -> {ok, Text} end).

pem(Domain) ->
    call(fun(H) -> xmpp_hosting_nif:cert_pem(H, Domain) end, fun(Pem) -> {ok, Pem} end).

csr(Domain) ->
    call(fun(H) -> xmpp_hosting_nif:cert_csr(H, Domain) end, fun(Pem) -> {ok, Pem} end).

import(Domain, File) ->
    case file:read_file(File) of
        {ok, Pem} ->
            call(fun(H) -> xmpp_hosting_nif:cert_import(H, Domain, Pem) end, fun installed_text/1);
        {error, Why} ->
            {error, invalid_argument, 1, "cannot read " ++ binary_to_list(File) ++ ": " ++ file:format_error(Why)}
    end.

posh(Domain, Service) ->
    call(fun(H) -> xmpp_hosting_nif:cert_posh(H, Domain, Service) end, fun(Json) -> {ok, Json} end).

posh_check(Domain, File) ->
    case file:read_file(File) of
        {ok, Text} ->
            call(fun(H) -> xmpp_hosting_nif:cert_posh_check(H, Domain, Text) end,
                 fun(#{matches := true, matched := Hash}) ->
                         {ok, <<Domain/binary, ": the published file matches (", Hash/binary, ")">>};
                    (#{problems := Problems}) ->
                         {error, not_matching, 1,
                          unicode:characters_to_list(
                            lists:join(<<"\n  - ">>, [<<Domain/binary, ": the published file does not match">> | Problems]))}
                 end);
        {error, Why} ->
            {error, invalid_argument, 1, "cannot read " ++ binary_to_list(File) ++ ": " ++ file:format_error(Why)}
    end.

%% The core's list; an error (exit 1) when one expires within a week.
check() ->
    call(fun(H) -> xmpp_hosting_nif:cert_check(H) end,
         fun(#{ok := true, text := Text}) -> {ok, Text};
            (#{text := Text}) -> {error, expiring, 1, unicode:characters_to_list(Text)}
         end).

install() ->
    call(fun(H) -> install_now(H) end,
         fun(Report) -> {ok, install_line(Report)} end).

%%%===================================================================
%%% Installing into ejabberd
%%%===================================================================

%% The directory of the first host running mod_xmpp_hosting (one store, one directory).
directory(Host) ->
    case gen_mod:get_module_opt(Host, mod_xmpp_hosting, certificates_dir) of
        undefined -> filename:join(mnesia:system_info(directory), "xmpp-hosting-certs");
        Dir -> binary_to_list(Dir)
    end.

%% The housekeeping pass installs into the directory from now on.
set_housekeeping_target(HK, Host) ->
    xmpp_hosting_nif:housekeeping_install_certificates(HK, unicode:characters_to_binary(directory(Host)), ?LAYOUT).

%% At start: ejabberd forgets files added by hand when it restarts; give pkix what is installed.
load_installed(Host) ->
    warn_if_no_client_tls(),
    case filelib:wildcard(filename:join(directory(Host), "*.pem")) of
        [] -> ok;
        Files ->
            [add(unicode:characters_to_binary(F)) || F <- Files],
            commit()
    end.

%% After the core installed: files removed are dropped from pkix, files written (re)read, then
%% one commit rebuilds the chains and hands fast_tls the new files. Nothing when nothing changed.
apply_install(#{installed := [], removed := []}) ->
    ok;
apply_install(#{files_removed := Removed, certfiles := Written, removed := Domains}) ->
    [ejabberd_pkix:del_certfile(F) || F <- Removed ++ Written],
    [add(F) || F <- Written],
    %% fast_tls keeps the last file it was given per name until told otherwise.
    [catch fast_tls:delete_certfile(D) || D <- Domains],
    commit();
apply_install(_) ->
    ok.

%% ejabberd offers STARTTLS on a client listener only with `starttls: true` (or
%% `starttls_required: true`), and TLS from the first byte with `tls: true`, whatever certificates
%% pkix holds: without one of them on any ejabberd_c2s listener the hosted domains' certificates
%% are installed and never served, silently (the cause of a "missing" ACME certificate in issue
%% 14's tests). Said once, at start.
warn_if_no_client_tls() ->
    C2S = [Opts || {_, ejabberd_c2s, Opts} <- try ejabberd_option:listen() catch _:_ -> [] end],
    case C2S =/= [] andalso not lists:any(fun client_tls/1, C2S) of
        true ->
            ?WARNING_MSG("xmpp_hosting: no ejabberd_c2s listener has starttls: true, starttls_required: true "
                         "or tls: true, so the hosted domains' certificates are installed but never served; "
                         "add starttls: true to the client listener", []);
        false -> ok
    end.

%% Listener options are a map in 23.01 and 24.12; another shape is not second-guessed.
client_tls(Opts) when is_map(Opts) ->
    lists:any(fun(K) -> maps:get(K, Opts, false) =:= true end, [starttls, starttls_required, tls]);
client_tls(_) ->
    true.

add(File) ->
    case ejabberd_pkix:add_certfile(File) of
        {ok, _} -> ok;
        {error, Why} -> ?WARNING_MSG("xmpp_hosting: ejabberd does not take ~ts: ~p", [File, Why])
    end.

commit() ->
    try ejabberd_pkix:commit()
    catch Class:Reason -> ?WARNING_MSG("xmpp_hosting: certificate reload failed: ~p", [{Class, Reason}])
    end.

%%%===================================================================
%%% Internal
%%%===================================================================

install_now(H) ->
    Host = hd([Ho || Ho <- ejabberd_option:hosts(), gen_mod:is_loaded(Ho, mod_xmpp_hosting)]),
    case xmpp_hosting_nif:cert_install(H, unicode:characters_to_binary(directory(Host)), ?LAYOUT) of
        {ok, Report} -> apply_install(Report), {ok, Report};
        Err -> Err
    end.

%% A certificate made or imported is served at once: installed, and ejabberd told. The line says
%% "installed" also when the housekeeping pass had already written this domain's files.
installed_text(#{text := Text} = Info) ->
    Line = fun(R) -> {ok, install_line(R, maps:get(domain, Info, undefined))} end,
    case mod_xmpp_hosting:run_command(fun install_now/1, Line) of
        {ok, Line1} -> {ok, <<Text/binary, "\n", Line1/binary>>};
        {error, _, _, Why} -> {ok, <<Text/binary, "\nNot installed: ", (unicode:characters_to_binary(Why))/binary>>}
    end.

install_line(#{installed := [], removed := []} = R, Domain) ->
    case lists:member(Domain, maps:get(in_place, R, [])) of
        true -> <<"Installed for ", Domain/binary, " (already in place)">>;
        false -> <<"Nothing to change in the certificates directory">>
    end;
install_line(R, _Domain) ->
    install_line(R).

install_line(#{installed := [], removed := []}) ->
    <<"Nothing to change in the certificates directory">>;
install_line(#{installed := Installed, removed := Removed}) ->
    iolist_to_binary(["Installed for ", names(Installed), "; removed for ", names(Removed), "; ejabberd reloaded them"]).

names([]) -> <<"none">>;
names(L) -> lists:join(<<", ">>, L).

call(Call, Format) ->
    mod_xmpp_hosting:run_command(Call, Format).
