//! The transport floor: connections (plain, Unix, TLS), listeners and the
//! [`Service`] each one hands connections to, and the shutdown signal every
//! task watches. It moves bytes only and imports no service: the bus, the
//! peer mesh and the node links are built on it.

mod conn;
pub mod listener;
pub mod shutdown;
pub mod tls;

pub use conn::{Conn, Remote};
pub use listener::{BindError, Local, Service};
pub use shutdown::{Drain, DrainGuard, Shutdown, Trigger};
