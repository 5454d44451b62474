//! End-to-end tests of the module: Momentum's documented snippets, the
//! shipped and embedded configs, and resolution.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::*;

fn id(node: &str) -> Identity {
    Identity {
        cli_node: Some(node.to_owned()),
        ..Identity::default()
    }
}

fn load_text(text: &str, ident: &Identity) -> Result<Settings, ConfigError> {
    let src = MemSource::new().with("t.conf", text);
    load_from(&src, Path::new("t.conf"), ident, &any_tls)
}

fn ok(text: &str) -> Settings {
    load_text(text, &id("node1")).unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> ConfigError {
    match load_text(text, &id("node1")) {
        Ok(s) => panic!("accepted: {s:?}"),
        Err(e) => e,
    }
}

fn at(e: &ConfigError) -> (usize, usize) {
    let (_, l, c) = e.position().unwrap_or_else(|| panic!("no position: {e}"));
    (l, c)
}

#[test]
fn momentum_snippets_parse() {
    // §1.1
    let s = ok("ECCluster_Listener {\n  Listen \"*:4802\" {}\n}\n");
    assert_eq!(s.eccluster.sockets[0].addr, ListenAddr::Any { port: 4802 });
    // §2.2 shipped msgc_server.conf: MSGCServer_Listener spelling, empty peers.
    let s = ok(
        "msgc_server {\n   peers = [\n     # node1 = \"192.168.0.10\"\n     # node2 = \"192.168.0.11\"\n     # manager = \"192.168.0.12\"\n   ]\n}\n\nMSGCServer_Listener {\n   Listen \":4809\" { }\n}\n",
    );
    assert!(s.server.peers.is_empty());
    assert_eq!(s.msgcserver.sockets[0].addr, ListenAddr::Any { port: 4809 });
    // §2.3
    ok("msgcserver_listener {\n   Listen \":4809\" { }\n}\n");
    ok("Msgcserver_Listener {\n   Listen \":4809\" { }\n}\n");
    // §2.4
    let s = load_text(
        "msgc_server {\n   peers = [\n     node1 = \"192.168.0.10\"\n     node2 = \"192.168.0.11\"\n     manager = \"192.168.0.12\"\n   ]\n}\n",
        &id("manager"),
    )
    .unwrap();
    let names: Vec<&str> = s.server.peers.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["node1", "node2", "manager"]);
    assert_eq!(s.server.peers[1].host, "192.168.0.11");
    assert_eq!(s.server.peers[1].port, 4809);
    // FQDN keys, as in real deployments.
    let s = load_text(
        "msgc_server { peers = [ node1.int.messagesystems.com = \"10.77.0.93\" ] }",
        &id("node1.int.messagesystems.com"),
    )
    .unwrap();
    assert_eq!(s.server.peers[0].name, "node1.int.messagesystems.com");
    // §2.5
    let s = ok("msgc_client {\n   server = ( \"127.0.0.1:4809\" )\n}\n");
    assert_eq!(s.client.servers, ["127.0.0.1:4809"]);
    let s = ok("msgc_client { server = ( \"127.0.0.1:4809\" ) debug_level = \"info\" }");
    assert_eq!(s.client.common.debug_level, "INFO");
    // §3.3 forms inside our listeners.
    let s = ok(
        "ECCluster_Listener { Listen \"[*]:4802\" {} Listen \"[::1]:4803\" {} Listen \"127.0.0.1:4804\" {} Listen \"/tmp/2025\" { File_Mode = 0666 } }",
    );
    let addrs: Vec<String> = s
        .eccluster
        .sockets
        .iter()
        .map(|s| s.addr.to_string())
        .collect();
    assert_eq!(
        addrs,
        ["[*]:4802", "[::1]:4803", "127.0.0.1:4804", "/tmp/2025"]
    );
    assert_eq!(s.eccluster.sockets[3].file_mode, 0o666);
}

#[test]
fn documented_grammar_examples_parse() {
    // §4.2/§4.3: values, arrays with comments, dictionaries, `{` on the next
    // line, several statements per line, unquoted slashes, scopes we do not
    // know (parsed, then refused by the schema, not by the parser).
    let text = "ec_logger \"ec_logger\"\n{\n  logfile = \"/var/log/eccluster/%Y/%m/%d/%{l}/%{s}/%{n}\"\n}\nnode node1.int.messagesystems.com { mta_id = 1  votes = 1 }\nRelay_Hosts = ( 127.0.0.0/8 10.10.10.0/24 )\nSubscriber = ()\nRoutes = ( \"smtp://x\" # c\n \"__mx__\" )\nlogs = [ mainlog = \"/var/log/x\" ]\nTopology \"10.1.1.0/24\" { cidrmask = \"32\" interface = \"eth1\" }\nDomain yahoo.com { }\nThreadPool accept-pool { }\nESMTP_Listener {\n  Peer \"10.0.0.0/16\" { }\n  Listen \":25\" {\n    Peer \"10.0.0.1\" { SMTP_Extensions = ( \"ENHANCEDSTATUSCODES\" \"AUTH LOGIN\" ) }\n  }\n}\n";
    let printed = reformat(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reformat(&printed).unwrap(), printed);
    let e = err(text);
    assert_eq!(e.message(), "unknown scope `ec_logger` at the top level");
}

#[test]
fn shipped_and_embedded_configs_load() {
    let s = load(&ConfigPath::Embedded, &Identity::default(), &any_tls)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.node, "node1");
    assert_eq!(s.eccluster.sockets[0].addr, ListenAddr::Any { port: 4802 });
    assert_eq!(s.msgcserver.sockets[0].addr, ListenAddr::Any { port: 4809 });
    assert_eq!(
        s.server.peers,
        [Peer {
            name: "node1".into(),
            host: "127.0.0.1".into(),
            port: 4809
        }]
    );
    assert_eq!(s.client.servers, ["127.0.0.1:4809"]);
    assert_eq!(s.files.len(), 2);
    assert_eq!(s.files[1], Path::new("<embedded>/msgc_server.conf"));
    let from_disk = load(
        &ConfigPath::File(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/ecelerity-cluster.conf"),
        ),
        &Identity::default(),
        &any_tls,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        from_disk.eccluster.sockets[0].addr,
        s.eccluster.sockets[0].addr
    );
    assert_eq!(from_disk.server, s.server);
    let d = s.describe();
    assert!(d.contains("node: node1"), "{d}");
    assert!(d.contains("node1 127.0.0.1:4809  (this node)"), "{d}");
    assert_eq!(embedded_files()[0].0, "ecelerity-cluster.conf");
}

#[test]
fn defaults_and_fallback() {
    let s = ok("");
    assert_eq!(s.eccluster.sockets.len(), 1);
    assert_eq!(s.eccluster.sockets[0].origin, "<default>");
    let d = &s.msgcserver.sockets[0];
    assert_eq!(
        (
            d.backlog,
            d.nodelay,
            d.recv_buffer,
            d.send_buffer,
            d.file_mode,
            d.max_connections
        ),
        (500, true, None, None, 0o660, 10_000)
    );
    assert_eq!(s.server.common, MsgcCommon::default());
    assert!(s.server.enabled && s.client.enabled);
    let s = ok(
        "ECCluster_Listener {\n listen_backlog = 10 tcp_recv_buffer_size = 0 tcp_send_buffer_size = 4096 disable_nagle_algorithm = yes\n Listen \"*:4802\" { listen_backlog = 20 max_connections = 0 }\n Listen \"10.0.0.1:4803\" {}\n Listen \"10.0.0.2:4803\" { enable = false }\n}",
    );
    let [a, b] = &s.eccluster.sockets[..] else {
        panic!("{s:?}")
    };
    assert_eq!((a.backlog, b.backlog), (20, 10));
    assert_eq!(
        (a.recv_buffer, a.send_buffer, a.nodelay, a.max_connections),
        (None, Some(4096), true, 0)
    );
    assert_eq!(a.origin, "t.conf:3:2");
    assert_eq!(
        b.addr,
        ListenAddr::Ip("10.0.0.1:4803".parse::<SocketAddr>().unwrap())
    );
    let s = ok("ECCluster_Listener { enable = false Listen \"*:4802\" { enable = true } }");
    assert!(s.eccluster.sockets.is_empty());
    let s = ok(
        "msgc_server { keepalive_interval = 0.2 connect_timeout = \"0.5\" debug_level = warning max_backlog = 10 }\nmsgc_server { idle_timeout = 7 }",
    );
    assert_eq!(
        s.server.common.keepalive_interval,
        Duration::from_millis(200)
    );
    assert_eq!(s.server.common.connect_timeout, Duration::from_millis(500));
    assert_eq!(s.server.common.idle_timeout, Duration::from_secs(7));
    assert_eq!(s.server.common.debug_level, "WARNING");
    assert_eq!(s.server.common.max_backlog, 10);
}

#[test]
fn node_identity_precedence() {
    let conf = "cluster { nodename = \"FromConf\" }";
    let mut ident = Identity {
        cli_node: Some("Cli".into()),
        env_node: Some("env".into()),
        hostname: Some("Host.example.com".into()),
    };
    assert_eq!(load_text(conf, &ident).unwrap().node, "cli");
    ident.cli_node = None;
    assert_eq!(load_text(conf, &ident).unwrap().node, "fromconf");
    assert_eq!(load_text("", &ident).unwrap().node, "env");
    ident.env_node = None;
    assert_eq!(load_text("", &ident).unwrap().node, "host");
    ident.hostname = None;
    assert!(
        load_text("", &ident)
            .unwrap_err()
            .message()
            .contains("cannot tell this node's name")
    );
}

#[test]
fn peers_and_ports() {
    let s = ok(
        "msgc_server { port = 4900 peers = [ node1 = \"10.0.0.1\" node2 = \"10.0.0.2:5000\" node3 = \"[fe80::1]:4000\" ] }\nmsgcserver_listener { Listen \":4900\" {} }\nmsgc_client { server = ( \"localhost\" \"[::1]:7\" ) }",
    );
    assert_eq!(s.server.port, 4900);
    assert_eq!(s.server.peers[0].port, 4900);
    assert_eq!(s.server.peers[1].port, 5000);
    assert_eq!(
        (s.server.peers[2].host.as_str(), s.server.peers[2].port),
        ("fe80::1", 4000)
    );
    assert_eq!(s.client.servers, ["localhost:4900", "[::1]:7"]);
    let e = err("msgc_server { peers = [ node2 = \"x\" node3 = \"y\" ] }");
    assert!(
        e.message()
            .contains("this node `node1` is not in `peers` (which has: node2, node3)"),
        "{e}"
    );
    assert_eq!(at(&e), (1, 15));
    let e = err("msgc_server {\n port = 4900 }");
    assert!(e.message().contains("must match"), "{e}");
    assert_eq!(at(&e), (2, 2));
    // Peers dial this node's own entry (default port 4809), which nothing serves.
    let e = err(
        "msgc_server { peers = [ node1 = \"10.0.0.1\" ] }\nmsgcserver_listener { Listen \":4900\" {} }",
    );
    assert!(e.message().contains("must match"), "{e}");
    assert_eq!(at(&e), (2, 1));
    // A standalone node with no `port` written may listen anywhere (tests use port 0).
    let s = ok("msgcserver_listener { Listen \"127.0.0.1:0\" {} }");
    assert!(s.server.peers.is_empty());
}

#[test]
fn errors_render_like_rustc() {
    let src = MemSource::new()
        .with("conf/main.conf", "include \"msgc_server.conf\"\n")
        .with(
            "conf/msgc_server.conf",
            "# x\n#\n#\n#\n#\nmsgc_server {\n   kepalive_interval = 5\n}\n",
        );
    let e = load_from(&src, Path::new("conf/main.conf"), &id("node1"), &any_tls).unwrap_err();
    assert_eq!(
        e.to_string(),
        "error: unknown option `kepalive_interval` in `msgc_server`\n --> conf/msgc_server.conf:7:4\n  |\n7 |    kepalive_interval = 5\n  |    ^^^^^^^^^^^^^^^^^\n  = help: did you mean `keepalive_interval`?\n"
    );
    assert_eq!(e.position(), Some(("conf/msgc_server.conf", 7, 4)));
    let e = load(
        &ConfigPath::File("/nonexistent/x.conf".into()),
        &id("a"),
        &any_tls,
    )
    .unwrap_err();
    assert!(e.position().is_none());
    assert!(
        e.to_string().contains("cannot read `/nonexistent/x.conf`"),
        "{e}"
    );
}

#[test]
fn locate_order() {
    assert_eq!(
        locate(Some(Path::new("a.conf")), Some("b".into())),
        ConfigPath::File("a.conf".into())
    );
    assert_eq!(
        locate(None, Some("b.conf".into())),
        ConfigPath::File("b.conf".into())
    );
    // The test runs in the crate root, where conf/ exists.
    assert_eq!(
        locate(None, None),
        ConfigPath::File("conf/ecelerity-cluster.conf".into())
    );
}

#[test]
fn directory_include_on_disk() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let root = dir.path();
    let write = |p: &str, t: &str| {
        let p = root.join(p);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(p, t).unwrap_or_else(|e| panic!("{e}"));
    };
    write("main.conf", "include \"conf.d\"\n");
    write("conf.d/20-late.conf", "msgc_server { idle_timeout = 9 }\n");
    write(
        "conf.d/10-early.conf",
        "msgc_server { idle_timeout = 1 keepalive_interval = 2 }\n",
    );
    write("conf.d/.hidden.conf", "this would not parse {\n");
    write("conf.d/sub/x.conf", "nor this {\n");
    let s = load(
        &ConfigPath::File(root.join("main.conf")),
        &id("n"),
        &any_tls,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.server.common.idle_timeout, Duration::from_secs(9));
    assert_eq!(s.server.common.keepalive_interval, Duration::from_secs(2));
    let names: Vec<String> = s
        .files
        .iter()
        .filter_map(|f| f.file_name().and_then(|n| n.to_str()).map(str::to_owned))
        .collect();
    assert_eq!(names, ["main.conf", "10-early.conf", "20-late.conf"]);
    // A cycle through a directory include is caught too.
    write("conf.d/30-loop.conf", "include \"../main.conf\"\n");
    let e = load(
        &ConfigPath::File(root.join("main.conf")),
        &id("n"),
        &any_tls,
    )
    .unwrap_err();
    assert!(e.message().starts_with("include cycle: "), "{e}");
}

#[test]
fn limits_and_suggestions() {
    let big = "#".repeat(MAX_FILE_SIZE as usize + 1);
    let e = load_text(&big, &id("n")).unwrap_err();
    assert!(e.message().contains("larger than 16 MiB"), "{e}");
    let e = err("ECCluster_Listner { }");
    assert_eq!(e.help()[0], "did you mean `eccluster_listener`?");
    let e = err("msgc_client { sever = ( a:1 ) }");
    assert_eq!(e.help()[0], "did you mean `server`?");
}

#[test]
fn incoming_dir_is_an_absolute_path_on_the_listener_or_a_listen() {
    assert_eq!(ok("").eccluster.incoming_dir, None);
    let s = ok("ECCluster_Listener { incoming_dir = \"/var/spool/ec\" Listen \"*:4802\" { } }");
    assert_eq!(
        s.eccluster.incoming_dir.as_deref(),
        Some(std::path::Path::new("/var/spool/ec"))
    );
    assert!(s.describe().contains("incoming_dir: /var/spool/ec"));
    let s = ok("ECCluster_Listener { Listen \"*:4802\" { incoming_dir = \"/in\" } }");
    assert_eq!(
        s.eccluster.incoming_dir.as_deref(),
        Some(std::path::Path::new("/in"))
    );
    let e = err("ECCluster_Listener {\n  incoming_dir = \"spool\"\n  Listen \"*:4802\" { }\n}");
    assert!(e.to_string().contains("must be an absolute path"), "{e}");
    assert_eq!(at(&e), (2, 18));
}

#[test]
fn transfer_window_defaults_to_8_mib_within_64_kib_and_1_gib() {
    use crate::config::settings::TRANSFER_WINDOW;
    assert_eq!(ok("").eccluster.transfer_window, TRANSFER_WINDOW);
    assert_eq!(TRANSFER_WINDOW, 8 << 20);
    let conf =
        |w: u64| format!("ECCluster_Listener {{ transfer_window = {w} Listen \"*:4802\" {{ }} }}");
    assert_eq!(ok(&conf(65_536)).eccluster.transfer_window, 65_536);
    assert_eq!(ok(&conf(1 << 30)).eccluster.transfer_window, 1 << 30);
    let s = ok("ECCluster_Listener { Listen \"*:4802\" { transfer_window = 1048576 } }");
    assert_eq!(s.eccluster.transfer_window, 1 << 20);
    for bad in [65_535, (1 << 30) + 1] {
        let e = err(&conf(bad));
        assert!(
            e.to_string()
                .contains("`transfer_window` must be from 65536 to 1073741824 bytes"),
            "{e}"
        );
        assert_eq!(at(&e), (1, 40));
    }
}
