//! Runs a check's steps in order, with retries, captures and expectations.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use backon::{ConstantBuilder, Retryable};
use serde_json::Value;

use super::{StepContext, StepError, Vars};
use crate::kinds::ServiceShell;
use crate::platform::endpoint::Endpoint;
use crate::spec::suite::{Check, RetryPolicy, Step};
use tracing::Instrument;

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Passed,
    /// An expectation did not hold.
    Failed(String),
    /// The check could not judge: unreachable service, bad input, failed predecessor.
    Errored(String),
}

impl Outcome {
    pub fn from_error(e: StepError) -> Self {
        match e {
            StepError::Failure(m) => Self::Failed(m),
            StepError::Error(m) => Self::Errored(m),
        }
    }

    pub fn is_pass(&self) -> bool {
        matches!(self, Self::Passed)
    }
}

#[derive(Debug, Clone)]
pub struct StepRecord {
    /// The action's output (what expectations saw), for the report.
    pub output: Option<Value>,
    pub label: String,
    pub service: String,
    pub attempts: usize,
    pub duration: Duration,
    pub result: Result<(), StepError>,
}

#[derive(Debug, Clone)]
pub struct CheckRun {
    pub outcome: Outcome,
    pub steps: Vec<StepRecord>,
    /// Variables at the end, for checks that `need` this one.
    pub vars: Vars,
    pub duration: Duration,
}

/// Runs a check with no way into containers (`exec` steps in containers error).
pub async fn run_check(
    check: &Check,
    endpoints: &BTreeMap<String, Endpoint>,
    vars: Vars,
) -> CheckRun {
    run_check_with(check, endpoints, vars, None).await
}

pub async fn run_check_with(
    check: &Check,
    endpoints: &BTreeMap<String, Endpoint>,
    vars: Vars,
    shell: Option<&dyn ServiceShell>,
) -> CheckRun {
    let started = Instant::now();
    let mut vars = vars;
    let mut steps = Vec::new();
    let all = run_steps(check, endpoints, shell, &mut vars, &mut steps);
    let outcome = match tokio::time::timeout(check.timeout, all).await {
        Ok(r) => r,
        Err(_) => {
            let running = check
                .steps
                .get(steps.len())
                .map(|s| format!(" (step {} `{}` was running)", steps.len() + 1, s.label))
                .unwrap_or_default();
            Err(StepError::Error(format!(
                "the check did not finish within its timeout of {}{running}; set `timeout` on the check or its suite",
                humantime::format_duration(check.timeout)
            )))
        }
    };
    CheckRun {
        outcome: outcome.map_or_else(Outcome::from_error, |()| Outcome::Passed),
        steps,
        vars,
        duration: started.elapsed(),
    }
}

async fn run_steps(
    check: &Check,
    endpoints: &BTreeMap<String, Endpoint>,
    shell: Option<&dyn ServiceShell>,
    vars: &mut Vars,
    records: &mut Vec<StepRecord>,
) -> Result<(), StepError> {
    for (i, step) in check.steps.iter().enumerate() {
        let started = Instant::now();
        let attempts = Mutex::new(0usize);
        let result = match endpoints.get(&step.service) {
            Some(endpoint) => {
                let cx = StepContext {
                    endpoint,
                    endpoints,
                    vars,
                    shell,
                    probe: false,
                };
                let span = tracing::info_span!(
                    "step",
                    n = i + 1,
                    label = %step.label,
                    service = %step.service
                );
                run_step(step, &cx, &attempts).instrument(span).await
            }
            None => Err(StepError::Error(format!(
                "no endpoint for service `{}`",
                step.service
            ))),
        };
        let output = result.as_ref().ok().cloned();
        let result =
            result.and_then(|output| step.capture.iter().try_for_each(|c| c.apply(&output, vars)));
        let result = result.map_err(|e| {
            e.context(format!(
                "step {} `{}` on {}",
                i + 1,
                step.label,
                step.service
            ))
        });
        records.push(StepRecord {
            output,
            label: step.label.clone(),
            service: step.service.clone(),
            attempts: attempts.into_inner().unwrap_or_default(),
            duration: started.elapsed(),
            result: result.clone(),
        });
        result?;
    }
    Ok(())
}

/// One attempt: the action, then every expectation on its output.
async fn attempt(
    step: &Step,
    cx: &StepContext<'_>,
    attempts: &Mutex<usize>,
) -> Result<Value, StepError> {
    let n = attempts
        .lock()
        .map(|mut n| {
            *n += 1;
            *n
        })
        .unwrap_or_default();
    let started = Instant::now();
    let result: Result<Value, StepError> = async {
        let output = step.action.run(cx).await?;
        for a in &step.expect {
            a.check_with(&output, cx.vars).map_err(StepError::Failure)?;
        }
        Ok(output)
    }
    .await;
    let took_ms = started.elapsed().as_millis() as u64;
    match &result {
        Ok(_) if n > 1 => tracing::info!(attempt = n, took_ms, "passed after retrying"),
        Ok(_) => tracing::debug!(attempt = n, took_ms, "passed"),
        Err(e) if step.retry != RetryPolicy::ONCE => {
            tracing::info!(attempt = n, took_ms, error = %e.message(), "attempt did not pass; retrying while the policy allows")
        }
        Err(e) => tracing::debug!(attempt = n, took_ms, error = %e.message(), "did not pass"),
    }
    result
}

async fn run_step(
    step: &Step,
    cx: &StepContext<'_>,
    attempts: &Mutex<usize>,
) -> Result<Value, StepError> {
    let RetryPolicy {
        retries,
        interval,
        within,
    } = step.retry.clone();
    if retries == Some(0) && within.is_none() {
        return attempt(step, cx, attempts).await;
    }
    let backoff = ConstantBuilder::default().with_delay(interval);
    let backoff = match retries {
        Some(n) => backoff.with_max_times(n),
        None => backoff.without_max_times(),
    };
    let last = Mutex::new(None::<StepError>);
    let retried = (|| attempt(step, cx, attempts))
        .retry(backoff)
        .notify(|e: &StepError, _| {
            if let Ok(mut l) = last.lock() {
                *l = Some(e.clone());
            }
        });
    match within {
        None => retried.await,
        Some(deadline) => match tokio::time::timeout(deadline, retried).await {
            Ok(r) => r,
            Err(_) => {
                let n = attempts.lock().map(|n| *n).unwrap_or_default();
                let why = last
                    .lock()
                    .ok()
                    .and_then(|l| l.clone())
                    .unwrap_or_else(|| StepError::Error("no attempt finished".into()));
                Err(why.context(format!(
                    "still failing after {} ({n} attempt(s)), last",
                    humantime::format_duration(deadline)
                )))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{PlatformSpec, Suite};
    use std::path::Path;

    fn check(suite: &str) -> Check {
        let platform = PlatformSpec::parse(
            Path::new("p.toml"),
            "[services.box]\nimage = \"x\"\nready = [{ tcp = \"p\" }]\nports = { p = 1 }\n",
        )
        .expect("platform");
        let suite = Suite::parse(Path::new("s.toml"), suite, &platform).expect("suite");
        suite.checks[0].clone()
    }

    fn endpoints() -> BTreeMap<String, Endpoint> {
        BTreeMap::from([(
            "box".to_string(),
            Endpoint {
                service: "box".into(),
                host: "127.0.0.1".into(),
                ports: BTreeMap::new(),
                params: BTreeMap::new(),
            },
        )])
    }

    #[tokio::test]
    async fn a_check_is_cut_at_its_timeout_naming_the_running_step() {
        let c = check(
            r#"service = "box"
timeout = "1s"
[[check]]
name = "slow"
[[check.step]]
exec = { on = "host", cmd = ["true"] }
[[check.step]]
name = "waits"
exec = { on = "host", cmd = ["sleep", "30"] }
"#,
        );
        assert_eq!(c.timeout, Duration::from_secs(1));
        let started = Instant::now();
        let run = run_check(&c, &endpoints(), Vars::new()).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        match run.outcome {
            Outcome::Errored(m) => {
                assert!(m.contains("within its timeout of 1s"), "{m}");
                assert!(m.contains("step 2 `waits` was running"), "{m}");
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn checks_default_to_a_bounded_timeout() {
        let c = check("service = \"box\"\n[[check]]\nname = \"a\"\n[[check.step]]\nexec = { on = \"host\", cmd = [\"true\"] }\n");
        assert_eq!(c.timeout, crate::spec::suite::DEFAULT_CHECK_TIMEOUT);
    }
}
