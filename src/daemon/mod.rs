//! The running node: one smol executor serving both listeners, signals, and
//! an orderly stop. Everything here moves bytes and time; decisions live in
//! the sans-IO modules.

mod reload;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use async_signal::{Signal, Signals};
use futures_lite::{FutureExt, StreamExt};

use crate::net::{BindError, Drain, Service, listener, shutdown};

use crate::config::{ConfigPath, Identity, ListenerSettings, Settings};
use crate::mesh::Mesh;
use crate::msgc::{Bus, MsgcService};
use crate::node::{NodeLinks, NodeService};

/// How long connections get to finish after SIGTERM before the process exits.
const STOP_GRACE: Duration = Duration::from_millis(800);

/// Why the daemon could not start.
#[derive(Debug)]
pub enum StartError {
    Bind(BindError),
    Signals(std::io::Error),
    Secret(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Bind(e) => e.fmt(f),
            StartError::Signals(e) => write!(f, "cannot install signal handlers: {e}"),
            StartError::Secret(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for StartError {}

/// Runs the node until SIGTERM or SIGINT. `threads` executor threads serve
/// every connection; the calling thread is one of them.
pub fn run(
    settings: Settings,
    path: ConfigPath,
    identity: Identity,
    threads: usize,
) -> Result<(), StartError> {
    let ex = Arc::new(smol::Executor::new());
    let (stop_workers, workers_stop) = shutdown::channel();
    let workers: Vec<_> = (1..threads.max(1))
        .map(|i| {
            let ex = ex.clone();
            let stop = workers_stop.clone();
            std::thread::Builder::new()
                .name(format!("ecclusterd-{i}"))
                .spawn(move || smol::block_on(ex.run(stop.wait())))
        })
        .filter_map(|r| {
            r.map_err(|e| log::warn!("cannot start an executor thread: {e}"))
                .ok()
        })
        .collect();
    let result = smol::block_on(ex.run(serve(ex.clone(), settings, path, identity)));
    stop_workers.fire();
    for w in workers {
        let _ = w.join();
    }
    result
}

async fn serve(
    ex: Arc<smol::Executor<'static>>,
    settings: Settings,
    path: ConfigPath,
    identity: Identity,
) -> Result<(), StartError> {
    // Signals first, so a SIGTERM during start-up is not lost to the default action.
    let mut signals =
        Signals::new([Signal::Term, Signal::Int, Signal::Hup]).map_err(StartError::Signals)?;

    // A cluster secret that cannot be read (or that others can) stops the start.
    let secret = load_secret(&settings).map_err(StartError::Secret)?;

    // Bind everything before serving anything: a half-bound daemon never runs.
    let (trigger, shutdown) = shutdown::channel();
    let bus = Arc::new(Bus::new(&settings));
    let node_links = NodeLinks::new(&settings, &bus, ex.clone(), shutdown.clone());
    bus.set_node_links(node_links.clone());
    let eccluster: Arc<dyn Service> = Arc::new(NodeService(node_links.clone()));
    let msgc: Arc<dyn Service> = Arc::new(MsgcService(bus.clone()));
    let mut bound = Vec::new();
    for (l, service) in [
        (&settings.eccluster, &eccluster),
        (&settings.msgcserver, &msgc),
    ] {
        for b in bind_all(l)? {
            bound.push((b, service.clone()));
        }
    }

    let eccluster_port = bound
        .iter()
        .filter(|(b, _)| b.listener == "ECCluster_Listener")
        .find_map(|(b, _)| b.local.tcp().map(|a| a.port()));
    if settings
        .server
        .peers
        .iter()
        .any(|p| p.name != settings.node)
    {
        let (mesh, events) = Mesh::new(&settings, eccluster_port, secret);
        bus.set_mesh(mesh.clone());
        node_links.set_mesh(mesh.clone());
        let ordered =
            crate::msgc::ordered::start(bus.clone(), mesh.clone(), events, &settings, &ex);
        bus.set_ordered(ordered);
        mesh.start(&ex, shutdown.clone());
    }
    let drain = Drain::new();
    for (b, service) in bound {
        log::info!("{}: listening on {}", b.listener, b.local);
        bus.add_listener(b.listener, b.local.to_string());
        let live = Arc::new(AtomicUsize::new(0));
        let Some(guard) = drain.guard() else { break };
        ex.spawn(listener::accept_loop(
            b,
            service,
            ex.clone(),
            shutdown.clone(),
            guard,
            live,
        ))
        .detach();
    }
    log::info!(
        "node {} ready (ecclusterd {})",
        settings.node,
        env!("CARGO_PKG_VERSION")
    );

    let mut current = settings;
    while let Some(sig) = signals.next().await {
        match sig {
            Ok(Signal::Hup) => {
                current = reload::reload(&path, &identity, current);
            }
            Ok(s) => {
                log::info!("received {s:?}: stopping");
                break;
            }
            Err(e) => log::warn!("signal stream error: {e}"),
        }
    }

    trigger.fire();
    let drained = async {
        drain.wait().await;
        true
    }
    .or(async {
        smol::Timer::after(STOP_GRACE).await;
        false
    })
    .await;
    if !drained {
        log::warn!("connections still open after {STOP_GRACE:?}; exiting anyway");
    }
    log::info!("stopped");
    Ok(())
}

/// Reads `msgc_server { secret_file }` when set (`check` uses it too).
pub fn load_secret(settings: &Settings) -> Result<Option<crate::mesh::secret::Secret>, String> {
    settings
        .server
        .secret_file
        .as_ref()
        .map(|(path, origin)| crate::mesh::secret::load(path, origin))
        .transpose()
}

fn bind_all(l: &ListenerSettings) -> Result<Vec<listener::Bound>, StartError> {
    l.sockets
        .iter()
        .map(|s| listener::bind(l.name, s).map_err(StartError::Bind))
        .collect()
}
