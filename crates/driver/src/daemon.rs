//! Spawning and watching a backend process.
