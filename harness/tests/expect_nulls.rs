//! Expectations on SQL NULLs against a real PostgreSQL: `is_null` on one value and
//! `equals_json` on whole rows holding NULLs (TOML has no null), passing and failing.

use std::collections::BTreeMap;
use std::path::Path;

use platform_harness::checks::{run_check, Outcome, Vars};
use platform_harness::platform::endpoint::Endpoint;
use platform_harness::spec::{PlatformSpec, Suite};
use testcontainers::core::wait::LogWaitStrategy;
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

const PASSWORD: &str = "expect-nulls-9e1b";

async fn postgres() -> (ContainerAsync<GenericImage>, u16) {
    let container = GenericImage::new("platform-kit/postgres", "15")
        .with_exposed_port(5432.tcp())
        // Ready twice: once for the init scripts' local-only server, once for real.
        .with_wait_for(WaitFor::log(
            LogWaitStrategy::stdout_or_stderr("database system is ready to accept connections")
                .with_times(2),
        ))
        .with_env_var("POSTGRES_USER", "platform")
        .with_env_var("POSTGRES_DB", "platform")
        .with_env_var("POSTGRES_PASSWORD", PASSWORD)
        .with_startup_timeout(std::time::Duration::from_secs(60))
        .start()
        .await
        .expect("start postgres");
    let port = container.get_host_port_ipv4(5432).await.expect("host port");
    (container, port)
}

fn endpoints(port: u16) -> BTreeMap<String, Endpoint> {
    let ep = Endpoint {
        service: "postgres".into(),
        host: "127.0.0.1".into(),
        ports: BTreeMap::from([("sql".to_string(), port)]),
        params: BTreeMap::from([
            ("user".to_string(), "platform".to_string()),
            ("password".to_string(), PASSWORD.to_string()),
            ("database".to_string(), "platform".to_string()),
        ]),
    };
    BTreeMap::from([("postgres".to_string(), ep)])
}

/// One step querying a row with NULLs, with the given expectation.
async fn run(expect: &str, port: u16) -> Outcome {
    let platform = PlatformSpec::load(Path::new("../fixtures/platform.toml")).expect("platform");
    let src = format!(
        "service = \"postgres\"\n[[check]]\nname = \"nulls\"\n[[check.step]]\n\
         postgres.query.sql = \"SELECT 1 AS a, NULL::text AS b, NULL::int AS c\"\n\
         expect = [{expect}]\n"
    );
    let suite = Suite::parse(Path::new("expect_nulls.toml"), &src, &platform).expect("suite");
    run_check(&suite.checks[0], &endpoints(port), Vars::new())
        .await
        .outcome
}

fn failed(outcome: Outcome) -> String {
    match outcome {
        Outcome::Failed(m) => m,
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[tokio::test]
async fn nulls_are_expected_and_compared_in_whole_rows() {
    let (_pg, port) = postgres().await;
    for passing in [
        r#"{ path = "$.rows[0].b", is_null = true }, { path = "$.rows[0].c", is_null = true }"#,
        r#"{ path = "$.rows[0].a", is_null = false }"#,
        r#"{ path = "$.rows[0]", equals_json = '{"a": 1, "b": null, "c": null}' }"#,
        r#"{ path = "$.rows", equals_json = '[{"c": null, "b": null, "a": 1}]' }"#,
        r#"{ path = "$.rows[0]", not_equals_json = '{"a": 1, "b": "", "c": null}' }"#,
    ] {
        assert_eq!(run(passing, port).await, Outcome::Passed, "{passing}");
    }

    let msg = failed(run(r#"{ path = "$.rows[0].a", is_null = true }"#, port).await);
    assert!(
        msg.contains("expected $.rows[0].a to be null, got 1"),
        "{msg}"
    );
    let msg = failed(run(r#"{ path = "$.rows[0].b", is_null = false }"#, port).await);
    assert!(msg.contains("not to be null, got null"), "{msg}");
    // An empty string is not a NULL.
    let msg = failed(
        run(
            r#"{ path = "$.rows[0]", equals_json = '{"a": 1, "b": "", "c": null}' }"#,
            port,
        )
        .await,
    );
    assert!(msg.contains(r#"got {"a":1,"b":null,"c":null}"#), "{msg}");
    // A column the query lacks is not a NULL either.
    let msg = failed(run(r#"{ path = "$.rows[0].d", is_null = true }"#, port).await);
    assert!(msg.contains("selects nothing"), "{msg}");
}
