%%% Stanza errors chosen by the core, built once for every xmpp-hosting module.
-module(xmpp_hosting_stanza).

-export([error/4]).

-include("xmpp.hrl").
-include("logger.hrl").

%% @doc The stanza error the core chose (a refused registration, a refused upload slot). Its type
%% and condition are RFC 6120 names, all atoms of the xmpp library; should a newer core send one
%% this ejabberd does not know, the client still gets a refusal (not-allowed) rather than a
%% crashed session.
-spec error(binary(), binary(), binary(), binary()) -> stanza_error().
error(Type, Cond, Text, Lang) ->
    try #stanza_error{type = binary_to_existing_atom(Type, utf8),
                      reason = binary_to_existing_atom(Cond, utf8),
                      text = xmpp:mk_text(Text, Lang)}
    catch error:badarg ->
            ?WARNING_MSG("xmpp_hosting: unknown stanza error ~ts/~ts", [Type, Cond]),
            xmpp:err_not_allowed(Text, Lang)
    end.
