//! What the lifecycle logs, derived from its spec, and how the read-back must look.

use std::collections::BTreeMap;

use super::LifecycleSpec;
use crate::clients::mlflow::{KeyValue, Metric, Run};

/// What the lifecycle logs: derived from the spec and a nonce, so the read-back can be
/// compared exactly and belongs to this run only.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub(super) nonce: String,
    pub(super) params: Vec<KeyValue>,
    pub(super) metric_names: Vec<String>,
    steps: usize,
    pub(super) tags: Vec<KeyValue>,
    pub(super) artifact: Vec<u8>,
}

const ARTIFACT_SIZE: usize = 4096;
/// runs/log-batch limits of the MLflow server.
const MAX_BATCH_METRICS: usize = 1000;
const MAX_BATCH_PARAMS: usize = 100;

impl Plan {
    pub(super) fn new(spec: &LifecycleSpec, nonce: &str) -> Result<Self, String> {
        if spec.params > MAX_BATCH_PARAMS {
            return Err(format!(
                "`params` = {} exceeds MLflow's {MAX_BATCH_PARAMS} params per log-batch",
                spec.params
            ));
        }
        if spec.metrics == 0 || spec.steps == 0 {
            return Err("`metrics` and `steps` must be at least 1".into());
        }
        if spec.metrics.saturating_mul(spec.steps) > MAX_BATCH_METRICS {
            return Err(format!(
                "`metrics` x `steps` = {} exceeds MLflow's {MAX_BATCH_METRICS} metric values per log-batch",
                spec.metrics.saturating_mul(spec.steps)
            ));
        }
        let params = (0..spec.params)
            .map(|i| KeyValue::new(format!("param_{i}"), format!("value-{i}-{nonce}")))
            .collect();
        let metric_names = std::iter::once("accuracy".to_string())
            .chain((1..spec.metrics).map(|i| format!("metric_{i}")))
            .collect();
        let tags = vec![
            KeyValue::new("harness.check", "mlflow.lifecycle"),
            KeyValue::new("harness.nonce", nonce),
            // Non-ASCII text must survive the store's encoding.
            KeyValue::new("harness.note", "données ✓ 検証"),
        ];
        // Every byte value, so a text-mangling proxy shows.
        let artifact = (0..ARTIFACT_SIZE)
            .map(|i| ((i * 131 + 7) % 256) as u8)
            .collect();
        Ok(Self {
            nonce: nonce.to_string(),
            params,
            metric_names,
            steps: spec.steps,
            tags,
            artifact,
        })
    }

    /// `accuracy` rises from just above 0.5 to 0.9; the others are distinct per metric
    /// and step.
    fn value(&self, metric: usize, step: usize) -> f64 {
        if metric == 0 {
            0.5 + 0.4 * (step + 1) as f64 / self.steps as f64
        } else {
            (metric * 1000 + step) as f64 + 0.25
        }
    }

    pub(super) fn metrics(&self, timestamp: i64) -> Vec<Metric> {
        let mut out = Vec::new();
        for (i, name) in self.metric_names.iter().enumerate() {
            for step in 0..self.steps {
                out.push(Metric {
                    key: name.clone(),
                    value: self.value(i, step),
                    timestamp,
                    step: step as i64,
                });
            }
        }
        out
    }

    /// Every param, the latest value of every metric and every tag, as read back.
    pub(super) fn verify_run(&self, run: &Run) -> Result<(), String> {
        let mut problems = Vec::new();
        if run.info.status != "FINISHED" {
            problems.push(format!("status {:?}, expected FINISHED", run.info.status));
        }
        let find = |list: &[KeyValue], key: &str| {
            list.iter().find(|p| p.key == key).map(|p| p.value.clone())
        };
        for (what, expected, got) in [
            ("param", &self.params, &run.data.params),
            ("tag", &self.tags, &run.data.tags),
        ] {
            for p in expected {
                match find(got, &p.key) {
                    Some(v) if v == p.value => {}
                    Some(v) => problems.push(format!(
                        "{what} {}: expected {:?}, got {v:?}",
                        p.key, p.value
                    )),
                    None => problems.push(format!("{what} {} is missing", p.key)),
                }
            }
        }
        let last = self.steps - 1;
        for (i, name) in self.metric_names.iter().enumerate() {
            let want = self.value(i, last);
            match run.data.metrics.iter().find(|m| &m.key == name) {
                Some(m) if m.step == last as i64 && close(m.value, want) => {}
                Some(m) => problems.push(format!(
                    "metric {name}: expected latest value {want} at step {last}, got {} at step {}",
                    m.value, m.step
                )),
                None => problems.push(format!("metric {name} is missing")),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// The history of metric 0: one point per step, each with its value.
    pub(super) fn verify_history(&self, history: &[Metric]) -> Result<(), String> {
        let name = &self.metric_names[0];
        let mut by_step: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
        for m in history {
            by_step.entry(m.step).or_default().push(m.value);
        }
        let mut problems = Vec::new();
        if history.len() != self.steps {
            problems.push(format!(
                "expected {} points, got {}",
                self.steps,
                history.len()
            ));
        }
        for step in 0..self.steps {
            let want = self.value(0, step);
            match by_step.get(&(step as i64)).map(Vec::as_slice) {
                Some([v]) if close(*v, want) => {}
                Some(vs) => problems.push(format!("step {step}: expected [{want}], got {vs:?}")),
                None => problems.push(format!("step {step} is missing")),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!("metric history of {name}: {}", problems.join("; ")))
        }
    }
}

/// Values go through JSON text and a float8 column: equal up to rounding of the last bit.
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    fn spec(params: usize, metrics: usize, steps: usize) -> LifecycleSpec {
        LifecycleSpec {
            experiment: "e".into(),
            params,
            metrics,
            steps,
        }
    }

    /// The run a healthy server returns for the plan.
    fn healthy_run(plan: &Plan) -> Run {
        let latest: Vec<Metric> = plan
            .metric_names
            .iter()
            .enumerate()
            .map(|(i, k)| Metric {
                key: k.clone(),
                value: plan.value(i, plan.steps - 1),
                timestamp: 1,
                step: plan.steps as i64 - 1,
            })
            .collect();
        serde_json::from_value(json!({
            "info": {"run_id": "r1", "experiment_id": "1", "status": "FINISHED",
                     "artifact_uri": "mlflow-artifacts:/1/r1/artifacts", "lifecycle_stage": "active"},
            "data": {"params": plan.params, "tags": plan.tags, "metrics": latest},
            "inputs": {},
        }))
        .unwrap()
    }

    #[test]
    fn plan_matches_a_healthy_read_back() {
        let plan = Plan::new(&spec(5, 3, 10), "n1").unwrap();
        assert_eq!(plan.metrics(1).len(), 30);
        assert_eq!(plan.metric_names, ["accuracy", "metric_1", "metric_2"]);
        assert_eq!(plan.verify_run(&healthy_run(&plan)), Ok(()));
        assert!(close(plan.value(0, 9), 0.9));
        assert!((0..10).all(|s| plan.value(0, s) > 0.5));
    }

    #[test]
    fn read_back_names_each_difference() {
        let plan = Plan::new(&spec(2, 2, 3), "n1").unwrap();
        let mut run = healthy_run(&plan);
        run.info.status = "RUNNING".into();
        run.data.params[1].value = "other".into();
        run.data.tags.retain(|t| t.key != "harness.note");
        run.data.metrics[1].value += 1.0;
        let err = plan.verify_run(&run).unwrap_err();
        for part in [
            "status \"RUNNING\"",
            "param param_1: expected \"value-1-n1\", got \"other\"",
            "tag harness.note is missing",
            "metric metric_1: expected latest value 1002.25",
        ] {
            assert!(err.contains(part), "{err}");
        }
    }

    #[rstest]
    #[case::complete(vec![(0, 0), (1, 1), (2, 2)], None)]
    #[case::missing_step(vec![(0, 0), (2, 2)], Some("step 1 is missing"))]
    #[case::duplicate(vec![(0, 0), (1, 1), (1, 1), (2, 2)], Some("expected 3 points, got 4"))]
    #[case::wrong_value(vec![(0, 0), (1, 2), (2, 2)], Some("step 1: expected"))]
    fn checks_the_history(#[case] points: Vec<(i64, usize)>, #[case] problem: Option<&str>) {
        let plan = Plan::new(&spec(1, 1, 3), "n").unwrap();
        let history: Vec<Metric> = points
            .into_iter()
            .map(|(step, value_of)| Metric {
                key: "accuracy".into(),
                value: plan.value(0, value_of),
                timestamp: 1,
                step,
            })
            .collect();
        match (plan.verify_history(&history), problem) {
            (Ok(()), None) => {}
            (Err(e), Some(p)) => assert!(e.contains(p), "{e}"),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[rstest]
    #[case(spec(101, 1, 1), "100 params")]
    #[case(spec(1, 0, 1), "at least 1")]
    #[case(spec(1, 11, 100), "1000 metric values")]
    fn refuses_plans_over_the_batch_limits(#[case] s: LifecycleSpec, #[case] msg: &str) {
        assert!(Plan::new(&s, "n").unwrap_err().contains(msg));
    }

    #[test]
    fn the_artifact_has_every_byte_value() {
        let plan = Plan::new(&spec(1, 1, 1), "n").unwrap();
        let distinct: std::collections::BTreeSet<u8> = plan.artifact.iter().copied().collect();
        assert_eq!((plan.artifact.len(), distinct.len()), (ARTIFACT_SIZE, 256));
    }
}
