//! Wiring: command line → file system → sandbox → transport, plus signals and exit codes.
//!
//! Lifecycle (vhost-user): create the socket (refusing a live one, replacing a stale one),
//! give it to `--socket-group`, enter the sandbox, open the shared directory, install the
//! seccomp filter, serve one frontend until it disconnects, remove the socket, exit 0.
//! SIGINT/SIGTERM remove the socket we created and exit 0.
//!
//! Lifecycle (`--fuse-mountpoint`): open the shared directory, mount it on the host through
//! `/dev/fuse`, serve until unmounted; SIGINT/SIGTERM unmount and exit 0.
//!
//! Errors before serving (bad shared directory, socket in use, bad option) print one line,
//! `vhostfs: error: ...`, and exit non-zero (2 for command-line errors, 1 otherwise).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _};
use clap::Parser;
use nix::sys::signal::{SigSet, Signal};
use vhostfs_server::{Server, ServerOptions};

use crate::cli::{self, Args, Config, Listen};

/// Exit code for command-line errors.
pub const EXIT_USAGE: i32 = 2;
/// Exit code for runtime errors.
pub const EXIT_FAILURE: i32 = 1;

/// Runs the daemon with the process's arguments; returns the exit code.
pub fn main() -> i32 {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            use clap::error::ErrorKind;
            return match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let _ = e.print();
                    0
                }
                _ => {
                    eprintln!("vhostfs: error: {}", clap_error_line(&e));
                    EXIT_USAGE
                }
            };
        }
    };
    if args.print_capabilities {
        println!("{}", cli::CAPABILITIES_JSON);
        return 0;
    }
    let config = match Config::from_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vhostfs: error: {e}");
            return EXIT_USAGE;
        }
    };
    init_logging(config.log_level, config.syslog);
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    match run(&config) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("vhostfs: error: {e:#}");
            EXIT_FAILURE
        }
    }
}

/// The first line of a clap error, without clap's `error: ` prefix.
fn clap_error_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or("invalid arguments");
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

fn init_logging(level: cli::LogLevel, syslog: bool) {
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("VHOSTFS_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level.as_filter()))
    };
    if syslog {
        match crate::syslog::Syslog::connect(Path::new("/dev/log")) {
            Ok(writer) => {
                let _ = tracing_subscriber::fmt()
                    .with_env_filter(filter())
                    .with_writer(writer)
                    .with_ansi(false)
                    .without_time()
                    .with_level(false)
                    .try_init();
                return;
            }
            Err(e) => {
                eprintln!("vhostfs: warning: --syslog: cannot connect to /dev/log ({e}); logging to stderr");
            }
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Runs the daemon with a checked configuration until the frontend goes away, the file system
/// is unmounted, or a SIGINT/SIGTERM arrives.
pub fn run(config: &Config) -> anyhow::Result<()> {
    let shared = std::fs::canonicalize(&config.shared_dir)
        .with_context(|| format!("shared directory {}", config.shared_dir.display()))?;
    if !shared.is_dir() {
        bail!("shared directory {}: not a directory", shared.display());
    }
    let caps = capabilities(config)?;
    set_rlimit_nofile(config.rlimit_nofile)?;

    // Block the termination signals before any thread exists, so that every thread inherits
    // the mask and only the signal thread (sigwait) receives them.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGHUP);
    signals.thread_block().context("blocking signals")?;

    match &config.listen {
        Listen::FuseMountpoint(mnt) => run_fuse(config, &shared, mnt, signals, &caps),
        Listen::SocketPath(_) | Listen::Fd(_) => run_vhost_user(config, &shared, signals, &caps),
    }
}

fn run_fuse(
    config: &Config,
    shared: &Path,
    mnt: &Path,
    signals: SigSet,
    caps: &[vhostfs_sandbox::Cap],
) -> anyhow::Result<()> {
    let fs = build_fs(config, shared)?;
    let server = Arc::new(Server::new(fs, server_options(config)));
    // `--readonly` is enforced by the file system (EROFS), as a guest sees it; the host mount
    // itself stays read-write so that the tests exercise exactly that.
    let opts = vhostfs_fuse_dev::MountOptions::default();
    let session =
        vhostfs_fuse_dev::Session::mount(mnt, &opts, server.options().max_write as usize)?;
    // The sandbox is `none` here (checked by the command line): the host mount must stay
    // reachable so that we can unmount it (which needs CAP_SYS_ADMIN).
    let mut caps = caps.to_vec();
    caps.push(vhostfs_sandbox::Cap::SYS_ADMIN);
    vhostfs_sandbox::drop_capabilities(&caps).context("dropping capabilities")?;
    vhostfs_sandbox::install_seccomp(seccomp_action(config.seccomp))
        .context("installing the seccomp filter")?;

    let handle = session.handle();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Ok(sig) = signals.wait() {
                tracing::info!("received {sig}: unmounting");
                if let Err(e) = handle.shutdown() {
                    tracing::warn!("{e}");
                }
            }
        })
        .context("spawning the signal thread")?;

    let workers = match config.thread_pool_size {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 16)),
        n => n,
    };
    tracing::info!(
        shared = %shared.display(),
        mountpoint = %session.mountpoint().display(),
        workers,
        "serving over /dev/fuse"
    );
    let res = session.serve(server, workers);
    drop(session);
    res.context("serving /dev/fuse")?;
    tracing::info!("unmounted; exiting");
    Ok(())
}

fn run_vhost_user(
    config: &Config,
    shared: &Path,
    signals: SigSet,
    caps: &[vhostfs_sandbox::Cap],
) -> anyhow::Result<()> {
    let (listener, cleanup) = match &config.listen {
        Listen::SocketPath(p) => {
            let (l, c) = crate::socket::bind(p)?;
            if let Some(group) = &config.socket_group {
                if let Err(e) = crate::socket::set_group(p, group) {
                    c.remove();
                    return Err(e.into());
                }
            }
            (l, Some(c))
        }
        Listen::Fd(fd) => (crate::socket::from_fd(*fd)?, None),
        Listen::FuseMountpoint(_) => unreachable!("handled by run_fuse"),
    };
    let cleanup = Arc::new(cleanup);
    let res = serve_vhost_user(
        config,
        shared,
        listener,
        signals,
        caps,
        Arc::clone(&cleanup),
    );
    if let Some(c) = cleanup.as_ref() {
        c.remove();
    }
    res
}

fn serve_vhost_user(
    config: &Config,
    shared: &Path,
    listener: std::os::unix::net::UnixListener,
    signals: SigSet,
    caps: &[vhostfs_sandbox::Cap],
    cleanup: Arc<Option<crate::socket::SocketCleanup>>,
) -> anyhow::Result<()> {
    let root: PathBuf = vhostfs_sandbox::enter(sandbox_mode(config.sandbox), shared)
        .context("entering the sandbox")?;
    let fs = build_fs(config, &root)?;
    let server = Arc::new(Server::new(fs, server_options(config)));
    vhostfs_sandbox::drop_capabilities(caps).context("dropping capabilities")?;
    vhostfs_sandbox::install_seccomp(seccomp_action(config.seccomp))
        .context("installing the seccomp filter")?;

    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Ok(sig) = signals.wait() {
                tracing::info!("received {sig}: exiting");
                if let Some(c) = cleanup.as_ref() {
                    c.remove();
                }
                std::process::exit(0);
            }
        })
        .context("spawning the signal thread")?;

    let device = vhostfs_vhost_user::DeviceConfig {
        tag: config.tag.clone(),
        max_request_queues: config.num_request_queues,
        max_queue_size: 32768,
        thread_pool_size: config.thread_pool_size,
    };
    tracing::info!(shared = %shared.display(), "waiting for a vhost-user frontend");
    vhostfs_vhost_user::serve(server, listener, device)?;
    tracing::info!("frontend disconnected; exiting");
    Ok(())
}

/// The capabilities to keep once set up: virtiofsd's default set, plus `dac_read_search` for
/// file handles and `sys_admin` for security labels, edited by `--modcaps`.
fn capabilities(config: &Config) -> anyhow::Result<Vec<vhostfs_sandbox::Cap>> {
    use vhostfs_sandbox::Cap;
    let mut caps = vhostfs_sandbox::default_capabilities();
    if matches!(
        config.inode_file_handles,
        Some(cli::InodeFileHandles::Prefer | cli::InodeFileHandles::Mandatory)
    ) {
        caps.push(Cap::DAC_READ_SEARCH);
    }
    if config.security_label != cli::Tristate::Never {
        caps.push(Cap::SYS_ADMIN);
    }
    match &config.modcaps {
        Some(spec) => vhostfs_sandbox::modcaps(&caps, spec).context("--modcaps"),
        None => Ok(caps),
    }
}

fn server_options(_config: &Config) -> ServerOptions {
    ServerOptions::default()
}

fn sandbox_mode(s: cli::SandboxArg) -> vhostfs_sandbox::SandboxMode {
    match s {
        cli::SandboxArg::Namespace => vhostfs_sandbox::SandboxMode::Namespace,
        cli::SandboxArg::Chroot => vhostfs_sandbox::SandboxMode::Chroot,
        cli::SandboxArg::None => vhostfs_sandbox::SandboxMode::None,
    }
}

fn seccomp_action(s: cli::SeccompArg) -> vhostfs_sandbox::SeccompAction {
    match s {
        cli::SeccompArg::None => vhostfs_sandbox::SeccompAction::None,
        cli::SeccompArg::Kill => vhostfs_sandbox::SeccompAction::Kill,
        cli::SeccompArg::Log => vhostfs_sandbox::SeccompAction::Log,
        cli::SeccompArg::Trap => vhostfs_sandbox::SeccompAction::Trap,
    }
}

/// The passthrough file system's settings for `config`, rooted at `root`.
pub fn passthrough_config(
    config: &Config,
    root: &Path,
) -> anyhow::Result<vhostfs_passthrough::Config> {
    use vhostfs_passthrough::{CachePolicy, InodeFileHandles};
    let mut c = vhostfs_passthrough::Config {
        root_dir: root.to_path_buf(),
        ..Default::default()
    };
    c.cache = match config.cache {
        cli::CachePolicy::Never => CachePolicy::Never,
        cli::CachePolicy::Metadata => CachePolicy::Metadata,
        cli::CachePolicy::Auto => CachePolicy::Auto,
        cli::CachePolicy::Always => CachePolicy::Always,
    };
    c.writeback = config.writeback;
    c.allow_direct_io = config.allow_direct_io;
    c.readdirplus = config.readdirplus;
    c.allow_mmap = config.allow_mmap;
    c.xattr = config.xattr;
    c.readonly = config.readonly;
    c.posix_acl = config.posix_acl != cli::Tristate::Never;
    c.security_label = config.security_label != cli::Tristate::Never;
    c.announce_submounts = config.announce_submounts;
    c.killpriv_v2 = config.killpriv_v2;
    c.max_open_fds = config.max_open_files;
    c.max_inodes = config.max_inodes;
    if let Some(i) = config.inode_file_handles {
        c.inode_file_handles = match i {
            cli::InodeFileHandles::Never => InodeFileHandles::Never,
            cli::InodeFileHandles::Prefer => InodeFileHandles::Prefer,
            cli::InodeFileHandles::Mandatory => InodeFileHandles::Mandatory,
        };
    }
    if let Some(m) = &config.xattrmap {
        c.xattr_map = Some(vhostfs_passthrough::xattrmap::parse(m).context("--xattrmap")?);
    }
    if !config.translate_uid.is_empty()
        || !config.translate_gid.is_empty()
        || !config.uid_map.is_empty()
        || !config.gid_map.is_empty()
    {
        let mut map = vhostfs_passthrough::idmap::IdMap::from_specs(
            &config.translate_uid,
            &config.translate_gid,
        )
        .context("--translate-uid/--translate-gid")?;
        for m in &config.uid_map {
            map.add_uid_ns_map(m).context("--uid-map")?;
        }
        for m in &config.gid_map {
            map.add_gid_ns_map(m).context("--gid-map")?;
        }
        c.id_map = Some(map);
    }
    Ok(c)
}

fn build_fs(config: &Config, root: &Path) -> anyhow::Result<vhostfs_passthrough::PassthroughFs> {
    let c = passthrough_config(config, root)?;
    // Our own /proc/self/fd: after entering a sandbox it is not reachable by path, and in
    // namespace mode we are a forked child whose descriptors the parent's directory does not
    // show.
    let proc_self_fd = vhostfs_sandbox::proc_self_fd().context("opening /proc/self/fd")?;
    vhostfs_passthrough::PassthroughFs::with_proc_self_fd(c, proc_self_fd)
        .with_context(|| format!("opening shared directory {}", root.display()))
}

/// Applies `--rlimit-nofile`: `Some(0)` leaves the limit alone; `None` sets
/// min(1000000, /proc/sys/fs/nr_open), as far as we may.
fn set_rlimit_nofile(limit: Option<u64>) -> anyhow::Result<()> {
    let want = limit.unwrap_or_else(vhostfs_sandbox::default_rlimit_nofile);
    match vhostfs_sandbox::set_rlimit_nofile(want) {
        Ok(got) if want != 0 && got < want => {
            if limit.is_some() {
                tracing::warn!("RLIMIT_NOFILE raised only to {got} (wanted {want})");
            } else {
                tracing::info!("RLIMIT_NOFILE raised only to {got} (wanted {want})");
            }
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(e) if limit.is_some() => bail!("--rlimit-nofile {want}: {e}"),
        Err(e) => {
            tracing::warn!("cannot set RLIMIT_NOFILE to {want}: {e}");
            Ok(())
        }
    }
}
