//! What a check receives about a service: where it is and how to log in. The same for
//! containers started by the harness and for an already-running platform.

use std::collections::BTreeMap;

use super::StepError;

#[derive(Clone, PartialEq)]
pub struct Endpoint {
    pub service: String,
    /// Host reachable from the harness (127.0.0.1 for containers).
    pub host: String,
    /// Named ports as reachable from the harness.
    pub ports: BTreeMap<String, u16>,
    /// Service parameters: user, password, database, access_key, ... (may be secrets).
    pub params: BTreeMap<String, String>,
}

/// Parameters named like credentials, or holding a known secret, show as `****`.
impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let params: BTreeMap<&str, String> = self
            .params
            .iter()
            .map(|(k, v)| {
                let shown = if crate::mask::looks_like_credential(k) {
                    crate::mask::MASK.to_string()
                } else {
                    crate::mask::mask(v)
                };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("Endpoint")
            .field("service", &self.service)
            .field("host", &self.host)
            .field("ports", &self.ports)
            .field("params", &params)
            .finish()
    }
}

impl Endpoint {
    pub fn port(&self, name: &str) -> Result<u16, StepError> {
        self.ports.get(name).copied().ok_or_else(|| {
            StepError::Error(format!(
                "service `{}` has no port named `{name}` (it has: {})",
                self.service,
                self.ports.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    pub fn param(&self, key: &str) -> Result<&str, StepError> {
        self.params.get(key).map(String::as_str).ok_or_else(|| {
            StepError::Error(format!(
                "service `{}` has no endpoint parameter `{key}`",
                self.service
            ))
        })
    }

    pub fn param_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.params.get(key).map_or(default, String::as_str)
    }

    /// `scheme://host:port` for the named port; the scheme is the `scheme` parameter
    /// (default `http`), so an external platform can use TLS.
    pub fn base_url(&self, port: &str) -> Result<String, StepError> {
        Ok(format!(
            "{}://{}:{}",
            self.param_or("scheme", "http"),
            self.host,
            self.port(port)?
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_credentials() {
        let ep = Endpoint {
            service: "postgres".into(),
            host: "h".into(),
            ports: BTreeMap::from([("sql".into(), 5432)]),
            params: BTreeMap::from([
                ("user".into(), "platform".into()),
                ("password".into(), "hunter22-pw".into()),
            ]),
        };
        let shown = format!("{ep:?}");
        assert!(!shown.contains("hunter22"), "{shown}");
        assert!(shown.contains("\"platform\""), "{shown}");
        assert!(shown.contains("\"password\": \"****\""), "{shown}");
    }
}
