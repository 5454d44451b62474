//! The NATS client side: the protocol codec (`proto`, both directions),
//! an async client for the CLI tools and the load generator (`conn`), and
//! a blocking one for threads that play one client each (`blocking`: the
//! integration tests' harness, the soak).

pub mod blocking;
pub mod conn;
pub mod proto;
