//! The one `tracing` subscriber of a run, filtered by `PLATFORM_LOG` (EnvFilter syntax) and
//! written to stderr through the secret masker, so no output path bypasses masking.
//!
//! By default it shows the progress lines (`platform: kafka ready in 6.1 s`) as plain text
//! and nothing else. `PLATFORM_LOG=debug` shows every event of the harness and of the
//! libraries (testcontainers, bollard, the AWS SDK, librdkafka through `log`) with time,
//! level and the span they belong to: run > service start > readiness poll, and
//! check > step > attempt.

use std::io::{IsTerminal, Write};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{DefaultFields, Format, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// Target of the progress lines every run prints (`console::say`, `platform::say`).
pub const CONSOLE: &str = "platform";

/// What shows when `PLATFORM_LOG` is unset: today's progress lines only.
const DEFAULT_FILTER: &str = "platform=info";

/// Installs the subscriber once per process; later calls (a second session in a test
/// binary) keep the first.
pub fn init() {
    let custom = std::env::var("PLATFORM_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let filter = custom
        .as_deref()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only for a person at a terminal, never in CI logs or files.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(Masked)
        .event_format(Progress {
            verbose: custom.is_some(),
            full: Format::default(),
        })
        .try_init();
}

/// Progress lines stay plain text unless the user asked for a log; everything else in
/// tracing's full format.
struct Progress {
    verbose: bool,
    full: Format,
}

impl<S, N> FormatEvent<S, N> for Progress
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        if !self.verbose && meta.target() == CONSOLE && *meta.level() == Level::INFO {
            let mut message = String::new();
            DefaultFields::new().format_fields(Writer::new(&mut message), event)?;
            return writeln!(writer, "{message}");
        }
        self.full.format_event(ctx, writer, event)
    }
}

/// stderr, every event masked before it is written. The formatter hands over a whole
/// event in one write, so a secret is never split between two calls.
#[derive(Clone, Copy)]
struct Masked;

impl<'a> MakeWriter<'a> for Masked {
    type Writer = Masked;

    fn make_writer(&'a self) -> Self::Writer {
        Masked
    }
}

impl Write for Masked {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = crate::mask::mask(&String::from_utf8_lossy(buf));
        // A closed stderr must not stop a run.
        let _ = std::io::stderr().write_all(text.as_bytes());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
