//! Lua binding: see crates/lua/Cargo.toml. (Being written.)
