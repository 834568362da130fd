//! Why the container backend could not start a platform at all (as opposed to one service
//! failing, which is a [`super::ServiceFailure`] on the checks that need it).

/// The platform did not start: nothing of the run is left running.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StartError {
    /// No engine at the configured socket, or it refused the first call.
    #[error("{0}")]
    EngineUnreachable(String),
    /// An engine call did not answer within its bound.
    #[error("{what}: the Docker engine did not answer within {limit}")]
    EngineTimeout { what: String, limit: String },
    /// The engine answered with an error (creating the run's network, ...).
    #[error("{0}")]
    Engine(String),
    /// Images the selected services need are not on the engine.
    #[error(
        "image(s) not built: {}. Build them with `fixtures/images/build {}` (or set PLATFORM_IMAGES=upstream where a registry is reachable)",
        images.join(", "),
        services.join(" ")
    )]
    ImagesMissing {
        images: Vec<String>,
        services: Vec<String>,
    },
    /// An environment setting the run reads (`PLATFORM_START`, `PLATFORM_IMAGES`, ...) has
    /// a value it does not know.
    #[error("{0}")]
    Setting(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_images_say_how_to_build_them() {
        let e = StartError::ImagesMissing {
            images: vec![
                "platform-kit/spark:4.0.1".into(),
                "platform-kit/kafka:3.9.1".into(),
            ],
            services: vec!["spark-master".into(), "kafka".into()],
        };
        assert_eq!(
            e.to_string(),
            "image(s) not built: platform-kit/spark:4.0.1, platform-kit/kafka:3.9.1. Build them with \
             `fixtures/images/build spark-master kafka` (or set PLATFORM_IMAGES=upstream where a registry is reachable)"
        );
    }
}
