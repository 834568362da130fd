//! How these steps run: the client calls behind each verb.

use super::*;
use crate::kinds::Run;
use crate::kinds::{ExecOutput, StepContext, StepError};

use std::process::Stdio;

use futures::future::BoxFuture;

use serde_json::{json, Value};

/// Lines of stderr (or stdout, when stderr is empty) a failure message carries.
const TAIL_LINES: usize = 10;

impl Run for ExecAction {
    fn run<'a>(&'a self, cx: &'a StepContext<'a>) -> BoxFuture<'a, Result<Value, StepError>> {
        Box::pin(self.execute(cx))
    }
}

impl ExecAction {
    /// Output: `{exit_code, stdout, stderr}`, plus `json` when stdout is JSON.
    pub async fn execute(&self, cx: &StepContext<'_>) -> Result<Value, StepError> {
        let argv = self
            .cmd
            .iter()
            .map(|a| cx.render(a))
            .collect::<Result<Vec<_>, _>>()?;
        if argv.is_empty() {
            return Err(StepError::Error("`cmd` is empty: name a program".into()));
        }
        let shown = argv.join(" ");
        let out = match self.on {
            Where::Host => on_host(&argv, &self.env, self.timeout).await,
            Where::Container => {
                let service = &cx.endpoint.service;
                let shell = cx.shell.ok_or_else(|| {
                    StepError::Error(format!(
                        "cannot run `{shown}` in the container of `{service}`: this platform \
                         was not started by the harness (endpoints mode); use `on = \"host\"` \
                         with a client that reaches the service"
                    ))
                })?;
                shell.exec(service, &argv, self.timeout).await
            }
        }
        .map_err(|e| StepError::Error(format!("`{shown}`: {e}")))?;
        judge(&shown, out, &self.ok_exit_codes)
    }
}

fn judge(shown: &str, out: ExecOutput, ok: &[i64]) -> Result<Value, StepError> {
    if !ok.contains(&out.exit_code) {
        let said = if out.stderr.trim().is_empty() {
            &out.stdout
        } else {
            &out.stderr
        };
        return Err(StepError::Failure(format!(
            "`{shown}` exited with code {}; last lines:\n{}",
            out.exit_code,
            last_lines(said, TAIL_LINES)
        )));
    }
    let mut value = json!({
        "exit_code": out.exit_code,
        "stdout": out.stdout,
        "stderr": out.stderr,
    });
    if let Ok(parsed) = serde_json::from_str::<Value>(out.stdout.trim()) {
        value["json"] = parsed;
    }
    Ok(value)
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A host command under a deadline; killed (not left running) when the deadline passes.
async fn on_host(
    argv: &[String],
    env: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<ExecOutput, String> {
    let child = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| {
            format!(
                "did not finish within {} (killed)",
                humantime::format_duration(timeout)
            )
        })?
        .map_err(|e| e.to_string())?;
    Ok(ExecOutput {
        // A signal-killed process has no code; -1 like Docker's unknown exit.
        exit_code: out.status.code().map_or(-1, i64::from),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::{Endpoint, ServiceShell, Vars};
    use rstest::rstest;

    fn endpoint() -> Endpoint {
        Endpoint {
            service: "svc".into(),
            host: "127.0.0.1".into(),
            ports: BTreeMap::new(),
            params: BTreeMap::new(),
        }
    }

    fn action(src: &str) -> ExecAction {
        toml::from_str(src).expect("parses")
    }

    async fn run(a: &ExecAction, shell: Option<&dyn ServiceShell>) -> Result<Value, StepError> {
        let ep = endpoint();
        let endpoints = BTreeMap::new();
        let vars = Vars::from([("who".to_string(), json!("world"))]);
        let cx = StepContext {
            endpoint: &ep,
            endpoints: &endpoints,
            vars: &vars,
            shell,
            probe: false,
        };
        a.execute(&cx).await
    }

    #[tokio::test]
    async fn host_command_gives_exit_code_streams_and_json() {
        let a = action(
            r#"on = "host"
               cmd = ["sh", "-c", "echo '{\"hello\": \"${who}\"}'; echo note >&2"]"#,
        );
        let out = run(&a, None).await.expect("passes");
        assert_eq!(out["exit_code"], 0);
        assert_eq!(out["json"]["hello"], "world");
        assert_eq!(out["stderr"], "note\n");
    }

    #[rstest]
    #[case::non_zero(
        r#"cmd = ["sh", "-c", "echo one >&2; echo boom >&2; exit 3"]"#,
        "exited with code 3; last lines:\none\nboom"
    )]
    #[case::missing_program(r#"cmd = ["/no/such/program"]"#, "cannot start")]
    #[case::timeout(
        r#"cmd = ["sleep", "30"]
timeout = "300ms""#,
        "did not finish within 300ms (killed)"
    )]
    #[tokio::test]
    async fn host_command_failures_say_why(#[case] src: &str, #[case] expected: &str) {
        let a = action(&format!("on = \"host\"\n{src}"));
        let started = std::time::Instant::now();
        let err = run(&a, None).await.expect_err("fails");
        assert!(err.message().contains(expected), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn container_exec_without_containers_is_a_clear_error() {
        let a = action(r#"cmd = ["redis-cli", "ping"]"#);
        let err = run(&a, None).await.expect_err("no shell");
        assert!(matches!(err, StepError::Error(_)));
        assert!(err.message().contains("endpoints mode"), "{err:?}");
        assert!(err.message().contains("`svc`"), "{err:?}");
    }

    struct FakeShell(ExecOutput);

    impl ServiceShell for FakeShell {
        fn exec<'a>(
            &'a self,
            service: &'a str,
            argv: &'a [String],
            _timeout: Duration,
        ) -> BoxFuture<'a, Result<ExecOutput, String>> {
            assert_eq!(service, "svc");
            assert_eq!(argv, ["echo", "world"]);
            Box::pin(async move { Ok(self.0.clone()) })
        }
    }

    #[tokio::test]
    async fn container_exec_goes_to_the_services_shell_with_rendered_args() {
        let shell = FakeShell(ExecOutput {
            exit_code: 0,
            stdout: "world\n".into(),
            stderr: String::new(),
        });
        let a = action(r#"cmd = ["echo", "${who}"]"#);
        let out = run(&a, Some(&shell)).await.expect("passes");
        assert_eq!(out["stdout"], "world\n");
        assert!(out.get("json").is_none());
    }
}
