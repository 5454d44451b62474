//! ecclusterd: the cluster-communication daemon of a Momentum-style mail cluster.
//!
//! See ARCHITECTURE.md for the map. Protocol cores (`config`, `client::proto`,
//! `subject`) are sans-IO; `daemon` is the only place that touches sockets,
//! clocks and the executor.
#![forbid(unsafe_code)]

pub mod bench;
pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod logger;
pub mod mesh;
pub mod msgc;
pub mod net;
pub mod node;
pub mod order;
pub mod sim;
pub mod subject;

