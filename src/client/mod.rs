pub mod proto;
pub mod conn;
