//! The tracking API: experiments, runs, logging, metric history and search.

use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::transport::display_url;
use super::{Client, Error, Experiment, KeyValue, Metric, Run};

impl Client {
    pub async fn get_experiment_by_name(&self, name: &str) -> Result<Experiment, Error> {
        #[derive(Deserialize)]
        struct Resp {
            experiment: Experiment,
        }
        let r: Resp = self
            .call(
                Method::GET,
                "experiments/get-by-name",
                &[("experiment_name", name)],
                None,
            )
            .await?;
        Ok(r.experiment)
    }

    pub async fn create_experiment(&self, name: &str) -> Result<String, Error> {
        #[derive(Deserialize)]
        struct Resp {
            experiment_id: String,
        }
        let r: Resp = self
            .call(
                Method::POST,
                "experiments/create",
                &[],
                Some(json!({ "name": name })),
            )
            .await?;
        Ok(r.experiment_id)
    }

    pub async fn restore_experiment(&self, experiment_id: &str) -> Result<(), Error> {
        let _: Value = self
            .call(
                Method::POST,
                "experiments/restore",
                &[],
                Some(json!({ "experiment_id": experiment_id })),
            )
            .await?;
        Ok(())
    }

    /// Finds the experiment or creates it; a concurrent creator winning the race
    /// (`RESOURCE_ALREADY_EXISTS`) is fine. A deleted experiment of that name is restored,
    /// since MLflow will not create a second one with the same name. The flag says whether
    /// this call created it.
    pub async fn get_or_create_experiment(&self, name: &str) -> Result<(Experiment, bool), Error> {
        match self.get_experiment_by_name(name).await {
            Ok(e) if e.lifecycle_stage == "deleted" => {
                self.restore_experiment(&e.experiment_id).await?;
                Ok((self.get_experiment_by_name(name).await?, false))
            }
            Ok(e) => Ok((e, false)),
            Err(e) if e.error_code() == Some("RESOURCE_DOES_NOT_EXIST") => {
                match self.create_experiment(name).await {
                    Ok(_) => Ok((self.get_experiment_by_name(name).await?, true)),
                    Err(e) if e.error_code() == Some("RESOURCE_ALREADY_EXISTS") => {
                        Ok((self.get_experiment_by_name(name).await?, false))
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    pub async fn create_run(
        &self,
        experiment_id: &str,
        run_name: Option<&str>,
        start_time: i64,
        tags: &[KeyValue],
    ) -> Result<Run, Error> {
        #[derive(Deserialize)]
        struct Resp {
            run: Run,
        }
        let mut body = json!({
            "experiment_id": experiment_id,
            "start_time": start_time,
            "tags": tags,
        });
        if let Some(name) = run_name {
            body["run_name"] = json!(name);
        }
        let r: Resp = self
            .call(Method::POST, "runs/create", &[], Some(body))
            .await?;
        Ok(r.run)
    }

    /// One `runs/log-batch`: the server stores all of it or none.
    pub async fn log_batch(
        &self,
        run_id: &str,
        params: &[KeyValue],
        metrics: &[Metric],
        tags: &[KeyValue],
    ) -> Result<(), Error> {
        let _: Value = self
            .call(
                Method::POST,
                "runs/log-batch",
                &[],
                Some(
                    json!({ "run_id": run_id, "params": params, "metrics": metrics, "tags": tags }),
                ),
            )
            .await?;
        Ok(())
    }

    pub async fn get_run(&self, run_id: &str) -> Result<Run, Error> {
        #[derive(Deserialize)]
        struct Resp {
            run: Run,
        }
        let r: Resp = self
            .call(Method::GET, "runs/get", &[("run_id", run_id)], None)
            .await?;
        Ok(r.run)
    }

    /// Sets the run's status; `end_time` (ms) marks it terminated.
    pub async fn update_run(
        &self,
        run_id: &str,
        status: &str,
        end_time: Option<i64>,
    ) -> Result<Value, Error> {
        let mut body = json!({ "run_id": run_id, "status": status });
        if let Some(t) = end_time {
            body["end_time"] = json!(t);
        }
        self.call(Method::POST, "runs/update", &[], Some(body))
            .await
    }

    /// Every point of one metric, following pages. `max_results` is always sent: MLflow
    /// 3.5 reads a missing one as 0 and answers an empty page with a token it then rejects.
    pub async fn metric_history(&self, run_id: &str, key: &str) -> Result<Vec<Metric>, Error> {
        const PAGE: &str = "1000";
        #[derive(Deserialize)]
        struct Resp {
            #[serde(default)]
            metrics: Vec<Metric>,
            next_page_token: Option<String>,
        }
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![
                ("run_id", run_id),
                ("metric_key", key),
                ("max_results", PAGE),
            ];
            if let Some(t) = &token {
                query.push(("page_token", t));
            }
            let r: Resp = self
                .call(Method::GET, "metrics/get-history", &query, None)
                .await?;
            let empty = r.metrics.is_empty();
            all.extend(r.metrics);
            match r.next_page_token.filter(|t| !t.is_empty()) {
                // A token after an empty page would loop forever.
                Some(_) if empty => {
                    return Err(Error::Protocol {
                        url: display_url(&self.url("/api/2.0/mlflow/metrics/get-history", &[])),
                        cause: "an empty page of metric history with a next_page_token".into(),
                    })
                }
                Some(t) => token = Some(t),
                None => return Ok(all),
            }
        }
    }

    /// One page of `runs/search` (up to `max_results`).
    pub async fn search_runs(
        &self,
        experiment_ids: &[&str],
        filter: &str,
        max_results: u32,
        order_by: &[String],
    ) -> Result<Vec<Run>, Error> {
        #[derive(Deserialize)]
        struct Resp {
            #[serde(default)]
            runs: Vec<Run>,
        }
        let r: Resp = self
            .call(
                Method::POST,
                "runs/search",
                &[],
                Some(json!({
                    "experiment_ids": experiment_ids,
                    "filter": filter,
                    "max_results": max_results,
                    "order_by": order_by,
                })),
            )
            .await?;
        Ok(r.runs)
    }
}
