//! Which backend starts a run's services: `PLATFORM_BACKEND` = `containers` (the default,
//! testcontainers on the Docker engine) or `kubernetes` (a namespace on the cluster of
//! `KUBECONFIG`, see `kubernetes::backend`).

/// The environment variable that selects the backend.
pub const VAR: &str = "PLATFORM_BACKEND";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Containers,
    Kubernetes,
}

impl Backend {
    /// The backend `value` names (unset or empty: containers); `Err` says what is known.
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        match value.map(str::trim) {
            None | Some("") | Some("containers") => Ok(Self::Containers),
            Some("kubernetes") => Ok(Self::Kubernetes),
            Some(other) => Err(format!(
                "unknown backend `{other}`: use `containers` (the default) or `kubernetes`"
            )),
        }
    }

    /// The value that selects it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Containers => "containers",
            Self::Kubernetes => "kubernetes",
        }
    }

    /// From `PLATFORM_BACKEND`; `Err` is (the value, why it is refused).
    pub fn from_env() -> Result<Self, (String, String)> {
        let value = std::env::var(VAR).ok();
        Self::parse(value.as_deref()).map_err(|why| (value.unwrap_or_default(), why))
    }
}

#[cfg(test)]
mod tests {
    use super::Backend;
    use rstest::rstest;

    #[rstest]
    #[case(None, Backend::Containers)]
    #[case(Some(""), Backend::Containers)]
    #[case(Some("containers"), Backend::Containers)]
    #[case(Some("kubernetes"), Backend::Kubernetes)]
    fn known_values_select_a_backend(#[case] value: Option<&str>, #[case] expected: Backend) {
        assert_eq!(Backend::parse(value), Ok(expected));
        assert_eq!(Backend::parse(Some(expected.name())), Ok(expected));
    }

    #[test]
    fn an_unknown_value_is_named_with_the_two_known() {
        let e = Backend::parse(Some("k8s")).unwrap_err();
        assert!(e.contains("`k8s`"), "{e}");
        assert!(e.contains("containers") && e.contains("kubernetes"), "{e}");
    }
}
