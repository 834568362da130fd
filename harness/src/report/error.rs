//! Why a report could not be read or written.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a JUnit report: {reason}", path.display())]
    NotJunit { path: PathBuf, reason: String },
    /// The XML writer refused (quick-junit's serialisation).
    #[error("writing {}: {reason}", path.display())]
    Render { path: PathBuf, reason: String },
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Writes `text` to `path`, creating its folder.
pub(super) fn write_file(path: &std::path::Path, text: &str) -> Result<(), ReportError> {
    let write = |source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(write)?;
    }
    std::fs::write(path, text).map_err(write)
}
