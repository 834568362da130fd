//! How these steps run: the client calls behind each verb.

use super::*;
use crate::kinds::Run;
use crate::kinds::{StepContext, StepError};
use std::time::Instant;

use futures::future::BoxFuture;

use serde_json::{json, Map, Value};

use crate::kinds::http::client;

use crate::clients::error_chain;

/// Lines of a failed job's traceback (or stderr) the message carries.
const TAIL_LINES: usize = 12;

/// How long the master may take to move a finished application to `completedapps`.
const FINISH_GRACE: Duration = Duration::from_secs(15);

impl Run for SparkAction {
    fn run<'a>(&'a self, cx: &'a StepContext<'a>) -> BoxFuture<'a, Result<Value, StepError>> {
        Box::pin(self.execute(cx))
    }
}

impl SparkAction {
    pub async fn execute(&self, cx: &StepContext<'_>) -> Result<Value, StepError> {
        match self {
            Self::Cluster(c) => {
                let state = master_state(cx).await?;
                cluster(&state, c.min_workers)
            }
            Self::Submit(s) => submit(cx, s).await,
        }
    }
}

/// The master's `/json/` through its UI port (`ui`).
async fn master_state(cx: &StepContext<'_>) -> Result<Value, StepError> {
    let url = format!("{}/json/", cx.endpoint.base_url("ui")?);
    let resp = client()
        .get(&url)
        .send()
        .await
        .map_err(|e| StepError::Error(format!("GET /json/: {}", error_chain(&e))))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(StepError::Error(format!("GET /json/: HTTP {status}")));
    }
    resp.json()
        .await
        .map_err(|e| StepError::Error(format!("GET /json/: not JSON: {}", error_chain(&e))))
}

fn cluster(state: &Value, min_workers: u64) -> Result<Value, StepError> {
    let status = state["status"].as_str().unwrap_or("(none)");
    if status != "ALIVE" {
        return Err(StepError::Failure(format!(
            "master status is {status}, expected ALIVE"
        )));
    }
    let workers: Vec<Value> = list(state, "workers")
        .map(|w| {
            json!({
                "id": w["id"], "host": w["host"], "state": w["state"],
                "cores": w["cores"], "cores_used": w["coresused"],
                "memory_mb": w["memory"], "memory_used_mb": w["memoryused"],
            })
        })
        .collect();
    let alive = state["aliveworkers"]
        .as_u64()
        .unwrap_or_else(|| workers.iter().filter(|w| w["state"] == "ALIVE").count() as u64);
    if alive < min_workers {
        let seen = workers
            .iter()
            .map(|w| format!("{} {}", w["id"].as_str().unwrap_or("?"), w["state"]))
            .collect::<Vec<_>>();
        return Err(StepError::Failure(format!(
            "{alive} alive workers, expected at least {min_workers} (workers the master knows: {})",
            if seen.is_empty() {
                "none".to_string()
            } else {
                seen.join(", ")
            }
        )));
    }
    let apps = |key| list(state, key).map(app_summary).collect::<Vec<_>>();
    // id -> state of every application, so a suite can look one up by a captured id.
    let app_states: Map<String, Value> = list(state, "activeapps")
        .chain(list(state, "completedapps"))
        .filter_map(|a| Some((a["id"].as_str()?.to_string(), a["state"].clone())))
        .collect();
    Ok(json!({
        "url": state["url"],
        "status": status,
        "alive_workers": alive,
        "workers": workers,
        "cores": state["cores"],
        "cores_used": state["coresused"],
        "memory_mb": state["memory"],
        "memory_used_mb": state["memoryused"],
        "active_apps": apps("activeapps"),
        "completed_apps": apps("completedapps"),
        "app_states": app_states,
    }))
}

fn list<'a>(state: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    state[key].as_array().into_iter().flatten()
}

fn app_summary(a: &Value) -> Value {
    json!({
        "id": a["id"], "name": a["name"], "state": a["state"],
        "cores": a["cores"], "duration_ms": a["duration"],
    })
}

async fn submit(cx: &StepContext<'_>, s: &SubmitSpec) -> Result<Value, StepError> {
    let service = &cx.endpoint.service;
    let app = cx.render(&s.app)?;
    let shell = cx.shell.ok_or_else(|| {
        StepError::Error(format!(
            "cannot submit {app} on `{service}`: spark.submit runs spark-submit in the master's \
             container, and this platform was not started by the harness (endpoints mode); \
             submit it from a host with spark-submit (`exec` with on = \"host\") instead"
        ))
    })?;
    let name = format!("harness-{}", crate::kinds::unique_id(10));
    let master = cx
        .endpoint
        .param_or("master_url", &format!("spark://{service}:7077"))
        .to_string();
    let mut conf = BTreeMap::new();
    for (k, v) in &s.conf {
        conf.insert(k.clone(), cx.render(v)?);
    }
    let args = s
        .args
        .iter()
        .map(|a| cx.render(a))
        .collect::<Result<Vec<_>, _>>()?;
    let argv = submit_argv(&SubmitLine {
        master: &master,
        name: &name,
        class: s.class.as_deref(),
        conf: &conf,
        app: &app,
        args: &args,
        timeout: s.timeout,
    });
    let started = Instant::now();
    // The in-container `timeout` kills the job; this bound only covers Docker itself.
    let out = shell
        .exec(service, &argv, s.timeout + Duration::from_secs(30))
        .await
        .map_err(|e| StepError::Error(format!("spark-submit {app}: {e}")))?;
    let seconds = started.elapsed().as_secs_f64();
    if out.exit_code == 124 || out.exit_code == 137 {
        return Err(StepError::Failure(format!(
            "{app} did not finish within {} (killed); last lines:\n{}",
            humantime::format_duration(s.timeout),
            failure_tail(&out.stderr, &out.stdout)
        )));
    }
    if out.exit_code != 0 {
        return Err(StepError::Failure(format!(
            "{app} failed (spark-submit exit code {}):\n{}",
            out.exit_code,
            failure_tail(&out.stderr, &out.stdout)
        )));
    }
    let mut result = result_line(&out.stdout).map_err(|e| {
        StepError::Failure(format!(
            "{app} finished but {e}; last lines of its output:\n{}",
            failure_tail("", &out.stdout)
        ))
    })?;
    let mut ids = app_ids_in(&out.stderr);
    ids.extend(app_ids_in(&out.stdout));
    let app_state = finished_app(cx, &name, &ids).await?;
    result.insert(
        "spark_app".into(),
        json!({
            "id": app_state["id"],
            "name": name,
            "state": app_state["state"],
            "duration_ms": app_state["duration"],
            "seconds": (seconds * 1e3).round() / 1e3,
        }),
    );
    Ok(Value::Object(result))
}

struct SubmitLine<'a> {
    master: &'a str,
    name: &'a str,
    class: Option<&'a str>,
    conf: &'a BTreeMap<String, String>,
    app: &'a str,
    args: &'a [String],
    timeout: Duration,
}

/// `timeout` (coreutils) around spark-submit, so a job past its deadline is killed in the
/// container rather than left holding the cluster's cores.
fn submit_argv(l: &SubmitLine<'_>) -> Vec<String> {
    let mut argv: Vec<String> = vec![
        "timeout".into(),
        "--kill-after=10s".into(),
        format!("{}s", l.timeout.as_secs().max(1)),
        "spark-submit".into(),
        "--master".into(),
        l.master.into(),
        "--deploy-mode".into(),
        "client".into(),
        "--name".into(),
        l.name.into(),
    ];
    if let Some(c) = l.class {
        argv.extend(["--class".into(), c.into()]);
    }
    for (k, v) in l.conf {
        argv.extend(["--conf".into(), format!("{k}={v}")]);
    }
    argv.push(l.app.into());
    argv.extend(l.args.iter().cloned());
    argv
}

/// The last `PLATFORM_RESULT` line of stdout, parsed; it must be a JSON object.
fn result_line(stdout: &str) -> Result<Map<String, Value>, String> {
    let line = stdout
        .lines()
        .rev()
        .find_map(|l| l.trim_end().strip_prefix(RESULT_MARKER))
        .ok_or_else(|| format!("printed no `{} {{json}}` line", RESULT_MARKER.trim_end()))?;
    match serde_json::from_str(line) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(format!(
            "its result line is not a JSON object: {}",
            crate::kinds::show(&other)
        )),
        Err(e) => Err(format!("its result line is not JSON ({e})")),
    }
}

/// What a failed job said: its last Python traceback without the JVM's stack frames (the
/// Java exception's message stays), from whichever stream has one; else the last lines of
/// stderr, else of stdout.
fn failure_tail(stderr: &str, stdout: &str) -> String {
    const TRACEBACK: &str = "Traceback (most recent call last):";
    let text = if stderr.contains(TRACEBACK)
        || (!stdout.contains(TRACEBACK) && !stderr.trim().is_empty())
    {
        stderr
    } else {
        stdout
    };
    let from = text.rfind(TRACEBACK).unwrap_or(0);
    let lines: Vec<&str> = text[from..]
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            let jvm_frame = t.starts_with("at ") && l.starts_with(char::is_whitespace);
            let elided = t.starts_with("... ") && t.ends_with(" more");
            // Spark's marker for where a wrapped call came from: a stack trace of its own.
            let suppressed = t.starts_with("Suppressed: ");
            !(jvm_frame || elided || suppressed || t.is_empty())
        })
        .collect();
    if lines.len() <= TAIL_LINES || lines[0] != TRACEBACK {
        return lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n");
    }
    // A long traceback: its first line (so it reads as one), then its end, where the cause is.
    let tail = lines[lines.len() - (TAIL_LINES - 1)..].join("\n");
    format!("{TRACEBACK}\n  ...\n{tail}")
}

/// Application ids (`app-20261201173708-0000`) the job's output names: Spark's client logs
/// them, and a job that set its own app name (which wins over `--name`) may print its id.
fn app_ids_in(text: &str) -> Vec<String> {
    static ID: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"\bapp-\d{14}-\d{4,}\b").expect("valid"));
    let mut ids: Vec<String> = ID.find_iter(text).map(|m| m.as_str().to_string()).collect();
    ids.dedup();
    ids
}

/// The job's application among the master's completed ones, state FINISHED: the one named
/// `name` (spark-submit's `--name`), else one whose id the output names. The master needs a
/// moment after the driver exits to move it there.
async fn finished_app(
    cx: &StepContext<'_>,
    name: &str,
    ids: &[String],
) -> Result<Value, StepError> {
    let deadline = Instant::now() + FINISH_GRACE;
    let ours = |a: &&Value| {
        a["name"] == name
            || a["id"]
                .as_str()
                .is_some_and(|id| ids.iter().any(|i| i == id))
    };
    loop {
        let state = master_state(cx).await?;
        let completed = list(&state, "completedapps").find(ours).cloned();
        let active = list(&state, "activeapps").find(ours).cloned();
        match (completed, active) {
            (Some(app), _) if app["state"] == "FINISHED" => return Ok(app),
            (Some(app), _) => {
                return Err(StepError::Failure(format!(
                    "the master lists application {} ({}) as {}, expected FINISHED",
                    app["name"].as_str().unwrap_or(name),
                    app["id"].as_str().unwrap_or("?"),
                    app["state"]
                )))
            }
            (None, active) if Instant::now() >= deadline => {
                return Err(StepError::Failure(match active {
                    Some(a) => format!(
                        "the job ended but the master still lists application {} as {} after {} s",
                        a["id"].as_str().unwrap_or(name),
                        a["state"],
                        FINISH_GRACE.as_secs()
                    ),
                    None => format!(
                        "the master has no application named {name}{}: the job never \
                         registered with the cluster (did it run with a local master?)",
                        if ids.is_empty() {
                            String::new()
                        } else {
                            format!(" nor with id {}", ids.join(", "))
                        }
                    ),
                }))
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn master(alive: u64, status: &str) -> Value {
        json!({
            "url": "spark://spark-master:7077", "status": status, "aliveworkers": alive,
            "cores": 2, "coresused": 0, "memory": 1024, "memoryused": 0,
            "workers": (0..alive).map(|i| json!({"id": format!("worker-{i}"), "host": "10.0.0.3",
                "state": "ALIVE", "cores": 2, "coresused": 0, "memory": 1024, "memoryused": 0}))
                .collect::<Vec<_>>(),
            "activeapps": [],
            "completedapps": [{"id": "app-1", "name": "harness-x", "state": "FINISHED", "cores": 1, "duration": 2500}],
        })
    }

    #[test]
    fn cluster_reports_workers_and_applications() {
        let out = cluster(&master(1, "ALIVE"), 1).expect("passes");
        assert_eq!(out["alive_workers"], 1);
        assert_eq!(out["workers"][0]["cores"], 2);
        assert_eq!(out["completed_apps"][0]["state"], "FINISHED");
        assert_eq!(out["app_states"]["app-1"], "FINISHED");
        assert_eq!(out["memory_mb"], 1024);
    }

    #[rstest]
    #[case::no_worker(
        master(0, "ALIVE"),
        1,
        "0 alive workers, expected at least 1 (workers the master knows: none)"
    )]
    #[case::standby(master(1, "STANDBY"), 1, "master status is STANDBY, expected ALIVE")]
    #[case::too_few(master(1, "ALIVE"), 2, "1 alive workers, expected at least 2")]
    fn cluster_failures_say_why(#[case] state: Value, #[case] min: u64, #[case] msg: &str) {
        let err = cluster(&state, min).expect_err("fails");
        assert!(matches!(err, StepError::Failure(_)));
        assert!(err.message().contains(msg), "{err:?}");
    }

    #[test]
    fn result_is_the_last_marked_line() {
        let out = "noise\nPLATFORM_RESULT {\"rows\": 1}\nmore\nPLATFORM_RESULT {\"rows\": 2}\n";
        assert_eq!(result_line(out).unwrap()["rows"], 2);
    }

    #[rstest]
    #[case::missing("just logs\n", "printed no `PLATFORM_RESULT {json}` line")]
    #[case::not_json("PLATFORM_RESULT rows=2\n", "is not JSON")]
    #[case::not_object("PLATFORM_RESULT [1, 2]\n", "is not a JSON object")]
    fn bad_result_lines_say_why(#[case] out: &str, #[case] msg: &str) {
        assert!(result_line(out).unwrap_err().contains(msg));
    }

    #[test]
    fn failure_tail_keeps_the_traceback_without_jvm_frames() {
        let stderr = "26/12/01 WARN something\nTraceback (most recent call last):\n  File \"/jobs/a.py\", line 3, in <module>\n    main()\npy4j.protocol.Py4JJavaError: An error occurred while calling o42.csv.\n: java.nio.file.AccessDeniedException: s3a://lake/x.csv: 403 Forbidden\n\tat org.apache.hadoop.fs.s3a.S3AUtils.translateException(S3AUtils.java:1)\n\t... 20 more\n";
        let tail = failure_tail(stderr, "");
        assert!(tail.starts_with("Traceback"), "{tail}");
        assert!(tail.contains("AccessDeniedException: s3a://lake/x.csv: 403 Forbidden"));
        assert!(!tail.contains("S3AUtils"), "{tail}");
        assert!(!tail.contains("more"), "{tail}");
        assert!(!tail.contains("WARN something"), "{tail}");
    }

    #[test]
    fn failure_tail_without_traceback_is_the_last_lines() {
        let stderr = (1..=30).map(|i| format!("line {i}\n")).collect::<String>();
        let tail = failure_tail(&stderr, "");
        assert!(
            tail.starts_with("line 19\n") && tail.ends_with("line 30"),
            "{tail}"
        );
    }

    #[test]
    fn a_long_traceback_keeps_its_first_line_and_its_end() {
        let mut stderr = String::from("Traceback (most recent call last):\n");
        for i in 0..20 {
            stderr.push_str(&format!("  File \"x.py\", line {i}\n"));
        }
        stderr.push_str("\tSuppressed: org.apache.spark.util.Utils$OriginalTryStackTraceException: Full stacktrace\n");
        stderr.push_str("ValueError: the cause\n");
        let tail = failure_tail(&stderr, "");
        assert!(
            tail.starts_with("Traceback (most recent call last):\n  ...\n"),
            "{tail}"
        );
        assert!(tail.ends_with("ValueError: the cause"), "{tail}");
        assert!(!tail.contains("Suppressed"), "{tail}");
        assert_eq!(tail.lines().count(), TAIL_LINES + 1);
    }

    #[test]
    fn failure_tail_finds_a_traceback_on_stdout_too() {
        let tail = failure_tail(
            "INFO starting\nINFO stopping\n",
            "Traceback (most recent call last):\nValueError: boom\n",
        );
        assert_eq!(tail, "Traceback (most recent call last):\nValueError: boom");
    }

    #[test]
    fn app_ids_come_from_the_clients_log_lines() {
        let log = "INFO StandaloneAppClient: Executor added: app-20261201173708-0000/0 on worker-1\nINFO Executor updated: app-20261201173708-0000/0 is now RUNNING\napp-1 no";
        assert_eq!(app_ids_in(log), ["app-20261201173708-0000"]);
    }

    #[test]
    fn submit_line_is_bounded_and_client_mode() {
        let conf = BTreeMap::from([("spark.executor.memory".to_string(), "512m".to_string())]);
        let argv = submit_argv(&SubmitLine {
            master: "spark://spark-master:7077",
            name: "harness-1",
            class: None,
            conf: &conf,
            app: "/opt/spark/work-dir/jobs/a.py",
            args: &["--n".into(), "3".into()],
            timeout: Duration::from_secs(90),
        });
        assert_eq!(
            argv.join(" "),
            "timeout --kill-after=10s 90s spark-submit --master spark://spark-master:7077 \
             --deploy-mode client --name harness-1 --conf spark.executor.memory=512m \
             /opt/spark/work-dir/jobs/a.py --n 3"
        );
    }

    #[rstest]
    #[case("spark.cluster = {}", "cluster")]
    #[case(
        "spark.submit = { app = \"/jobs/a.py\", args = [\"1\"], timeout = \"2m\" }",
        "submit"
    )]
    fn parses_its_verbs(#[case] src: &str, #[case] verb: &str) {
        let t: toml::Table = toml::from_str(src).unwrap();
        let a: SparkAction = t["spark"].clone().try_into().unwrap();
        assert_eq!(a.verb(), verb);
    }

    /// Answers every exec with `out`, checking the command is a bounded spark-submit.
    struct FakeShell(crate::kinds::ExecOutput);

    impl crate::kinds::ServiceShell for FakeShell {
        fn exec<'a>(
            &'a self,
            service: &'a str,
            argv: &'a [String],
            timeout: Duration,
        ) -> BoxFuture<'a, Result<crate::kinds::ExecOutput, String>> {
            assert_eq!(service, "spark-master");
            assert_eq!(
                argv[..4],
                ["timeout", "--kill-after=10s", "60s", "spark-submit"]
            );
            assert!(
                argv.contains(&"spark://spark-master:7077".to_string()),
                "{argv:?}"
            );
            assert!(timeout > Duration::from_secs(60));
            Box::pin(async move { Ok(self.0.clone()) })
        }
    }

    async fn submit_with(out: crate::kinds::ExecOutput) -> StepError {
        let ep = crate::kinds::Endpoint {
            service: "spark-master".into(),
            host: "127.0.0.1".into(),
            ports: BTreeMap::new(),
            params: BTreeMap::new(),
        };
        let (endpoints, vars) = (BTreeMap::new(), crate::kinds::Vars::new());
        let shell = FakeShell(out);
        let cx = StepContext {
            endpoint: &ep,
            endpoints: &endpoints,
            vars: &vars,
            shell: Some(&shell),
            probe: false,
        };
        let t: toml::Table =
            toml::from_str("spark.submit = { app = \"/jobs/a.py\", timeout = \"60s\" }").unwrap();
        let a: SparkAction = t["spark"].clone().try_into().unwrap();
        a.execute(&cx).await.expect_err("fails")
    }

    #[rstest]
    #[case::raises(
        1,
        "Traceback (most recent call last):\n  File \"/jobs/a.py\"\nValueError: boom\n",
        "/jobs/a.py failed (spark-submit exit code 1):\nTraceback (most recent call last):"
    )]
    #[case::killed_at_its_timeout(
        124,
        "INFO still running\n",
        "/jobs/a.py did not finish within 1m (killed); last lines:\nINFO still running"
    )]
    #[tokio::test]
    async fn a_failed_submission_says_why(
        #[case] code: i64,
        #[case] stderr: &str,
        #[case] msg: &str,
    ) {
        let err = submit_with(crate::kinds::ExecOutput {
            exit_code: code,
            stdout: String::new(),
            stderr: stderr.into(),
        })
        .await;
        assert!(matches!(err, StepError::Failure(_)), "{err:?}");
        assert!(err.message().contains(msg), "{err:?}");
    }

    #[tokio::test]
    async fn a_job_without_its_result_line_fails_before_asking_the_master() {
        let err = submit_with(crate::kinds::ExecOutput {
            exit_code: 0,
            stdout: "done\n".into(),
            stderr: String::new(),
        })
        .await;
        assert!(
            err.message()
                .contains("finished but printed no `PLATFORM_RESULT {json}` line"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn submit_in_endpoints_mode_is_a_clear_error() {
        let ep = crate::kinds::Endpoint {
            service: "spark-master".into(),
            host: "127.0.0.1".into(),
            ports: BTreeMap::new(),
            params: BTreeMap::new(),
        };
        let endpoints = BTreeMap::new();
        let vars = crate::kinds::Vars::new();
        let cx = StepContext {
            endpoint: &ep,
            endpoints: &endpoints,
            vars: &vars,
            shell: None,
            probe: false,
        };
        let t: toml::Table = toml::from_str("spark.submit = { app = \"/jobs/a.py\" }").unwrap();
        let a: SparkAction = t["spark"].clone().try_into().unwrap();
        let err = a.execute(&cx).await.expect_err("no shell");
        assert!(matches!(err, StepError::Error(_)));
        assert!(err.message().contains("endpoints mode"), "{err:?}");
        assert!(err.message().contains("`spark-master`"), "{err:?}");
    }
}
