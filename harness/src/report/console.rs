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

pub fn say(line: impl AsRef<str>) {
    eprintln!("{}", mask(line.as_ref()));
}
