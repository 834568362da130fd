//! `platform-verify`: the suites as a command, for a platform the harness starts or one
//! that already runs (`--endpoints`). Exit codes: 0 all passed, 1 a check did not pass,
//! 2 bad input.
//!
//! `validate` and `list` need the spec layer alone; built without the `run` feature the
//! command has only those two (`cargo install --no-default-features`: no client library).

#[cfg(feature = "run")]
mod commands;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use platform_harness::spec::endpoints::ExternalPlatform;
use platform_harness::spec::{named, Spec};

#[derive(Parser)]
#[command(version, about = "Verify a data platform with declarative suites")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the suites: start the platform, or verify the one given by --endpoints.
    #[cfg(feature = "run")]
    Run(commands::RunArgs),
    /// List every check with the services it needs.
    List(SpecArgs),
    /// Parse and validate everything; start nothing.
    Validate(SpecArgs),
    /// Start the platform and leave it running; runs then attach to it (warm runs).
    #[cfg(feature = "run")]
    Up(commands::UpArgs),
    /// Remove the platform `up` started (only its containers and network, or its namespace).
    #[cfg(feature = "run")]
    Down(commands::DownArgs),
    /// Show each service of the `up` platform: running, ready now, its ports.
    #[cfg(feature = "run")]
    Status(commands::PlatformArg),
    /// Merge JUnit reports (of shards) into one.
    #[cfg(feature = "run")]
    MergeJunit {
        /// The merged report.
        out: PathBuf,
        /// The reports to merge.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
    /// The process `up --backend kubernetes` starts to hold the platform's port-forwards.
    #[cfg(feature = "run")]
    #[command(hide = true)]
    ForwardUp {
        #[arg(long)]
        state: PathBuf,
    },
}

#[derive(Args)]
struct SpecArgs {
    /// Suites folder (default: `suites`, or the named platform's `suites/NAME`).
    #[arg(long)]
    suites: Option<PathBuf>,
    /// A platform file, or a named platform (`default`, `observability`, ...: a
    /// `fixtures/platforms/NAME.toml` with its `suites/NAME/`).
    #[arg(long, default_value = "fixtures/platform.toml")]
    platform: String,
    /// An already-running platform's endpoints (see fixtures/endpoints.example.toml).
    #[arg(long)]
    endpoints: Option<PathBuf>,
}

fn main() -> ExitCode {
    #[cfg(feature = "run")]
    platform_harness::report::log::init();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // clap's own exit code for bad flags is 2 as well; help and version are 0.
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match cli.command {
        Command::Validate(a) => validate(&a),
        Command::List(a) => list(&a),
        #[cfg(feature = "run")]
        Command::Run(a) => commands::run(&a),
        #[cfg(feature = "run")]
        Command::Up(a) => commands::up(&a),
        #[cfg(feature = "run")]
        Command::Down(a) => commands::down(&a),
        #[cfg(feature = "run")]
        Command::Status(a) => commands::status(&a),
        #[cfg(feature = "run")]
        Command::MergeJunit { out, inputs } => commands::merge_junit(&out, &inputs),
        #[cfg(feature = "run")]
        Command::ForwardUp { state } => platform_harness::run::up::forward_up(&state),
    }
}

fn load(a: &SpecArgs) -> Result<Spec, ExitCode> {
    let (platform, suites) = match named::by_name(Path::new(""), &a.platform) {
        Some(Ok(found)) => found,
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return Err(ExitCode::from(2));
        }
        None => (PathBuf::from(&a.platform), PathBuf::from("suites")),
    };
    let suites = a.suites.clone().unwrap_or(suites);
    let spec = Spec::load_for(&platform, &suites, a.endpoints.as_deref()).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(2)
    })?;
    if let Some(f) = &a.endpoints {
        ExternalPlatform::load(f).map_err(|e| {
            eprintln!("{e}");
            ExitCode::from(2)
        })?;
    }
    Ok(spec)
}

fn validate(a: &SpecArgs) -> ExitCode {
    match load(a) {
        Ok(spec) => {
            println!(
                "valid: {} service(s), {} suite(s), {} check(s)",
                spec.platform.services.len(),
                spec.suites.len(),
                spec.checks().count()
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn list(a: &SpecArgs) -> ExitCode {
    let spec = match load(a) {
        Ok(s) => s,
        Err(code) => return code,
    };
    for c in spec.checks() {
        let needs = spec.services_for([c]);
        println!(
            "{}  [{}]",
            c.id(),
            needs.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    ExitCode::SUCCESS
}
