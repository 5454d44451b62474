//! Arbitrary bytes through the whole reader (parse, includes, deserialise,
//! resolve) over an in-memory source: it must never panic, and printing a
//! parsed file must give text that prints the same again.
#![no_main]

use std::path::Path;

use ecclusterd::config::{Identity, MemSource, any_tls, load_from, reformat};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The input is the main file; it may include itself (a cycle), the
    // shipped msgc_server.conf, or a directory of two small files.
    let src = MemSource::new()
        .with("etc/main.conf", text)
        .with(
            "etc/msgc_server.conf",
            include_str!("../../conf/msgc_server.conf"),
        )
        .with("etc/d/a.conf", "msgc_client { }")
        .with("etc/d/b.conf", "cluster { nodename = node1 }");
    let id = Identity {
        cli_node: None,
        env_node: None,
        hostname: Some("node1.example".into()),
    };
    if let Err(e) = load_from(&src, Path::new("etc/main.conf"), &id, &any_tls) {
        let _ = e.to_string();
    }
    if let Ok(once) = reformat(text) {
        let twice = reformat(&once).expect("printed text parses");
        assert_eq!(once, twice);
    }
});
