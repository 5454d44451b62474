//! The command line: `ecclusterd run | check | pub | sub | ...` (argh).

mod tools;

use std::path::PathBuf;
use std::process::ExitCode;

use argh::FromArgs;

use crate::config::{self, ConfigPath, Identity};
use crate::{daemon, logger};

/// ecclusterd: cluster-communication daemon for Momentum-style mail clusters.
///
/// One process per cluster node serves ECCluster_Listener (direct node-to-node
/// traffic, *:4802) and msgcserver_listener (the msgc bus, :4809).
/// Start with `ecclusterd check` to see what a configuration means, then
/// `ecclusterd run`.
#[derive(FromArgs, Debug)]
struct Args {
    /// print the version and exit
    #[argh(switch, short = 'V')]
    version: bool,

    #[argh(subcommand)]
    command: Option<Command>,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum Command {
    Run(RunArgs),
    Check(CheckArgs),
    Pub(tools::PubArgs),
    Sub(tools::SubArgs),
    Request(tools::RequestArgs),
    Status(tools::StatusArgs),
    Ping(tools::PingArgs),
    SendFile(tools::SendFileArgs),
    Bench(tools::BenchArgs),
}

/// Start the node and serve both listeners until SIGTERM/SIGINT (SIGHUP re-reads the configuration).
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "run",
    example = "ecclusterd run\necclusterd run -c /etc/ecclusterd/ecelerity-cluster.conf --node mta1",
    note = "Without -c the configuration is $ECCLUSTERD_CONF, else ./conf/ecelerity-cluster.conf, else /etc/ecclusterd/ecelerity-cluster.conf, else the built-in single-node default."
)]
struct RunArgs {
    /// configuration file (Momentum syntax; includes resolve from its folder)
    #[argh(option, short = 'c')]
    config: Option<PathBuf>,

    /// this node's name in msgc_server peers (default: cluster nodename, $EC_NODE_NAME, host name)
    #[argh(option)]
    node: Option<String>,

    /// log level: error, warn, info, debug or trace (default info; Momentum's notice/critical also work)
    #[argh(option, default = "String::from(\"info\")")]
    log_level: String,

    /// executor threads serving connections (default: half the CPUs, 1 to 4)
    #[argh(option)]
    threads: Option<usize>,
}

/// Validate the configuration and print the node, listeners and peers it resolves to; exits non-zero on any error.
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "check",
    example = "ecclusterd check -c conf/ecelerity-cluster.conf --node node2"
)]
struct CheckArgs {
    /// configuration file (default: as for `run`)
    #[argh(option, short = 'c')]
    config: Option<PathBuf>,

    /// this node's name (default: as for `run`)
    #[argh(option)]
    node: Option<String>,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let args: Args = argh::from_env();
    if args.version {
        println!("ecclusterd {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    match args.command {
        None => {
            eprintln!(
                "ecclusterd: no command given. Try `ecclusterd --help`, `ecclusterd check` or `ecclusterd run`."
            );
            ExitCode::from(2)
        }
        Some(Command::Run(a)) => run(a),
        Some(Command::Check(a)) => check(a),
        Some(Command::Pub(a)) => tools::publish(a),
        Some(Command::Sub(a)) => tools::subscribe(a),
        Some(Command::Request(a)) => tools::request(a),
        Some(Command::Status(a)) => tools::status(a),
        Some(Command::Ping(a)) => tools::ping(a),
        Some(Command::SendFile(a)) => tools::send_file(a),
        Some(Command::Bench(a)) => tools::bench(a),
    }
}

fn locate(explicit: Option<PathBuf>) -> ConfigPath {
    config::locate(explicit.as_deref(), std::env::var_os("ECCLUSTERD_CONF"))
}

fn describe_path(p: &ConfigPath) -> String {
    match p {
        ConfigPath::File(f) => f.display().to_string(),
        ConfigPath::Embedded => "the built-in default configuration".to_owned(),
    }
}

fn run(a: RunArgs) -> ExitCode {
    let Some(level) = logger::parse_level(&a.log_level) else {
        eprintln!(
            "ecclusterd: --log-level {:?} is not a level; use error, warn, info, debug or trace",
            a.log_level
        );
        return ExitCode::from(2);
    };
    logger::init(level);
    let path = locate(a.config);
    let identity = Identity::from_env(a.node);
    let settings = match config::load(&path, &identity, &crate::net::tls::check) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("ecclusterd: not started: the configuration has errors");
            return ExitCode::FAILURE;
        }
    };
    log::info!("configuration: {}", describe_path(&path));
    // Half the CPUs (at most 4): the MTA on the same node needs the rest,
    // and on small machines one thread avoids cross-thread wake-ups.
    let threads = a.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| (n.get() / 2).clamp(1, 4))
            .unwrap_or(1)
    });
    match daemon::run(settings, path, identity, threads) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            eprintln!("ecclusterd: not started: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(a: CheckArgs) -> ExitCode {
    let path = locate(a.config);
    let identity = Identity::from_env(a.node);
    match config::load(&path, &identity, &crate::net::tls::check) {
        Ok(s) => {
            if let Err(e) = daemon::load_secret(&s) {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
            println!("configuration: {} is valid", describe_path(&path));
            print!("{}", s.describe());
            if let Some((p, _)) = &s.server.secret_file {
                println!(
                    "cluster secret: {} (readable by the owner only)",
                    p.display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
