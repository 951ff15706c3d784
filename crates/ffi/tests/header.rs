//! `include/shmlane.h` is what cbindgen generates from this crate: a stale checked-in header
//! fails here, with the command that regenerates it.

#![forbid(unsafe_code)]

use std::path::Path;

/// Set to 1 to write the generated header over the checked-in one.
const BLESS_ENV: &str = "SHMLANE_BLESS";

#[test]
fn the_checked_in_header_is_current() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let header = crate_dir.join("../../include/shmlane.h");
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("read crates/ffi/cbindgen.toml");
    let generated = cbindgen::Builder::new()
        .with_src(crate_dir.join("src/lib.rs"))
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header");
    let mut text = Vec::new();
    generated.write(&mut text);
    let text = String::from_utf8(text).expect("the header is UTF-8");
    if std::env::var(BLESS_ENV).is_ok_and(|v| v == "1") {
        std::fs::write(&header, &text).expect("write include/shmlane.h");
        return;
    }
    let current = std::fs::read_to_string(&header).unwrap_or_default();
    assert!(
        current == text,
        "include/shmlane.h is stale (or missing): regenerate it with\n    \
         {BLESS_ENV}=1 cargo test -p shmlane-ffi --test header\nand commit it"
    );
}
