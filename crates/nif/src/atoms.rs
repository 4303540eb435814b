//! Atoms shared by the encoders.

rustler::atoms! {
    ok,
    error,
    undefined,
    null,
    name,
    unicode_name,
    settings,
    created_at,
    updated_at,
    xmpp_hosting_result,
}
