//! Small protocol clients where no well-kept crate exists.

pub mod mlflow;
pub mod trino;
