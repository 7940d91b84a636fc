#![allow(clippy::unwrap_used, missing_docs)]
//! The benchmarks, one module per subject, in one binary: a release build links core and the AWS
//! SDKs (with thin LTO) once, not once per subject.
//!
//! `cargo bench -p appcreds-tests --bench benches -- FILTER`. The criterion benchmarks
//! (`app-token/…`, `installation-token/…`, `access/…`) are chosen by criterion's filter, a regular
//! expression; each module sets its stack up only when one of its benchmarks is chosen. The runs
//! that print their own figures are chosen by name: `sync`, `key-rotation` and `scanner` (whose
//! peak RSS is the process's: run it alone). Without a filter, everything runs.

mod access_rules;
mod app_token;
mod installation_token;
mod key_rotation;
mod scanner;
mod sync;

fn main() {
    let mut criterion = criterion::Criterion::default().configure_from_args();
    app_token::benches(&mut criterion);
    installation_token::benches(&mut criterion);
    access_rules::benches(&mut criterion);
    criterion.final_summary();

    // `cargo bench` passes --bench; `cargo test --benches` runs benches as tests: stay quick there.
    // `--list` names criterion's benchmarks only.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--list") {
        return;
    }
    let everything = args.iter().all(|a| a.starts_with('-'));
    let chosen = |name: &str| everything || args.iter().any(|a| a == name);
    if chosen("sync") {
        sync::run();
    }
    if chosen("key-rotation") {
        key_rotation::run();
    }
    if chosen("scanner") {
        scanner::run();
    }
}
