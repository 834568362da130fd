//! Trino checks failing the way they should: an unreachable server, Trino's own errors
//! (syntax, missing table) and a query cancelled at its deadline. One Trino container
//! (about 30-60 s to start on 2 cores) serves every case against a live server.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use platform_harness::checks::{run_check, Outcome, Vars};
use platform_harness::platform::endpoint::Endpoint;
use platform_harness::spec::{Check, PlatformSpec, Suite};
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{GenericImage, ImageExt};

/// One check of one step, parsed like a suite file.
fn check(step: &str) -> Check {
    let platform = PlatformSpec::load(Path::new("../fixtures/platform.toml")).unwrap();
    let src = format!("service = \"trino\"\n[[check]]\nname = \"t\"\n[[check.step]]\n{step}\n");
    let mut suite = Suite::parse(Path::new("broken_trino.toml"), &src, &platform).unwrap();
    suite.checks.remove(0)
}

fn endpoints(port: u16) -> BTreeMap<String, Endpoint> {
    let ep = Endpoint {
        service: "trino".into(),
        host: "127.0.0.1".into(),
        ports: BTreeMap::from([("http".to_string(), port)]),
        params: BTreeMap::from([("user".to_string(), "broken-test".to_string())]),
    };
    BTreeMap::from([("trino".to_string(), ep)])
}

async fn run(step: &str, port: u16) -> (Outcome, Vars) {
    let r = run_check(&check(step), &endpoints(port), Vars::new()).await;
    (r.outcome, r.vars)
}

fn errored(outcome: Outcome) -> String {
    match outcome {
        Outcome::Errored(m) => m,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_server_is_an_error_naming_the_endpoint() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (outcome, _) = run(r#"trino.query.sql = "SELECT 1""#, port).await;
    let msg = errored(outcome);
    assert!(
        msg.contains(&format!(
            "trino at http://127.0.0.1:{port}: POST http://127.0.0.1:{port}/v1/statement"
        )),
        "{msg}"
    );
    assert!(msg.to_lowercase().contains("connection refused"), "{msg}");
}

#[tokio::test]
async fn trinos_errors_are_surfaced_and_a_late_query_is_cancelled() {
    let trino = GenericImage::new("platform-kit/trino", "435")
        .with_wait_for(WaitFor::message_on_either_std("SERVER STARTED"))
        .with_exposed_port(8080.tcp())
        .with_startup_timeout(Duration::from_secs(180))
        .start()
        .await
        .expect("start platform-kit/trino:435 (built by fixtures/images/build)");
    let port = trino.get_host_port_ipv4(8080.tcp()).await.unwrap();

    // Warm up: the first statements may meet "no nodes" while the node registers itself.
    let (warm, _) = run(
        r#"trino.query = { sql = "SELECT count(*) AS n FROM tpch.tiny.nation", within = "90s" }"#,
        port,
    )
    .await;
    assert_eq!(warm, Outcome::Passed);

    let (outcome, _) = run(r#"trino.query.sql = "SELEC 1""#, port).await;
    let msg = errored(outcome);
    assert!(
        msg.contains(&format!("trino at http://127.0.0.1:{port}")),
        "{msg}"
    );
    assert!(
        msg.contains("failed with SYNTAX_ERROR (USER_ERROR): line 1:1: mismatched input 'SELEC'"),
        "{msg}"
    );

    let (outcome, _) = run(r#"trino.query.sql = "SELECT * FROM tpch.tiny.nope""#, port).await;
    let msg = errored(outcome);
    assert!(
        msg.contains("failed with TABLE_NOT_FOUND (USER_ERROR): line 1:15: Table 'tpch.tiny.nope' does not exist"),
        "{msg}"
    );

    // Errors thrown deep in the engine carry Trino's cause chain, deepest last, one line.
    let (outcome, _) = run(r#"trino.query.sql = "SELECT 1/0""#, port).await;
    let msg = errored(outcome);
    assert!(
        msg.contains("failed with DIVISION_BY_ZERO (USER_ERROR): Division by zero; caused by java.lang.ArithmeticException: / by zero"),
        "{msg}"
    );
    let (outcome, _) = run(
        r#"trino.query.sql = "SELECT json_parse(x) FROM (VALUES '{') t(x)""#,
        port,
    )
    .await;
    let msg = errored(outcome);
    assert!(
        msg.contains("Cannot convert value to JSON: '{'; caused by com.fasterxml.jackson.core.io.JsonEOFException: Unexpected end-of-input"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
    // The chain is in `expect_error`'s output too, for expectations.
    let (outcome, _) = run(
        r#"trino.query = { sql = "SELECT 1/0", expect_error = "DIVISION_BY_ZERO" }
expect = [{ path = "$.error.causes[0]", equals = "caused by java.lang.ArithmeticException: / by zero" }]"#,
        port,
    )
    .await;
    assert_eq!(outcome, Outcome::Passed);
    // A cause that did not happen fails, showing the one that did.
    let (outcome, _) = run(
        r#"trino.query = { sql = "SELECT 1/0", expect_error = "DIVISION_BY_ZERO" }
expect = [{ path = "$.error.causes[0]", contains = "NumberFormatException" }]"#,
        port,
    )
    .await;
    match outcome {
        Outcome::Failed(m) => assert!(
            m.contains("got \"caused by java.lang.ArithmeticException"),
            "{m}"
        ),
        other => panic!("expected a failure, got {other:?}"),
    }

    // `expect_error` naming another error than the one Trino gives is a failure, not an error.
    let (outcome, _) = run(
        r#"trino.query = { sql = "SELECT * FROM tpch.tiny.nope", expect_error = "SYNTAX_ERROR" }"#,
        port,
    )
    .await;
    match outcome {
        Outcome::Failed(m) => assert!(
            m.contains("to fail with SYNTAX_ERROR, it failed with TABLE_NOT_FOUND"),
            "{m}"
        ),
        other => panic!("expected a failure, got {other:?}"),
    }

    // Minutes of work on 2 cores; the 2 s deadline cancels it.
    let (outcome, _) = run(
        r#"trino.query = { sql = "SELECT count(*) FROM tpch.sf1.lineitem a CROSS JOIN tpch.sf1.lineitem b", within = "2s" }"#,
        port,
    )
    .await;
    let msg = errored(outcome);
    let id = regex::Regex::new(r"query (\d{8}_\d{6}_\d{5}_\w{5}) did not finish within 2s; cancelled it \(DELETE nextUri\)")
        .unwrap()
        .captures(&msg)
        .unwrap_or_else(|| panic!("no deadline message with a query id in: {msg}"))[1]
        .to_string();

    // The server agrees: the query ended as cancelled by its user.
    let step = format!(
        r#"trino.query.sql = "SELECT state, error_code FROM system.runtime.queries WHERE query_id = '{id}'"
expect = [{{ path = "$.rows[0]", equals = {{ state = "FAILED", error_code = "USER_CANCELED" }} }}]
within = "20s""#
    );
    let (outcome, _) = run(&step, port).await;
    assert_eq!(outcome, Outcome::Passed, "query {id} was not cancelled");
    drop(trino);
}

#[test]
fn unknown_parameters_are_refused_with_their_name() {
    let platform = PlatformSpec::load(Path::new("../fixtures/platform.toml")).unwrap();
    let src = "service = \"trino\"\n[[check]]\nname = \"t\"\n[[check.step]]\ntrino.query = { sql = \"SELECT 1\", expected_error = \"X\" }\n";
    let err = Suite::parse(Path::new("t.toml"), src, &platform)
        .unwrap_err()
        .to_string();
    assert!(err.contains("expected_error"), "{err}");
}
