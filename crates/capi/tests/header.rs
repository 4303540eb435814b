//! The committed header must be what cbindgen makes of the code, so C users never compile
//! against a stale declaration. `XH_BLESS=1 cargo test -p xmpp-hosting-capi --test header`
//! rewrites it after a deliberate change.

use std::path::PathBuf;

#[test]
fn header_matches_the_code() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let header = crate_dir.join("../../include/xmpp_hosting.h");
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen understands the crate")
        .write(&mut generated);
    if std::env::var_os("XH_BLESS").is_some() {
        std::fs::write(&header, &generated).expect("write include/xmpp_hosting.h");
        return;
    }
    let committed = std::fs::read_to_string(&header).unwrap_or_default();
    let generated = String::from_utf8(generated).expect("cbindgen writes UTF-8");
    if committed != generated {
        let line = committed.lines().zip(generated.lines()).position(|(a, b)| a != b);
        let line = line.unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!(
            "include/xmpp_hosting.h differs from the code (first difference at line {}:\n  committed: {:?}\n  \
             generated: {:?}).\nRegenerate it with `XH_BLESS=1 cargo test -p xmpp-hosting-capi --test header` and \
             commit the header.",
            line + 1,
            committed.lines().nth(line).unwrap_or("<end of file>"),
            generated.lines().nth(line).unwrap_or("<end of file>"),
        );
    }
}
