//! The `ecclusterd` binary: everything lives in the library so tests, fuzz
//! targets and the binary share one code path.
#![forbid(unsafe_code)]

/// The static musl build ships with mimalloc: musl's own allocator halved
/// the bus's throughput (ARCHITECTURE.md, "Dependencies").
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    ecclusterd::cli::main()
}
