//! The `ecclusterd` binary: everything lives in the library so tests, fuzz
//! targets and the binary share one code path.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    ecclusterd::cli::main()
}
