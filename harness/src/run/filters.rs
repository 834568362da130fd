//! Several FILTERs on the command line, as libtest takes them (`-- postgres s3`):
//! libtest-mimic 0.8 parses one. A trial runs when it matches any filter and no `--skip`;
//! `--exact` applies to every filter. Matching itself stays libtest-mimic's.

use std::ffi::OsString;

use clap::CommandFactory;
use libtest_mimic::{Arguments, Trial};

/// libtest-mimic's arguments with every positional FILTER split off. Clap still parses
/// (and rejects) everything else, so `--help` and usage errors read as before.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> (Arguments, Vec<String>) {
    let cmd = Arguments::command();
    let takes_value = |arg: &str| {
        cmd.get_arguments().any(|a| {
            let named = match arg.strip_prefix("--") {
                Some(long) => a.get_long() == Some(long),
                None => arg.len() == 2 && a.get_short() == arg.chars().nth(1),
            };
            named && a.get_action().takes_values()
        })
    };
    let mut options = Vec::new();
    let mut filters = Vec::new();
    let mut args = args.into_iter();
    options.extend(args.next()); // the binary
    let mut after_separator = false;
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy().into_owned();
        if after_separator || !text.starts_with('-') || text == "-" {
            filters.push(text);
        } else if text == "--" {
            after_separator = true;
        } else {
            // `--skip x` carries its value in the next argument; `--skip=x` does not.
            let value_follows = !text.contains('=') && takes_value(&text);
            options.push(arg);
            if value_follows {
                options.extend(args.next());
            }
        }
    }
    (Arguments::from_iter(options), filters)
}

/// Whether `trial` passes the positional filters (no filter: every trial does).
pub fn matches_any(args: &Arguments, filters: &[String], trial: &Trial) -> bool {
    filters.is_empty()
        || filters.iter().any(|f| {
            let one = Arguments {
                filter: Some(f.clone()),
                skip: Vec::new(),
                ..args.clone()
            };
            !one.is_filtered_out(trial)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const NAMES: [&str; 5] = [
        "postgres::accepts_login",
        "postgres::answers_queries",
        "s3::lifecycle",
        "kafka::roundtrip",
        "trino::tpch_counts",
    ];

    /// The trials left after libtest-mimic's own filtering of the parsed arguments.
    fn selected(cli: &str) -> Vec<&'static str> {
        let argv = std::iter::once("platform")
            .chain(cli.split_whitespace())
            .map(OsString::from);
        let (args, filters) = parse(argv);
        NAMES
            .into_iter()
            .filter(|n| {
                let t = Trial::test(*n, || Ok(()));
                matches_any(&args, &filters, &t) && !args.is_filtered_out(&t)
            })
            .collect()
    }

    #[rstest]
    #[case::no_filter("", &NAMES)]
    #[case::one_filter("postgres", &NAMES[..2])]
    #[case::two_filters("postgres s3", &NAMES[..3])]
    #[case::either_may_match_twice("postgres postgres::accepts", &NAMES[..2])]
    #[case::filters_around_options("s3 --test-threads 2 kafka", &NAMES[2..4])]
    #[case::skip_value_is_no_filter("--skip s3 postgres", &NAMES[..2])]
    #[case::skip_twice("--skip postgres --skip=trino", &NAMES[2..4])]
    #[case::filter_and_skip("postgres s3 --skip answers", &[NAMES[0], NAMES[2]])]
    #[case::exact_for_every_filter(
        "--exact postgres::accepts_login s3::lifecycle postgres",
        &[NAMES[0], NAMES[2]]
    )]
    #[case::exact_skip(
        "--exact postgres::answers_queries postgres::accepts_login --skip postgres::accepts_login",
        &[NAMES[1]]
    )]
    #[case::after_separator("-- kafka trino", &NAMES[3..])]
    fn selects_as_libtest_does(#[case] cli: &str, #[case] expected: &[&str]) {
        assert_eq!(selected(cli), expected, "cargo test -- {cli}");
    }

    #[test]
    fn options_still_reach_libtest_mimic() {
        let argv = ["platform", "--list", "-q", "a", "--test-threads=3", "b"];
        let (args, filters) = parse(argv.map(OsString::from));
        assert!(args.list && args.quiet, "{args:?}");
        assert_eq!(args.test_threads, Some(3));
        assert_eq!(args.filter, None);
        assert_eq!(filters, ["a", "b"]);
    }
}
