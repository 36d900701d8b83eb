//! `vhostfs-driver`: drive a vhost-user-fs backend from the command line.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use vhostfs_driver::{Driver, DriverConfig};

/// vhost-user-fs frontend test driver.
#[derive(Parser)]
struct Cli {
    /// vhost-user socket of the backend.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// What to run.
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// INIT, LOOKUP, GETATTR, READDIR of the root.
    Smoke,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Smoke => {
            let sock = cli.socket.context("--socket is required")?;
            let mut d = Driver::connect(&sock, DriverConfig::default())?;
            println!(
                "features {:#x} protocol {:?} queues {}",
                d.features(),
                d.protocol_features(),
                d.backend_queue_num()
            );
            let init = d.init()?;
            println!("INIT: {init:?}");
            let attr = d.getattr(1)?;
            println!("GETATTR root: {attr:?}");
            match d.lookup(1, b"hello") {
                Ok(e) => println!("LOOKUP hello: {e:?}"),
                Err(e) => println!("LOOKUP hello: {e}"),
            }
            let dir = d.opendir(1)?;
            let ents = d.readdir(1, dir.fh, 0, 4096)?;
            for e in ents {
                println!(
                    "  {} ino {} type {}",
                    String::from_utf8_lossy(&e.name),
                    e.ino,
                    e.typ
                );
            }
        }
    }
    Ok(())
}
