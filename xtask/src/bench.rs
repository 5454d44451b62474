//! `cargo xtask bench`: placeholder, see issue #3.

pub fn run(_args: &[String]) -> crate::util::Result {
    println!("not implemented yet (issue #3)");
    Ok(())
}
