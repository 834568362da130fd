//! Small protocol clients where no well-kept crate exists.

pub mod kube;
pub mod mlflow;
pub mod trino;

/// An error with its chain of causes on one line: reqwest's own Display stops at the top.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(&format!(": {s}"));
        source = s.source();
    }
    msg
}
