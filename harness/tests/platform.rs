//! `cargo test --test platform`: every check of `suites/*.toml` as a libtest trial
//! against the platform of `fixtures/platform.toml`. Filters, `--list`, `--exact`,
//! `--skip` and `--ignored` work as in any cargo test.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().unwrap_or(manifest);
    platform_harness::run::libtest_main(root)
}
