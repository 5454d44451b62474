//! ecclusterd: the cluster-communication daemon of a Momentum-style mail cluster.
//!
//! See ARCHITECTURE.md for the map and its floors (each module imports only
//! the ones below it; `tests/it/layers.rs` checks). Protocol cores (`config`,
//! `nats::proto`, `subject`, `order`) are sans-IO; the drivers (`net`,
//! `mesh`, `node`, `msgc`'s tasks) move bytes and time; `daemon` composes.
#![forbid(unsafe_code)]

pub mod bench;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod http;
pub mod logger;
pub mod mesh;
pub mod msgc;
pub mod nats;
pub mod net;
pub mod node;
pub mod order;
pub mod rng;
pub mod sim;
pub mod subject;
