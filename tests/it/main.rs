//! The integration tests, as one binary: each module starts the real
//! `ecclusterd` (through `common`, the harness) and talks to it over
//! sockets, except `layers` (the import floors) and `config_check` (the
//! broken configurations of `tests/configs`). One binary links the harness
//! once. Two suites stay binaries of their own, for a reason: `tests/sim.rs`
//! is built in release mode and run with seed counts of its own (`cargo
//! xtask sim`), and `tests/faults` needs root and network namespaces and
//! runs single-threaded as its own step of `cargo xtask test`.

#[path = "../common/mod.rs"]
mod common;

mod bench_idle;
mod cli_check;
mod config_check;
mod daemon;
mod deploy;
mod http;
mod layers;
mod mesh;
mod msgc_groups;
mod msgc_limits;
mod msgc_protocol;
mod msgc_stress;
mod node;
mod ordered;
mod tls;
