//! A vessel's standard streams: where stdout and stderr go, where stdin
//! comes from, and how many bytes each has moved (kept in the state, so a
//! vessel's `Bytes` stdin continues where it was after a move).

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::wasi::DescriptorKind;

use super::abi::*;
use super::ctx::WasiCtx;
use super::mem::MAX_IO_BYTES;

/// Takes one whole write of a vessel's stdout or stderr.
pub type RecordFn = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// Where a vessel's standard output or error goes.
#[derive(Clone, Default)]
pub enum OutputSink {
    /// The node process's own stream.
    #[default]
    Inherit,
    /// An in-memory buffer (tests, fairness runs).
    Buffer(Arc<Mutex<Vec<u8>>>),
    /// A function that takes each write whole: a node's vessel log, which
    /// keeps stdout and stderr in one ordered record stream.
    Record(RecordFn),
}

/// Where a vessel's standard input comes from.
#[derive(Clone, Default)]
pub enum InputSource {
    #[default]
    Inherit,
    /// Fixed bytes; reads past the end see end-of-file.
    Bytes(Arc<Vec<u8>>),
    /// Always end-of-file.
    Empty,
}

/// The standard streams of one vessel.
#[derive(Clone, Default)]
pub struct Stdio {
    pub stdin: InputSource,
    pub stdout: OutputSink,
    pub stderr: OutputSink,
}

impl WasiCtx {
    pub(super) fn write_stdio(
        &mut self,
        which: &DescriptorKind,
        data: &[u8],
    ) -> Result<usize, Errno> {
        let (sink, counter) = match which {
            DescriptorKind::Stdout => (&self.stdio.stdout, &mut self.state.stdio.stdout_bytes),
            DescriptorKind::Stderr => (&self.stdio.stderr, &mut self.state.stdio.stderr_bytes),
            _ => return Err(Errno::BADF),
        };
        match sink {
            OutputSink::Inherit => {
                let res = if *which == DescriptorKind::Stdout {
                    let mut out = io::stdout().lock();
                    out.write_all(data).and_then(|_| out.flush())
                } else {
                    io::stderr().lock().write_all(data)
                };
                res.map_err(Errno::from)?;
            }
            OutputSink::Buffer(buf) => buf
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(data),
            OutputSink::Record(f) => f(data),
        }
        *counter += data.len() as u64;
        Ok(data.len())
    }

    pub(super) fn read_stdin(&mut self, len: usize) -> Result<Vec<u8>, Errno> {
        let len = len.min(MAX_IO_BYTES);
        let mut buf = vec![0u8; len];
        let n = match &self.stdio.stdin {
            InputSource::Inherit => io::stdin().lock().read(&mut buf).map_err(Errno::from)?,
            InputSource::Bytes(bytes) => {
                let pos = (self.state.stdio.stdin_bytes as usize).min(bytes.len());
                let n = (bytes.len() - pos).min(len);
                buf[..n].copy_from_slice(&bytes[pos..pos + n]);
                n
            }
            InputSource::Empty => 0,
        };
        buf.truncate(n);
        self.state.stdio.stdin_bytes += n as u64;
        Ok(buf)
    }
}

/// Whether the node's own stdin has bytes (or end-of-file) to read within
/// `timeout` (`None`: wait as long as it takes).
pub(super) fn stdin_ready(timeout: Option<Duration>) -> Result<bool, Errno> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let stdin = io::stdin();
    let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
    let ts = timeout.map(|t| Timespec {
        tv_sec: t.as_secs() as i64,
        tv_nsec: t.subsec_nanos() as i64,
    });
    let n = poll(&mut fds, ts.as_ref()).map_err(|e| from_host_errno(e.raw_os_error()))?;
    Ok(n > 0)
}
