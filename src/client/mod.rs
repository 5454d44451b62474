pub mod conn;
pub mod proto;
