//! `cargo xtask sim`: placeholder, see issue #4.

pub fn run(_args: &[String]) -> crate::util::Result {
    println!("not implemented yet (issue #4)");
    Ok(())
}
