//! `--syslog`: log records sent to the local syslog daemon (`/dev/log`, RFC 3164 framing),
//! one datagram per record, with the priority taken from the record's level.
//!
//! The socket is connected at startup, before the sandbox hides `/dev/log`.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::Arc;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// Facility `daemon` (3), shifted as RFC 3164 wants.
const FACILITY_DAEMON: u8 = 3 << 3;

/// A [`MakeWriter`] that sends each record to syslog.
#[derive(Clone, Debug)]
pub struct Syslog {
    sock: Arc<UnixDatagram>,
    ident: Arc<str>,
}

impl Syslog {
    /// Connects to the syslog socket at `path` (normally `/dev/log`).
    pub fn connect(path: &Path) -> io::Result<Self> {
        let sock = UnixDatagram::unbound()?;
        sock.connect(path)?;
        Ok(Self {
            sock: Arc::new(sock),
            ident: format!("vhostfs[{}]", std::process::id()).into(),
        })
    }
}

/// Writes one record (the formatted line) as one datagram.
#[derive(Debug)]
pub struct SyslogWriter {
    sock: Arc<UnixDatagram>,
    ident: Arc<str>,
    priority: u8,
}

/// The syslog severity for a `tracing` level.
pub fn severity(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

impl io::Write for SyslogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let line = text.trim_end_matches('\n');
        let msg = format!("<{}>{}: {}", self.priority, self.ident, line);
        // Logging must never take the daemon down: a full or absent syslog drops the record.
        let _ = self.sock.send(msg.as_bytes());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Syslog {
    type Writer = SyslogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.writer(FACILITY_DAEMON | 6)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        self.writer(FACILITY_DAEMON | severity(meta.level()))
    }
}

impl Syslog {
    fn writer(&self, priority: u8) -> SyslogWriter {
        SyslogWriter {
            sock: Arc::clone(&self.sock),
            ident: Arc::clone(&self.ident),
            priority,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn records_are_framed_with_priority_and_ident() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let server = UnixDatagram::bind(&path).unwrap();
        let syslog = Syslog::connect(&path).unwrap();
        let mut w = syslog.writer(FACILITY_DAEMON | severity(&Level::WARN));
        w.write_all(b"something odd\n").unwrap();
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).unwrap();
        let got = std::str::from_utf8(&buf[..n]).unwrap();
        assert_eq!(
            got,
            format!("<28>vhostfs[{}]: something odd", std::process::id())
        );
        assert!(Syslog::connect(&dir.path().join("missing")).is_err());
    }
}
