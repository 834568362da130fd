//! One step's connection to the tracking server, and how API errors count: as the
//! service failing, or as the check being kept from judging.

use crate::clients::mlflow::{self as api, Client};
use crate::kinds::{StepContext, StepError};

/// A client plus what error messages need: which service, at which address.
pub(super) struct Mlflow {
    pub(super) client: Client,
    /// `mlflow (http://127.0.0.1:32771)`
    pub(super) place: String,
}

impl Mlflow {
    pub(super) fn new(cx: &StepContext<'_>) -> Result<Self, StepError> {
        let ep = cx.endpoint;
        let base = ep.base_url("http")?;
        // A server behind MLflow's basic-auth app or a proxy; none in the local platform.
        let auth = match (ep.params.get("user"), ep.params.get("password")) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            _ => None,
        };
        let client = Client::new(&base, auth)
            .map_err(|e| StepError::Error(format!("{} ({base}): {e}", ep.service)))?;
        Ok(Self {
            client,
            place: format!("{} ({base})", ep.service),
        })
    }

    /// For the user-level verbs: a rejected request (4xx) is the suite's input, so it
    /// keeps the step from judging; the server failing (5xx) is a failure of the service.
    pub(super) fn user_error(&self, what: impl std::fmt::Display, e: api::Error) -> StepError {
        let msg = format!("{}: {what}: {e}", self.place);
        match e.status() {
            Some(s) if s >= 500 => StepError::Failure(msg),
            _ if matches!(e, api::Error::Protocol { .. }) => StepError::Failure(msg),
            _ => StepError::Error(msg),
        }
    }

    /// For the lifecycle: every request is the harness's own and well-formed, so any
    /// rejection is the service's failure, except for credentials and transport.
    pub(super) fn lifecycle_error(&self, what: &str, e: api::Error) -> StepError {
        let msg = format!("{}: {what}: {e}", self.place);
        match e {
            api::Error::Transport { .. } => StepError::Error(msg),
            api::Error::Api { status, .. } if status == 401 || status == 403 => {
                StepError::Error(msg)
            }
            _ => StepError::Failure(msg),
        }
    }

    /// Where the run's artifacts live under the server's artifact proxy.
    pub(super) async fn artifact_root(&self, run_id: &str) -> Result<String, StepError> {
        let run = self
            .client
            .get_run(run_id)
            .await
            .map_err(|e| self.user_error(format!("reading run {run_id}"), e))?;
        api::proxied_artifact_root(&run.info.artifact_uri)
            .map_err(|e| StepError::Failure(format!("{}: run {run_id}: {e}", self.place)))
    }
}
