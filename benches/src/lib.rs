//! shmlane benchmarks live in this folder as `[[bench]]` targets: `cargo bench -p shmlane-benches`.
