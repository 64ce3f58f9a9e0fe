//! The node's own log (issue 16 item 6): always on stderr, and besides
//! that to a file that rotates daily (`start --log-file PATH`, keeping
//! [`KEEP_LOG_FILES`] days), and/or to journald (`start --journald`, with
//! each event's level as the journal's priority). Under systemd stderr
//! reaches the journal anyway; `--journald` adds the levels and fields.

use std::path::{Path, PathBuf};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Daily log files kept: a week of history on a small board's SD card.
pub const KEEP_LOG_FILES: usize = 7;

/// What the filter shows unless `RUST_LOG` says otherwise.
pub const DEFAULT_FILTER: &str = "info,libp2p_mdns=warn,libp2p_kad=error,libp2p_gossipsub=warn";

/// Where the node's log goes besides stderr.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub file: Option<PathBuf>,
    pub journald: bool,
}

/// Why the log could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("--log-file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("--journald: cannot reach journald ({0}); is this running under systemd?")]
    Journald(std::io::Error),
}

fn filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_FILTER))
}

/// The rolling appender for `path`: files `NAME.YYYY-MM-DD` in its
/// directory.
fn appender(path: &Path) -> Result<tracing_appender::rolling::RollingFileAppender, LogError> {
    let err = |reason: String| LogError::File {
        path: path.to_path_buf(),
        reason,
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| err("it names no file".into()))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| err(e.to_string()))?;
    tracing_appender::rolling::Builder::new()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix(name)
        .max_log_files(KEEP_LOG_FILES)
        .build(&dir)
        .map_err(|e| err(e.to_string()))
}

/// Sets up the node's log. A second call (tests that start nodes in one
/// process) keeps the first setup.
pub fn init(opts: &LogOptions) -> Result<(), LogError> {
    use std::io::IsTerminal;
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(filter());
    let file = match &opts.file {
        Some(p) => Some(
            tracing_subscriber::fmt::layer()
                .with_writer(appender(p)?)
                .with_ansi(false)
                .with_filter(filter()),
        ),
        None => None,
    };
    let journald = match opts.journald {
        true => Some(
            tracing_journald::layer()
                .map_err(LogError::Journald)?
                .with_filter(filter()),
        ),
        false => None,
    };
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .with(journald)
        .try_init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_file_appender_writes_into_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/node.log");
        let mut a = appender(&path).unwrap();
        use std::io::Write;
        a.write_all(b"hello\n").unwrap();
        a.flush().unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path().join("logs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        assert!(files[0].starts_with("node.log."), "{files:?}");
        let e = appender(Path::new("/")).unwrap_err();
        assert!(e.to_string().contains("names no file"), "{e}");
    }
}
