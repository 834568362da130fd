//! An already-running platform (staging, a shared compose host, Kubernetes NodePorts): the
//! endpoints file (parsed by `spec::endpoints`) as the checks' source of endpoints.

use std::sync::Arc;

use super::{Endpoint, ServiceFailure};
pub use crate::spec::endpoints::{schema, ExternalPlatform};

impl ExternalPlatform {
    pub fn endpoint(&self, service: &str) -> Result<Endpoint, Arc<ServiceFailure>> {
        self.endpoints.get(service).cloned().ok_or_else(|| {
            Arc::new(ServiceFailure {
                service: service.to_string(),
                message: format!("has no endpoint in {}", self.file.display()),
                log_tail: String::new(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn resolves_credentials_from_the_environment() {
        let src = r#"
[services.postgres]
host = "db.example"
ports = { sql = 6432 }
params = { user = "app" }
credentials = { password = { env = "PATH" } }
"#;
        let p = ExternalPlatform::parse(Path::new("e.toml"), src).unwrap();
        let ep = p.endpoint("postgres").unwrap();
        assert_eq!(ep.host, "db.example");
        assert_eq!(ep.port("sql").unwrap(), 6432);
        assert_eq!(ep.params["password"], std::env::var("PATH").unwrap());
        let missing = p.endpoint("kafka").unwrap_err();
        assert_eq!(
            missing.to_string(),
            "service `kafka` has no endpoint in e.toml"
        );
    }
}
