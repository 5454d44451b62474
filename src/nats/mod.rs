//! The NATS client protocol, both sides: the codec (`proto`: what clients
//! send, as the server reads it, and what servers send), an async client for
//! the CLI tools and the load generator (`conn`), and a blocking one for
//! threads that play one client each (`blocking`: the tests' harness, the soak).

pub mod blocking;
pub mod conn;
pub mod proto;
