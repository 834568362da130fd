//! Progress lines on stderr (stdout belongs to libtest's own output), masked by the
//! subscriber that writes them.

use super::CheckRecord;
use crate::checks::Outcome;
use crate::secrets::{self, Masker};

/// Sets the masker for the process (`secrets::install`): every `clip` in a check's
/// message masks with it too, before cutting.
pub fn init(masker: Masker) {
    secrets::install(masker);
}

pub fn mask(text: &str) -> String {
    secrets::mask(text)
}

/// A progress line: an info event of the `platform` target, which the run's subscriber
/// (`report::log`) prints as plain text on stderr, masked.
pub fn say(line: impl AsRef<str>) {
    tracing::info!(target: super::log::CONSOLE, "{}", line.as_ref());
}

pub fn verdict_word(o: &Outcome) -> &'static str {
    match o {
        Outcome::Passed => "ok",
        Outcome::Failed(_) => "FAILED",
        Outcome::Errored(_) => "ERROR",
    }
}

/// What the console shows for a check that did not pass: the reason, where the check is
/// defined, and the last lines its services logged.
pub fn failure_text(record: &CheckRecord) -> Option<String> {
    let message = match &record.outcome {
        Outcome::Passed => return None,
        Outcome::Failed(m) => format!("FAILED: {m}"),
        Outcome::Errored(m) => format!("ERROR: {m}"),
    };
    let mut text = message;
    text.push_str(&format!("\n  at {}", record.location));
    for (svc, tail) in &record.service_logs {
        // Masked before keeping the last lines: a cut through a multi-line secret
        // would leave a part the mask no longer matches.
        let tail = mask(tail);
        let last: Vec<&str> = tail.lines().rev().take(15).collect();
        text.push_str(&format!("\n  last log lines of {svc}:"));
        for l in last.into_iter().rev() {
            text.push_str(&format!("\n    {l}"));
        }
    }
    Some(text)
}
