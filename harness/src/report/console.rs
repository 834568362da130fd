//! Progress lines on stderr (stdout belongs to libtest's own output), masked.

use std::sync::OnceLock;

use crate::secrets::Masker;

static MASKER: OnceLock<Masker> = OnceLock::new();

/// Sets the masker for the process; later calls keep the first (one platform per run).
pub fn init(masker: Masker) {
    let _ = MASKER.set(masker);
}

pub fn mask(text: &str) -> String {
    match MASKER.get() {
        Some(m) => m.mask(text),
        None => text.to_string(),
    }
}

/// Ignores a closed stderr: progress lines are not worth a panic.
pub fn say(line: impl AsRef<str>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{}", mask(line.as_ref()));
}
