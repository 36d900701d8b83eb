//! Command line: a drop-in for virtiofsd 1.x's options, plus a few of our own.
//!
//! [`Args`] is what clap parses; [`Config::from_args`] folds the legacy `-o` option string
//! ([`parse_o_options`]) and the deprecated aliases into one checked [`Config`], and collects
//! a warning for every option that is accepted but has no effect here. Options we cannot honour
//! safely are refused with a one-line [`CliError`]. Nothing is silently ignored.

// clap help texts use virtiofsd's "[default]" and "[deprecated]" markers, which rustdoc would
// read as links.
#![allow(rustdoc::broken_intra_doc_links)]

use std::fmt;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// A caching policy (`--cache`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CachePolicy {
    /// No caching of data or metadata in the guest.
    Never,
    /// Metadata may be cached, data is not.
    Metadata,
    /// Cache with timeouts; data revalidated on open.
    Auto,
    /// Cache everything; the guest owns the share.
    Always,
}

/// `never|auto|always` (`--posix-acl`, `--security-label`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Tristate {
    /// Off.
    Never,
    /// On when the guest asks for it.
    Auto,
    /// On; fail if the guest does not support it.
    Always,
}

/// `--sandbox`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SandboxArg {
    /// Namespaces and `pivot_root` into the share.
    Namespace,
    /// `chroot` into the share.
    Chroot,
    /// No sandbox.
    None,
}

/// `--seccomp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SeccompArg {
    /// No filter.
    None,
    /// Kill the process on a forbidden syscall.
    Kill,
    /// Log and allow.
    Log,
    /// Send SIGSYS.
    Trap,
}

/// `--inode-file-handles`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum InodeFileHandles {
    /// Always O_PATH file descriptors.
    Never,
    /// File handles where possible (`fallback` is an alias, as in virtiofsd).
    #[value(alias = "fallback")]
    Prefer,
    /// Always file handles.
    Mandatory,
}

/// `--log-level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// Informational messages (default).
    Info,
    /// Debugging output.
    Debug,
    /// Everything.
    Trace,
    /// Nothing.
    Off,
}

impl LogLevel {
    /// The `tracing` filter directive for this level.
    pub fn as_filter(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
            LogLevel::Off => "off",
        }
    }
}

/// `--migration-mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MigrationMode {
    /// Transfer paths.
    FindPaths,
    /// Transfer file handles.
    FileHandles,
}

/// `--migration-on-error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MigrationOnError {
    /// Abort the migration.
    Abort,
    /// Let the guest see errors.
    GuestError,
}

/// The raw command line, as clap parses it (virtiofsd 1.14 spelling).
#[derive(Debug, Parser)]
#[command(
    name = "vhostfs",
    version,
    about = "vhost-user virtio-fs daemon: shares a host directory with a virtual machine",
    override_usage = "vhostfs --shared-dir <SHARED_DIR> --socket-path <SOCKET_PATH> [OPTIONS]"
)]
pub struct Args {
    /// Shared directory path.
    #[arg(long)]
    pub shared_dir: Option<PathBuf>,
    /// The tag that the virtio device advertises (in its config space, when the frontend
    /// negotiates VHOST_USER_PROTOCOL_F_CONFIG).
    #[arg(long)]
    pub tag: Option<String>,
    /// vhost-user socket path [deprecated: use --socket-path].
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// vhost-user socket path.
    #[arg(long)]
    pub socket_path: Option<PathBuf>,
    /// Name of group for the vhost-user socket.
    #[arg(long)]
    pub socket_group: Option<String>,
    /// File descriptor for the listening (not yet connected) socket.
    #[arg(long)]
    pub fd: Option<i32>,
    /// Worker threads shared by the request queues; 0 serves each queue on its own thread.
    #[arg(long, default_value_t = 0)]
    pub thread_pool_size: usize,
    /// Enable support for extended attributes.
    #[arg(long)]
    pub xattr: bool,
    /// Disable support for extended attributes (the default; wins over --xattr given before it
    /// in -o).
    #[arg(long)]
    pub no_xattr: bool,
    /// Enable support for POSIX ACLs (implies --xattr).
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "always")]
    pub posix_acl: Option<Tristate>,
    /// Rules for translating extended attribute names between host and guest
    /// (e.g. :map::user.virtiofs.:).
    #[arg(long)]
    pub xattrmap: Option<String>,
    /// Sandbox mechanism (namespace, chroot, none) [default: namespace; none with
    /// --fuse-mountpoint].
    #[arg(long, value_enum)]
    pub sandbox: Option<SandboxArg>,
    /// Prevent the guest from making modifications to the file system.
    #[arg(long)]
    pub readonly: bool,
    /// Action on a syscall outside the allow-list (none, kill, log, trap) [default: kill; none
    /// with --fuse-mountpoint].
    #[arg(long, value_enum)]
    pub seccomp: Option<SeccompArg>,
    /// Tell the guest which directories are mount points [default].
    #[arg(long)]
    pub announce_submounts: bool,
    /// Do not tell the guest which directories are mount points.
    #[arg(long, conflicts_with = "announce_submounts")]
    pub no_announce_submounts: bool,
    /// When to use file handles instead of O_PATH fds for inodes (never, prefer, mandatory).
    #[arg(long, value_enum, require_equals = true)]
    pub inode_file_handles: Option<InodeFileHandles>,
    /// Caching policy (never, metadata, auto, always).
    #[arg(long, value_enum, default_value = "auto")]
    pub cache: CachePolicy,
    /// With --cache never|metadata: allow shared mmap of files.
    #[arg(long)]
    pub allow_mmap: bool,
    /// Disable READDIRPLUS.
    #[arg(long)]
    pub no_readdirplus: bool,
    /// Enable the guest's writeback cache.
    #[arg(long)]
    pub writeback: bool,
    /// Honour O_DIRECT from guest applications.
    #[arg(long)]
    pub allow_direct_io: bool,
    /// Print the vhost-user.json backend capabilities and exit.
    #[arg(long)]
    pub print_capabilities: bool,
    /// Modify the list of capabilities, e.g. --modcaps=+sys_admin:-chown.
    #[arg(long)]
    pub modcaps: Option<String>,
    /// Log level (error, warn, info, debug, trace, off).
    #[arg(long, value_enum)]
    pub log_level: Option<LogLevel>,
    /// Log to syslog [default: stderr].
    #[arg(long)]
    pub syslog: bool,
    /// Maximum number of file descriptors (0 leaves the limit unchanged) [default:
    /// min(1000000, /proc/sys/fs/nr_open)].
    #[arg(long)]
    pub rlimit_nofile: Option<u64>,
    /// Most files and directories the guest may hold open at once; beyond it an open fails
    /// with EMFILE and the host log warns [default: no limit but RLIMIT_NOFILE] (vhostfs only).
    #[arg(long, value_name = "N", value_parser = positive_count())]
    pub max_open_files: Option<usize>,
    /// Most inodes the guest may hold (looked up and not yet forgotten) at once; beyond it a
    /// lookup or create fails with ENFILE and the host log warns [default: no limit but
    /// RLIMIT_NOFILE, which also bounds inodes held as O_PATH fds] (vhostfs only).
    #[arg(long, value_name = "N", value_parser = positive_count())]
    pub max_inodes: Option<usize>,
    /// Options in the legacy format, e.g. -o source=/dir,cache=auto,xattr [deprecated].
    #[arg(short = 'o', value_name = "COMPAT_OPTIONS")]
    pub compat_options: Vec<String>,
    /// Set log level to debug [deprecated].
    #[arg(short = 'd')]
    pub debug: bool,
    /// Compatibility flag without effect [deprecated].
    #[arg(short = 'f')]
    pub foreground: bool,
    /// Disable KILLPRIV V2 [default].
    #[arg(long)]
    pub no_killpriv_v2: bool,
    /// Enable KILLPRIV V2.
    #[arg(long, conflicts_with = "no_killpriv_v2")]
    pub killpriv_v2: bool,
    /// Security label support (implies --xattr).
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "always")]
    pub security_label: Option<Tristate>,
    /// Map UIDs, :namespace_uid:host_uid:count: (applied as a translation: namespace uid =
    /// guest uid).
    #[arg(long)]
    pub uid_map: Vec<String>,
    /// Map GIDs, :namespace_gid:host_gid:count: (applied as a translation).
    #[arg(long)]
    pub gid_map: Vec<String>,
    /// Translate UIDs between guest and host, TYPE:SOURCE_BASE:TARGET_BASE:COUNT (TYPE: guest,
    /// host, map, squash-guest, squash-host, forbid-guest).
    #[arg(long)]
    pub translate_uid: Vec<String>,
    /// Translate GIDs between guest and host (see --translate-uid).
    #[arg(long)]
    pub translate_gid: Vec<String>,
    /// Keep O_NOATIME from the guest instead of dropping it [no effect here].
    #[arg(long)]
    pub preserve_noatime: bool,
    /// Migration representation (find-paths, file-handles); migration is not supported.
    #[arg(long, value_enum)]
    pub migration_mode: Option<MigrationMode>,
    /// Reaction to migration errors (abort, guest-error); migration is not supported.
    #[arg(long, value_enum)]
    pub migration_on_error: Option<MigrationOnError>,
    /// Verify migrated inodes by file handle; migration is not supported.
    #[arg(long)]
    pub migration_verify_handles: bool,
    /// Re-check migrated paths at switch-over; migration is not supported.
    #[arg(long)]
    pub migration_confirm_paths: bool,
    /// Most request queues to offer the frontend (QEMU's num-request-queues must not exceed
    /// it) [default: 16].
    #[arg(long)]
    pub num_request_queues: Option<usize>,
    /// Serve the share over /dev/fuse, mounted at this host directory, instead of vhost-user
    /// (for testing without a VM).
    #[arg(long, conflicts_with_all = ["socket", "socket_path", "fd"])]
    pub fuse_mountpoint: Option<PathBuf>,
}

/// Request queues offered when `--num-request-queues` is not given. Offering more than the
/// frontend uses costs nothing; offering fewer makes a frontend that asks for more fail.
pub const DEFAULT_REQUEST_QUEUES: usize = 16;

/// An error in the command line: one line, printed as `vhostfs: error: ...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CliError(pub String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CliError {}

/// Parser for a count of 1 or more (`--max-open-files`, `--max-inodes`).
fn positive_count() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
}

fn err<T>(msg: impl Into<String>) -> Result<T, CliError> {
    Err(CliError(msg.into()))
}

/// One item of a legacy `-o` option string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompatOption {
    /// `source=DIR`.
    Source(PathBuf),
    /// `cache=none|never|metadata|auto|always` (`none` is the legacy name of `never`).
    Cache(CachePolicy),
    /// `xattr` / `no_xattr`.
    Xattr(bool),
    /// `posix_acl` / `no_posix_acl`.
    PosixAcl(bool),
    /// `security_label` / `no_security_label`.
    SecurityLabel(bool),
    /// `writeback` / `no_writeback`.
    Writeback(bool),
    /// `readdirplus` / `no_readdirplus`.
    Readdirplus(bool),
    /// `allow_direct_io` / `no_allow_direct_io`.
    AllowDirectIo(bool),
    /// `announce_submounts` / `no_announce_submounts`.
    AnnounceSubmounts(bool),
    /// `killpriv_v2` / `no_killpriv_v2`.
    KillprivV2(bool),
    /// `readonly`.
    Readonly,
    /// `xattrmap=RULES`.
    Xattrmap(String),
    /// `modcaps=CAPS`.
    Modcaps(String),
    /// `sandbox=namespace|chroot|none`.
    Sandbox(SandboxArg),
    /// `log_level=error|err|warn|info|debug|trace|off`, or `debug`.
    LogLevel(LogLevel),
    /// `flock`/`no_flock`/`posix_lock`/`no_posix_lock`: locks are always served here.
    Locks(String),
    /// Legacy options that have no effect here (`norace`, `timeout=N`).
    NoEffect(String),
}

/// Splits a legacy option string on unescaped commas (`\,` is a literal comma, `\\` a
/// backslash) and parses each item. Unknown options and bad values are errors.
pub fn parse_o_options(s: &str) -> Result<Vec<CompatOption>, CliError> {
    let mut out = Vec::new();
    for item in split_escaped(s) {
        if item.is_empty() {
            continue;
        }
        out.push(parse_o_item(&item)?);
    }
    Ok(out)
}

fn split_escaped(s: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n) => cur.push(n),
                None => cur.push('\\'),
            },
            ',' => items.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    items.push(cur);
    items
}

fn parse_o_item(item: &str) -> Result<CompatOption, CliError> {
    let (key, value) = match item.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (item, None),
    };
    let flag = |opt: CompatOption| -> Result<CompatOption, CliError> {
        match value {
            None => Ok(opt),
            Some(_) => err(format!("-o {key} takes no value")),
        }
    };
    let need = || -> Result<&str, CliError> {
        match value {
            Some(v) if !v.is_empty() => Ok(v),
            _ => err(format!("-o {key} needs a value ({key}=...)")),
        }
    };
    match key {
        "source" => Ok(CompatOption::Source(PathBuf::from(need()?))),
        "cache" => Ok(CompatOption::Cache(match need()? {
            "none" | "never" => CachePolicy::Never,
            "metadata" => CachePolicy::Metadata,
            "auto" => CachePolicy::Auto,
            "always" => CachePolicy::Always,
            v => {
                return err(format!(
                    "-o cache={v}: expected none, metadata, auto or always"
                ))
            }
        })),
        "xattr" => flag(CompatOption::Xattr(true)),
        "no_xattr" => flag(CompatOption::Xattr(false)),
        "posix_acl" => flag(CompatOption::PosixAcl(true)),
        "no_posix_acl" => flag(CompatOption::PosixAcl(false)),
        "security_label" => flag(CompatOption::SecurityLabel(true)),
        "no_security_label" => flag(CompatOption::SecurityLabel(false)),
        "writeback" => flag(CompatOption::Writeback(true)),
        "no_writeback" => flag(CompatOption::Writeback(false)),
        "readdirplus" => flag(CompatOption::Readdirplus(true)),
        "no_readdirplus" => flag(CompatOption::Readdirplus(false)),
        "allow_direct_io" => flag(CompatOption::AllowDirectIo(true)),
        "no_allow_direct_io" => flag(CompatOption::AllowDirectIo(false)),
        "announce_submounts" => flag(CompatOption::AnnounceSubmounts(true)),
        "no_announce_submounts" => flag(CompatOption::AnnounceSubmounts(false)),
        "killpriv_v2" => flag(CompatOption::KillprivV2(true)),
        "no_killpriv_v2" => flag(CompatOption::KillprivV2(false)),
        "readonly" => flag(CompatOption::Readonly),
        "xattrmap" => Ok(CompatOption::Xattrmap(need()?.to_string())),
        "modcaps" => Ok(CompatOption::Modcaps(need()?.to_string())),
        "sandbox" => Ok(CompatOption::Sandbox(match need()? {
            "namespace" => SandboxArg::Namespace,
            "chroot" => SandboxArg::Chroot,
            "none" => SandboxArg::None,
            v => {
                return err(format!(
                    "-o sandbox={v}: expected namespace, chroot or none"
                ))
            }
        })),
        "log_level" => Ok(CompatOption::LogLevel(match need()? {
            "err" | "error" => LogLevel::Error,
            "warn" | "warning" => LogLevel::Warn,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            "trace" => LogLevel::Trace,
            "off" => LogLevel::Off,
            v => {
                return err(format!(
                    "-o log_level={v}: expected err, warn, info or debug"
                ))
            }
        })),
        "debug" => flag(CompatOption::LogLevel(LogLevel::Debug)),
        "flock" | "no_flock" | "posix_lock" | "no_posix_lock" => {
            flag(CompatOption::Locks(key.to_string()))
        }
        "norace" => flag(CompatOption::NoEffect(key.to_string())),
        "timeout" => {
            let v = need()?;
            if v.parse::<f64>().map(|t| t.is_finite() && t >= 0.0) != Ok(true) {
                return err(format!("-o timeout={v}: expected a number of seconds"));
            }
            Ok(CompatOption::NoEffect(item.to_string()))
        }
        _ => err(format!("unknown -o option '{key}'")),
    }
}

/// Where requests come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// Create a vhost-user socket at this path.
    SocketPath(PathBuf),
    /// Use this inherited listening socket.
    Fd(i32),
    /// Mount on the host through /dev/fuse at this directory.
    FuseMountpoint(PathBuf),
}

/// The checked configuration the daemon runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The shared directory as given (checked to exist at startup, not here).
    pub shared_dir: PathBuf,
    /// Transport.
    pub listen: Listen,
    /// Group to give the socket to.
    pub socket_group: Option<String>,
    /// Tag for the device config space.
    pub tag: Option<String>,
    /// Worker threads shared by queues.
    pub thread_pool_size: usize,
    /// Most request queues offered.
    pub num_request_queues: usize,
    /// Cache policy.
    pub cache: CachePolicy,
    /// Extended attributes on.
    pub xattr: bool,
    /// POSIX ACLs.
    pub posix_acl: Tristate,
    /// Security labels.
    pub security_label: Tristate,
    /// xattr name mapping rules.
    pub xattrmap: Option<String>,
    /// Read-only share.
    pub readonly: bool,
    /// Sandbox.
    pub sandbox: SandboxArg,
    /// Seccomp action.
    pub seccomp: SeccompArg,
    /// Inode references; `None` leaves the file system's default.
    pub inode_file_handles: Option<InodeFileHandles>,
    /// Announce submounts.
    pub announce_submounts: bool,
    /// Writeback cache.
    pub writeback: bool,
    /// Honour O_DIRECT.
    pub allow_direct_io: bool,
    /// Allow shared mmap with cache never/metadata.
    pub allow_mmap: bool,
    /// READDIRPLUS on.
    pub readdirplus: bool,
    /// KILLPRIV_V2 on.
    pub killpriv_v2: bool,
    /// Keep O_NOATIME.
    pub preserve_noatime: bool,
    /// `--translate-uid` rules.
    pub translate_uid: Vec<String>,
    /// `--translate-gid` rules.
    pub translate_gid: Vec<String>,
    /// `--uid-map` entries (`:namespace_uid:host_uid:count:`), applied as translations.
    pub uid_map: Vec<String>,
    /// `--gid-map` entries, applied as translations.
    pub gid_map: Vec<String>,
    /// RLIMIT_NOFILE to set; `None` for the default, `Some(0)` to leave it alone.
    pub rlimit_nofile: Option<u64>,
    /// Cap on open guest handles (`--max-open-files`).
    pub max_open_files: Option<usize>,
    /// Cap on inodes held for the guest (`--max-inodes`).
    pub max_inodes: Option<usize>,
    /// `--modcaps` edit of the capabilities the daemon keeps.
    pub modcaps: Option<String>,
    /// Log level.
    pub log_level: LogLevel,
    /// Log to syslog.
    pub syslog: bool,
    /// Accepted options without effect, to log as warnings once logging is up.
    pub warnings: Vec<String>,
}

/// What `--print-capabilities` prints (the vhost-user.json backend description libvirt reads).
///
/// `separate-options`: options are given as separate `--flag` arguments; the two
/// `*-negotiation-mode` features: `--posix-acl` and `--security-label` take `=auto`.
/// `migrate-precopy` is not listed: we do not support migration.
pub const CAPABILITIES_JSON: &str = r#"{
  "type": "fs",
  "features": [
    "posix-acl-negotiation-mode",
    "security-label-negotiation-mode",
    "separate-options"
  ]
}"#;

impl Config {
    /// Checks `args` and folds the legacy forms into one configuration.
    pub fn from_args(args: &Args) -> Result<Self, CliError> {
        let mut warnings = Vec::new();
        let mut shared_dir = args.shared_dir.clone();
        let mut cache = args.cache;
        let mut xattr = args.xattr && !args.no_xattr;
        let mut posix_acl = args.posix_acl.unwrap_or(Tristate::Never);
        let mut security_label = args.security_label.unwrap_or(Tristate::Never);
        let mut writeback = args.writeback;
        let mut readdirplus = !args.no_readdirplus;
        let mut allow_direct_io = args.allow_direct_io;
        let mut announce_submounts = !args.no_announce_submounts;
        let mut killpriv_v2 = args.killpriv_v2;
        let mut readonly = args.readonly;
        let mut xattrmap = args.xattrmap.clone();
        let mut modcaps = args.modcaps.clone();
        let mut sandbox = args.sandbox;
        let mut log_level = args.log_level;
        if args.debug {
            log_level.get_or_insert(LogLevel::Debug);
        }

        for o in &args.compat_options {
            for opt in parse_o_options(o)? {
                match opt {
                    CompatOption::Source(p) => {
                        if shared_dir.as_ref().is_some_and(|s| *s != p) {
                            return err("-o source= and --shared-dir name different directories");
                        }
                        shared_dir = Some(p);
                    }
                    CompatOption::Cache(c) => cache = c,
                    CompatOption::Xattr(b) => xattr = b,
                    CompatOption::PosixAcl(b) => {
                        posix_acl = if b { Tristate::Always } else { Tristate::Never }
                    }
                    CompatOption::SecurityLabel(b) => {
                        security_label = if b { Tristate::Always } else { Tristate::Never }
                    }
                    CompatOption::Writeback(b) => writeback = b,
                    CompatOption::Readdirplus(b) => readdirplus = b,
                    CompatOption::AllowDirectIo(b) => allow_direct_io = b,
                    CompatOption::AnnounceSubmounts(b) => announce_submounts = b,
                    CompatOption::KillprivV2(b) => killpriv_v2 = b,
                    CompatOption::Readonly => readonly = true,
                    CompatOption::Xattrmap(m) => xattrmap = Some(m),
                    CompatOption::Modcaps(m) => modcaps = Some(m),
                    CompatOption::Sandbox(s) => sandbox = Some(s),
                    CompatOption::LogLevel(l) => log_level = Some(l),
                    CompatOption::Locks(k) => warnings.push(format!(
                        "-o {k} has no effect: POSIX locks and flock are always served"
                    )),
                    CompatOption::NoEffect(k) => warnings.push(format!("-o {k} has no effect")),
                }
            }
        }

        let Some(shared_dir) = shared_dir else {
            return err("missing --shared-dir (or -o source=DIR)");
        };
        if shared_dir.as_os_str().is_empty() {
            return err("--shared-dir is empty");
        }

        let socket_path = match (&args.socket_path, &args.socket) {
            (Some(a), Some(b)) if a != b => {
                return err("--socket and --socket-path name different paths")
            }
            (Some(a), _) => Some(a.clone()),
            (None, Some(b)) => {
                warnings.push("--socket is deprecated; use --socket-path".into());
                Some(b.clone())
            }
            (None, None) => None,
        };
        let listen = match (&args.fuse_mountpoint, socket_path, args.fd) {
            (Some(m), None, None) => Listen::FuseMountpoint(m.clone()),
            (Some(_), _, _) => return err("--fuse-mountpoint cannot be combined with a socket"),
            (None, Some(_), Some(_)) => {
                return err("--socket-path and --fd are mutually exclusive")
            }
            (None, Some(p), None) => {
                if p.as_os_str().is_empty() {
                    return err("--socket-path is empty");
                }
                Listen::SocketPath(p)
            }
            (None, None, Some(fd)) => {
                if fd < 0 {
                    return err(format!("--fd {fd}: not a file descriptor"));
                }
                Listen::Fd(fd)
            }
            (None, None, None) => {
                return err("missing --socket-path (or --fd, or --fuse-mountpoint)")
            }
        };
        let fuse = matches!(listen, Listen::FuseMountpoint(_));
        if args.socket_group.is_some() && !matches!(listen, Listen::SocketPath(_)) {
            return err("--socket-group needs --socket-path");
        }

        let sandbox = match (sandbox, fuse) {
            (Some(SandboxArg::None), _) | (None, true) => SandboxArg::None,
            (Some(s), true) => {
                return err(format!(
                    "--fuse-mountpoint works only with --sandbox none (got {s:?}): the host mount \
                     must stay reachable for unmounting"
                ))
            }
            (Some(s), false) => s,
            (None, false) => SandboxArg::Namespace,
        };
        let seccomp = args.seccomp.unwrap_or(if fuse {
            SeccompArg::None
        } else {
            SeccompArg::Kill
        });

        if posix_acl != Tristate::Never || security_label != Tristate::Never {
            xattr = true;
        }
        let translating = !args.translate_uid.is_empty()
            || !args.translate_gid.is_empty()
            || !args.uid_map.is_empty()
            || !args.gid_map.is_empty();
        if posix_acl != Tristate::Never && translating {
            return err(
                "--translate-uid/--translate-gid/--uid-map/--gid-map cannot be used with \
                 --posix-acl",
            );
        }
        if !args.uid_map.is_empty() || !args.gid_map.is_empty() {
            warnings.push(
                "--uid-map/--gid-map are applied as id translations by the daemon (namespace id \
                 = guest id), not as a user namespace"
                    .into(),
            );
        }
        if args.allow_mmap && !matches!(cache, CachePolicy::Never | CachePolicy::Metadata) {
            warnings.push("--allow-mmap has an effect only with --cache never|metadata".into());
        }
        if args.preserve_noatime {
            warnings.push("--preserve-noatime has no effect here".into());
        }
        if args.foreground {
            warnings.push("-f has no effect (we always run in the foreground)".into());
        }
        if args.migration_mode.is_some()
            || args.migration_on_error.is_some()
            || args.migration_verify_handles
            || args.migration_confirm_paths
        {
            warnings.push(
                "--migration-* options have no effect: migration is not supported (the \
                 frontend is not offered device-state migration)"
                    .into(),
            );
        }
        if let Some(m) = &xattrmap {
            if !xattr {
                warnings.push("--xattrmap has no effect without --xattr".into());
            }
            if m.is_empty() {
                return err("--xattrmap is empty");
            }
        }
        let num_request_queues = match args.num_request_queues {
            Some(0) => return err("--num-request-queues must be at least 1"),
            Some(n) if n > 1024 => return err("--num-request-queues must be at most 1024"),
            Some(n) => n,
            None => DEFAULT_REQUEST_QUEUES,
        };
        if args.thread_pool_size > 1024 {
            return err("--thread-pool-size must be at most 1024");
        }
        if let Some(tag) = &args.tag {
            // The config space holds 36 bytes; the tag is not NUL-terminated when it is full.
            if tag.is_empty() || tag.len() > 36 {
                return err("--tag must be 1 to 36 bytes long");
            }
        }

        Ok(Config {
            shared_dir,
            listen,
            socket_group: args.socket_group.clone(),
            tag: args.tag.clone(),
            thread_pool_size: args.thread_pool_size,
            num_request_queues,
            cache,
            xattr,
            posix_acl,
            security_label,
            xattrmap,
            readonly,
            sandbox,
            seccomp,
            inode_file_handles: args.inode_file_handles,
            announce_submounts,
            writeback,
            allow_direct_io,
            allow_mmap: args.allow_mmap,
            readdirplus,
            killpriv_v2,
            preserve_noatime: args.preserve_noatime,
            translate_uid: args.translate_uid.clone(),
            translate_gid: args.translate_gid.clone(),
            uid_map: args.uid_map.clone(),
            gid_map: args.gid_map.clone(),
            rlimit_nofile: args.rlimit_nofile,
            max_open_files: args.max_open_files,
            max_inodes: args.max_inodes,
            modcaps,
            log_level: log_level.unwrap_or(LogLevel::Info),
            syslog: args.syslog,
            warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("vhostfs").chain(v.iter().copied())).unwrap()
    }

    fn config(v: &[&str]) -> Result<Config, CliError> {
        Config::from_args(&args(v))
    }

    #[test]
    fn minimal_virtiofsd_command_line() {
        let c = config(&["--shared-dir", "/srv", "--socket-path", "/tmp/s"]).unwrap();
        assert_eq!(c.shared_dir, PathBuf::from("/srv"));
        assert_eq!(c.listen, Listen::SocketPath("/tmp/s".into()));
        assert_eq!(c.sandbox, SandboxArg::Namespace);
        assert_eq!(c.seccomp, SeccompArg::Kill);
        assert_eq!(c.cache, CachePolicy::Auto);
        assert!(!c.xattr);
        assert!(c.announce_submounts);
        assert!(c.readdirplus);
        assert!(!c.killpriv_v2);
        assert_eq!(c.inode_file_handles, None);
        assert_eq!(c.log_level, LogLevel::Info);
        assert_eq!(c.num_request_queues, DEFAULT_REQUEST_QUEUES);
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn libvirt_style_flags() {
        let c = config(&[
            "--fd=3",
            "--shared-dir=/srv",
            "--xattr",
            "--cache=always",
            "--sandbox=chroot",
            "--posix-acl",
            "--security-label=auto",
            "--thread-pool-size=16",
            "--inode-file-handles=mandatory",
            "--announce-submounts",
            "--killpriv-v2",
            "--log-level=debug",
        ])
        .unwrap();
        assert_eq!(c.listen, Listen::Fd(3));
        assert_eq!(c.cache, CachePolicy::Always);
        assert_eq!(c.sandbox, SandboxArg::Chroot);
        assert_eq!(c.posix_acl, Tristate::Always);
        assert_eq!(c.security_label, Tristate::Auto);
        assert_eq!(c.thread_pool_size, 16);
        assert_eq!(c.inode_file_handles, Some(InodeFileHandles::Mandatory));
        assert!(c.killpriv_v2);
        assert_eq!(c.log_level, LogLevel::Debug);
    }

    #[test]
    fn acl_and_label_imply_xattr() {
        assert!(
            config(&["--shared-dir=/s", "--fd=3", "--posix-acl=auto"])
                .unwrap()
                .xattr
        );
        assert!(
            config(&["--shared-dir=/s", "--fd=3", "--security-label"])
                .unwrap()
                .xattr
        );
        assert!(
            !config(&["--shared-dir=/s", "--fd=3", "--posix-acl=never"])
                .unwrap()
                .xattr
        );
    }

    #[test]
    fn legacy_option_string() {
        let c = config(&[
            "--socket-path=/tmp/s",
            "-o",
            "source=/srv,cache=none,xattr,no_writeback,announce_submounts,log_level=warn",
            "-o",
            "sandbox=none",
            "-f",
        ])
        .unwrap();
        assert_eq!(c.shared_dir, PathBuf::from("/srv"));
        assert_eq!(c.cache, CachePolicy::Never);
        assert!(c.xattr);
        assert!(!c.writeback);
        assert_eq!(c.sandbox, SandboxArg::None);
        assert_eq!(c.log_level, LogLevel::Warn);
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    }

    #[test]
    fn later_o_options_win() {
        let c = config(&["--fd=3", "-o", "source=/s,xattr,no_xattr"]).unwrap();
        assert!(!c.xattr);
    }

    #[test]
    fn o_option_parser() {
        assert_eq!(
            parse_o_options("source=/a\\,b,xattrmap=:map::user.x\\,y:,,flock").unwrap(),
            vec![
                CompatOption::Source("/a,b".into()),
                CompatOption::Xattrmap(":map::user.x,y:".into()),
                CompatOption::Locks("flock".into()),
            ]
        );
        assert_eq!(parse_o_options("").unwrap(), vec![]);
        assert_eq!(
            parse_o_options("timeout=1.5,norace").unwrap(),
            vec![
                CompatOption::NoEffect("timeout=1.5".into()),
                CompatOption::NoEffect("norace".into())
            ]
        );
        for bad in [
            "frobnicate",
            "source",
            "source=",
            "cache=sometimes",
            "xattr=1",
            "sandbox=jail",
            "log_level=loud",
            "timeout=soon",
            "timeout=-1",
            "timeout=NaN",
        ] {
            let e = parse_o_options(bad).unwrap_err();
            assert!(!e.0.contains('\n'), "{e}");
        }
        assert_eq!(
            parse_o_options("xattr,bogus=1").unwrap_err().0,
            "unknown -o option 'bogus'"
        );
        // A trailing backslash is kept literally.
        assert_eq!(
            parse_o_options("source=/x\\").unwrap(),
            vec![CompatOption::Source("/x\\".into())]
        );
    }

    #[test]
    fn missing_and_conflicting_required_options() {
        assert!(config(&["--socket-path=/s"])
            .unwrap_err()
            .0
            .contains("--shared-dir"));
        assert!(config(&["--shared-dir=/s"])
            .unwrap_err()
            .0
            .contains("--socket-path"));
        assert!(config(&["--shared-dir=/s", "--socket-path=/a", "--fd=3"]).is_err());
        assert!(config(&["--shared-dir=/s", "--socket-path=/a", "--socket=/b"]).is_err());
        assert!(config(&["--shared-dir=/a", "-o", "source=/b", "--fd=3"]).is_err());
        assert!(config(&["--shared-dir=/s", "--fd=-1"]).is_err());
        assert!(config(&["--shared-dir=/s", "--fd=3", "--socket-group=kvm"]).is_err());
        let old = config(&["--shared-dir=/s", "--socket=/a"]).unwrap();
        assert_eq!(old.listen, Listen::SocketPath("/a".into()));
        assert_eq!(old.warnings.len(), 1);
    }

    #[test]
    fn fuse_mountpoint_mode() {
        let c = config(&["--shared-dir=/s", "--fuse-mountpoint=/mnt"]).unwrap();
        assert_eq!(c.listen, Listen::FuseMountpoint("/mnt".into()));
        assert_eq!(c.sandbox, SandboxArg::None);
        assert_eq!(c.seccomp, SeccompArg::None);
        assert!(config(&[
            "--shared-dir=/s",
            "--fuse-mountpoint=/m",
            "--sandbox=chroot"
        ])
        .is_err());
        assert!(Args::try_parse_from([
            "vhostfs",
            "--shared-dir=/s",
            "--fuse-mountpoint=/m",
            "--socket-path=/x"
        ])
        .is_err());
    }

    #[test]
    fn unsupported_options_are_refused_or_warned() {
        for bad in [
            vec!["--posix-acl", "--uid-map=:0:1000:1:"],
            vec!["--num-request-queues=0"],
            vec!["--tag="],
            vec!["--posix-acl", "--translate-uid=map:0:1000:1"],
        ] {
            let mut v = vec!["--shared-dir=/s", "--fd=3"];
            v.extend(bad.iter().copied());
            let e = config(&v).unwrap_err();
            assert!(!e.0.contains('\n'), "{e}");
        }
        let c = config(&[
            "--shared-dir=/s",
            "--fd=3",
            "--migration-mode=file-handles",
            "--migration-on-error=guest-error",
            "--allow-mmap",
            "--preserve-noatime",
            "-o",
            "posix_lock,norace,no_readdirplus",
        ])
        .unwrap();
        // migration, --allow-mmap without never|metadata, --preserve-noatime, posix_lock, norace
        assert_eq!(c.warnings.len(), 5, "{:?}", c.warnings);
        assert!(!c.readdirplus);
    }

    #[test]
    fn bad_values_are_clap_errors() {
        for bad in [
            &["--cache=sometimes"][..],
            &["--sandbox=jail"],
            &["--seccomp=maybe"],
            &["--inode-file-handles=often"],
            &["--bogus-flag"],
            &["--fd=abc"],
        ] {
            let v: Vec<&str> = ["vhostfs", "--shared-dir=/s"]
                .iter()
                .chain(bad.iter())
                .copied()
                .collect();
            assert!(Args::try_parse_from(v).is_err(), "{bad:?}");
        }
        // `fallback` is virtiofsd's deprecated alias of `prefer`.
        let c = config(&["--shared-dir=/s", "--fd=3", "--inode-file-handles=fallback"]).unwrap();
        assert_eq!(c.inode_file_handles, Some(InodeFileHandles::Prefer));
    }

    #[test]
    fn capabilities_json_is_valid_shape() {
        assert!(CAPABILITIES_JSON.contains("\"type\": \"fs\""));
        assert!(CAPABILITIES_JSON.contains("separate-options"));
        assert!(!CAPABILITIES_JSON.contains("migrate-precopy"));
    }
}
