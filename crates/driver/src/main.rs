//! `vhostfs-driver`: drive a vhost-user-fs backend from the command line, the way a VMM
//! would, with well-formed or hostile requests.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use vhostfs_driver::daemon::{DaemonSpec, VIRTIOFSD};
use vhostfs_driver::hostile::{self, ExternalTarget, Fixtures, SpawnedTarget};
use vhostfs_driver::{ChainBuilder, Driver, DriverConfig};

/// vhost-user-fs frontend test driver.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// vhost-user socket of a running backend (smoke, hostile*, flood, hammer).
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    /// The backend's shared directory, to plant escape fixtures in (hostile*).
    #[arg(long, global = true)]
    shared_dir: Option<PathBuf>,
    /// Entries per virtqueue.
    #[arg(long, global = true, default_value_t = 256)]
    queue_size: u16,
    /// Split guest RAM into this many memfd regions (adjacent in guest-physical space).
    #[arg(long, global = true, default_value_t = 1)]
    mem_regions: usize,
    /// Milliseconds to wait for the used entry of a hostile request.
    #[arg(long, global = true, default_value_t = 300)]
    wait_ms: u64,
    /// What to run.
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// INIT, GETATTR, LOOKUP and READDIR of the root.
    Smoke,
    /// List the hostile scenarios.
    List,
    /// Run every hostile scenario against --socket.
    HostileAll,
    /// Run the named hostile scenarios against --socket.
    Hostile {
        /// Scenario names (see `list`).
        names: Vec<String>,
    },
    /// Fill the ring with N well-formed GETATTRs at once (N = queue size / 2 per round).
    Flood {
        /// Total number of requests.
        n: u64,
    },
    /// Send N hostile requests in batches, each batch followed by a probe.
    Hammer {
        /// Total number of hostile requests.
        n: u64,
    },
    /// Spawn vhostfs and virtiofsd, run every scenario on both, print a comparison table.
    Compare {
        /// The vhostfs binary (default: next to this one).
        #[arg(long)]
        vhostfs: Option<PathBuf>,
        /// The virtiofsd binary.
        #[arg(long, default_value = VIRTIOFSD)]
        virtiofsd: PathBuf,
    },
}

fn cfg(cli: &Cli) -> DriverConfig {
    DriverConfig {
        queue_size: cli.queue_size,
        mem_regions: cli.mem_regions,
        ..Default::default()
    }
}

fn connect(cli: &Cli) -> Result<Driver> {
    let sock = cli.socket.as_ref().context("--socket is required")?;
    let mut d = Driver::connect(sock, cfg(cli))?;
    let init = d.init()?;
    println!(
        "connected: features {:#x}, protocol {:?}, {} queues; FUSE {}.{} max_write {}",
        d.features(),
        d.protocol_features(),
        d.backend_queue_num(),
        init.major,
        init.minor,
        init.max_write
    );
    Ok(d)
}

fn print_records(recs: &[hostile::Record]) -> bool {
    let mut ok = true;
    for r in recs {
        println!(
            "{:<4} {:<28} {}",
            if r.passed() { "ok" } else { "FAIL" },
            r.name,
            r.summary()
        );
        ok &= r.passed();
    }
    ok
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let wait = Duration::from_millis(cli.wait_ms);
    match &cli.cmd {
        Cmd::Smoke => {
            let mut d = connect(&cli)?;
            let attr = d.getattr(1)?;
            println!(
                "GETATTR root: ino {} mode {:o}",
                attr.attr.ino, attr.attr.mode
            );
            let dir = d.opendir(1)?;
            for e in d.readdir(1, dir.fh, 0, 8192)? {
                let name = String::from_utf8_lossy(&e.name).into_owned();
                match d.lookup(1, &e.name) {
                    Ok(x) => println!(
                        "  {name:<24} node {:<4} ino {} size {}",
                        x.nodeid, x.attr.ino, x.attr.size
                    ),
                    Err(err) => println!("  {name:<24} lookup: {err}"),
                }
            }
            d.release(1, dir.fh, true)?;
        }
        Cmd::List => {
            for s in hostile::catalogue() {
                println!("{:<28} {}", s.name, s.what);
            }
        }
        Cmd::HostileAll | Cmd::Hostile { .. } => {
            let fx = match &cli.shared_dir {
                Some(dir) => {
                    let root = dir.parent().context("--shared-dir has no parent")?;
                    let fx = Fixtures::create(root)?;
                    if fx.shared != *dir {
                        bail!("--shared-dir must be named 'shared' (fixtures go in its parent)");
                    }
                    Some(fx)
                }
                None => None,
            };
            let sock = cli.socket.clone().context("--socket is required")?;
            let mut t = ExternalTarget::new(sock, fx, cfg(&cli));
            let all = hostile::catalogue();
            let chosen: Vec<_> = match &cli.cmd {
                Cmd::Hostile { names } => all
                    .into_iter()
                    .filter(|s| names.iter().any(|n| n == s.name))
                    .collect(),
                _ => all,
            };
            let recs = hostile::run(&mut t, &chosen, wait);
            if !print_records(&recs) {
                std::process::exit(1);
            }
        }
        Cmd::Flood { n } => {
            let mut d = connect(&cli)?;
            let per = usize::from(cli.queue_size / 2);
            let start = Instant::now();
            let mut done = 0u64;
            while done < *n {
                let round = per.min((*n - done) as usize);
                let mut heads = Vec::with_capacity(round);
                for _ in 0..round {
                    let u = d.next_unique();
                    let r = vhostfs_driver::fuse::encode(
                        vhostfs_fuse_abi::opcode::GETATTR,
                        u,
                        1,
                        &[&[0u8; 16]],
                    );
                    heads
                        .push(d.submit_nokick(1, &ChainBuilder::new().readable(&r).writable(256))?);
                }
                d.kick(1)?;
                for h in heads {
                    d.wait(1, h, Duration::from_secs(5))?
                        .context("flood request not answered")?;
                }
                done += round as u64;
            }
            let el = start.elapsed();
            println!(
                "{done} requests in {el:?} ({:.0}/s)",
                done as f64 / el.as_secs_f64()
            );
        }
        Cmd::Hammer { n } => {
            let mut d = connect(&cli)?;
            let start = Instant::now();
            let st = hostile::hammer(&mut d, *n, 64)?;
            println!("{st:?} in {:?}", start.elapsed());
        }
        Cmd::Compare { vhostfs, virtiofsd } => {
            let vhostfs = match vhostfs {
                Some(p) => p.clone(),
                None => std::env::current_exe()?
                    .parent()
                    .context("no exe dir")?
                    .join("vhostfs"),
            };
            let specs = [
                DaemonSpec::vhostfs(vhostfs.clone()),
                DaemonSpec::vhostfs_sandboxed(vhostfs),
                DaemonSpec::virtiofsd(virtiofsd),
                DaemonSpec::virtiofsd_sandboxed(virtiofsd),
            ];
            let scenarios = hostile::catalogue();
            let mut labels = Vec::new();
            let mut results = Vec::new();
            for spec in specs {
                let label = spec.label.clone();
                match SpawnedTarget::new(spec, cfg(&cli)) {
                    Ok(mut t) => {
                        eprintln!("running {} scenarios against {label}...", scenarios.len());
                        let recs = hostile::run(&mut t, &scenarios, wait);
                        let failed = recs.iter().filter(|r| !r.passed()).count();
                        labels.push(format!("{label} ({failed} fail, {} spawns)", t.spawns()));
                        results.push(recs);
                    }
                    Err(e) => eprintln!("{label}: not run: {e}"),
                }
            }
            println!("{}", hostile::table(&labels, &results));
        }
    }
    Ok(())
}
