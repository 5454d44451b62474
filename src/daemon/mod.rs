//! The running node, and its composition root: one smol executor serving
//! both listeners, each service built complete from the ones below it
//! (ARCHITECTURE.md, "Floors"), signals, and an orderly stop.

mod notify;
mod reload;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use async_signal::{Signal, Signals};
use futures_lite::{FutureExt, StreamExt};

use crate::net::{BindError, Drain, Service, listener, shutdown};

use crate::config::{ConfigPath, Identity, ListenerSettings, Settings};
use crate::http::HttpService;
use crate::mesh::Mesh;
use crate::msgc::{Bus, MsgcService, Server, ordered};
use crate::node::{NodeLinks, NodeService, Traffic};

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
    let eccluster = bind_all(&settings.eccluster)?;
    let msgcserver = bind_all(&settings.msgcserver)?;
    let http = bind_all(&settings.http)?;
    let eccluster_port = eccluster
        .iter()
        .find_map(|b| b.local.tcp().map(|a| a.port()));

    // Then build each service from the ones below it, complete.
    let (trigger, shutdown) = shutdown::channel();
    let bus = Arc::new(Bus::new(&settings));
    let has_peers = settings
        .server
        .peers
        .iter()
        .any(|p| p.name != settings.node);
    let (mesh, ordered) = if has_peers {
        let (mesh, events) = Mesh::new(&settings, eccluster_port, secret);
        let ordered = ordered::start(bus.clone(), mesh.clone(), events, &settings, &ex);
        (Some(mesh), Some(ordered))
    } else {
        (None, None)
    };
    let traffic = Arc::new(Traffic::default());
    let server = Arc::new(Server {
        bus: bus.clone(),
        mesh: mesh.clone(),
        ordered,
        traffic: traffic.clone(),
    });
    let links = NodeLinks::new(
        &settings,
        server.clone(),
        traffic,
        mesh.clone(),
        ex.clone(),
        shutdown.clone(),
    );
    let node_service: Arc<dyn Service> = Arc::new(NodeService(links.clone()));
    let http_service: Arc<dyn Service> = Arc::new(HttpService {
        server: server.clone(),
    });
    let msgc_service: Arc<dyn Service> = Arc::new(MsgcService { server, links });
    if let Some(mesh) = &mesh {
        mesh.start(&ex, shutdown.clone());
    }
    let bound = (eccluster.into_iter().map(|b| (b, node_service.clone())))
        .chain(msgcserver.into_iter().map(|b| (b, msgc_service.clone())))
        .chain(http.into_iter().map(|b| (b, http_service.clone())));
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
    notify::notify("READY=1");

    let mut current = settings;
    while let Some(sig) = signals.next().await {
        match sig {
            Ok(Signal::Hup) => {
                notify::notify("RELOADING=1");
                current = reload::reload(&path, &identity, current);
                notify::notify("READY=1");
            }
            Ok(s) => {
                log::info!("received {s:?}: stopping");
                break;
            }
            Err(e) => log::warn!("signal stream error: {e}"),
        }
    }

    notify::notify("STOPPING=1");
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
