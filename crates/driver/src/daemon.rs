//! Spawning and watching a backend process (vhostfs or virtiofsd) for tests and comparisons.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Driver, DriverConfig, Error, Result};

/// Default location of the reference daemon.
pub const VIRTIOFSD: &str = "/opt/virtiofsd/bin/virtiofsd";

/// How to start one kind of backend.
#[derive(Clone, Debug)]
pub struct DaemonSpec {
    /// Short label for tables ("vhostfs", "virtiofsd").
    pub label: String,
    /// Executable.
    pub bin: PathBuf,
    /// Arguments besides `--socket-path S --shared-dir D`.
    pub extra_args: Vec<String>,
}

impl DaemonSpec {
    /// Our daemon with the sandbox off (so /proc/PID measures the serving process).
    pub fn vhostfs(bin: impl Into<PathBuf>) -> Self {
        Self {
            label: "vhostfs".into(),
            bin: bin.into(),
            extra_args: vec!["--sandbox".into(), "none".into()],
        }
    }

    /// virtiofsd with the sandbox off and quiet logging.
    pub fn virtiofsd(bin: impl Into<PathBuf>) -> Self {
        Self {
            label: "virtiofsd".into(),
            bin: bin.into(),
            extra_args: vec![
                "--sandbox".into(),
                "none".into(),
                "--log-level".into(),
                "error".into(),
            ],
        }
    }
}

impl DaemonSpec {
    /// Our daemon with its default namespace sandbox.
    pub fn vhostfs_sandboxed(bin: impl Into<PathBuf>) -> Self {
        Self {
            label: "vhostfs-ns".into(),
            bin: bin.into(),
            extra_args: vec![],
        }
    }

    /// virtiofsd with its default namespace sandbox (the shared directory becomes the root
    /// of a private mount namespace) and quiet logging.
    pub fn virtiofsd_sandboxed(bin: impl Into<PathBuf>) -> Self {
        Self {
            label: "virtiofsd-ns".into(),
            bin: bin.into(),
            extra_args: vec!["--log-level".into(), "error".into()],
        }
    }
}

/// A running backend process serving `shared_dir` on `socket`.
pub struct Daemon {
    child: Child,
    /// The vhost-user socket it listens on.
    pub socket: PathBuf,
    /// The directory it serves.
    pub shared_dir: PathBuf,
    /// Where its stdout/stderr go.
    pub log: PathBuf,
    /// What was spawned.
    pub spec: DaemonSpec,
}

/// Why a daemon could not be started.
#[derive(Debug)]
pub enum SpawnError {
    /// The executable does not exist.
    Missing(PathBuf),
    /// It exited before creating its socket; its output is attached.
    Exited {
        /// Exit status text.
        status: String,
        /// Its combined stdout/stderr.
        output: String,
    },
    /// It did not create its socket in time.
    NoSocket(String),
    /// Spawning failed.
    Io(std::io::Error),
}

impl SpawnError {
    /// Whether the daemon said it is not implemented yet (a stub binary).
    pub fn is_not_implemented(&self) -> bool {
        match self {
            SpawnError::Exited { output, .. } => {
                output.to_ascii_lowercase().contains("not implemented")
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpawnError::Missing(p) => write!(f, "{} does not exist", p.display()),
            SpawnError::Exited { status, output } => {
                write!(f, "exited early ({status}): {}", output.trim())
            }
            SpawnError::NoSocket(s) => write!(f, "no socket: {s}"),
            SpawnError::Io(e) => write!(f, "spawn failed: {e}"),
        }
    }
}

impl std::error::Error for SpawnError {}

impl Daemon {
    /// Starts `spec` serving `shared_dir` on `socket` (removed first if it exists) and waits
    /// up to 10 s for the socket to appear.
    pub fn spawn(
        spec: &DaemonSpec,
        socket: &Path,
        shared_dir: &Path,
        log: &Path,
    ) -> std::result::Result<Self, SpawnError> {
        if !spec.bin.exists() {
            return Err(SpawnError::Missing(spec.bin.clone()));
        }
        let _ = fs::remove_file(socket);
        let out = fs::File::create(log).map_err(SpawnError::Io)?;
        let err = out.try_clone().map_err(SpawnError::Io)?;
        let child = Command::new(&spec.bin)
            .arg("--socket-path")
            .arg(socket)
            .arg("--shared-dir")
            .arg(shared_dir)
            .args(&spec.extra_args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(SpawnError::Io)?;
        let mut d = Daemon {
            child,
            socket: socket.to_path_buf(),
            shared_dir: shared_dir.to_path_buf(),
            log: log.to_path_buf(),
            spec: spec.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = d.child.try_wait() {
                return Err(SpawnError::Exited {
                    status: status.to_string(),
                    output: fs::read_to_string(log).unwrap_or_default(),
                });
            }
            if socket.exists() {
                return Ok(d);
            }
            if Instant::now() >= deadline {
                return Err(SpawnError::NoSocket(format!(
                    "{} did not create {} within 10 s",
                    spec.label,
                    socket.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Connects a driver to it and sends FUSE_INIT.
    pub fn connect(&self, cfg: DriverConfig) -> Result<Driver> {
        let mut d = Driver::connect(&self.socket, cfg)?;
        d.init()?;
        Ok(d)
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Exit status text if it has exited.
    pub fn exit_status(&mut self) -> Option<String> {
        self.child.try_wait().ok().flatten().map(|s| s.to_string())
    }

    /// The process and all its descendants (a sandbox may fork the serving process).
    pub fn process_tree(&self) -> Vec<u32> {
        process_tree(self.pid())
    }

    /// Open file descriptors summed over the process tree.
    pub fn fd_count(&self) -> Result<usize> {
        let mut n = 0;
        for pid in self.process_tree() {
            n += fs::read_dir(format!("/proc/{pid}/fd"))?.count();
        }
        Ok(n)
    }

    /// Resident memory (VmRSS, KiB) summed over the process tree.
    pub fn rss_kib(&self) -> Result<u64> {
        let mut n = 0;
        for pid in self.process_tree() {
            n += status_field_kib(pid, "VmRSS:")?;
        }
        Ok(n)
    }

    /// CPU time (user + system, in clock ticks) summed over the process tree.
    pub fn cpu_ticks(&self) -> Result<u64> {
        let mut n = 0;
        for pid in self.process_tree() {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
            let after = stat.rfind(')').map(|i| &stat[i + 1..]).unwrap_or("");
            let f: Vec<&str> = after.split_whitespace().collect();
            // After the command: state(0) ppid(1) ... utime(11) stime(12).
            for i in [11, 12] {
                n += f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            }
        }
        Ok(n)
    }

    /// Number of threads summed over the process tree.
    pub fn threads(&self) -> Result<u64> {
        let mut n = 0;
        for pid in self.process_tree() {
            let s = fs::read_to_string(format!("/proc/{pid}/status"))?;
            n += s
                .lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0);
        }
        Ok(n)
    }

    /// The daemon's log so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the process (if still running) and reaps it.
    pub fn kill(&mut self) {
        if self.is_alive() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        let _ = fs::remove_file(&self.socket);
    }
}

fn status_field_kib(pid: u32, field: &str) -> Result<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0))
}

/// `pid` followed by all its live descendants.
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) else {
                continue;
            };
            // Fields after the parenthesised command: state ppid ...
            let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                continue;
            };
            if let Some(ppid) = after
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse::<u32>().ok())
            {
                parent_of.push((p, ppid));
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let cur = tree[i];
        for &(p, pp) in &parent_of {
            if pp == cur && !tree.contains(&p) {
                tree.push(p);
            }
        }
        i += 1;
    }
    tree
}

/// A scratch directory under the system temp dir, removed on drop.
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates `$TMPDIR/vhostfs-driver-<pid>-<tag>-<n>`.
    pub fn new(tag: &str) -> Result<Self> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("vhostfs-driver-{}-{tag}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).map_err(Error::Io)?;
        Ok(Self { path })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}
