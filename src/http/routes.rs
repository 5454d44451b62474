//! What each path answers, sans-IO: a request and a status snapshot in, a
//! response out.

use super::metrics;
use crate::msgc::status::Status;

#[derive(Debug)]
pub struct Response {
    pub code: u16,
    pub reason: &'static str,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// HEAD: the headers of GET, no body.
    pub head_only: bool,
}

impl Response {
    fn new(code: u16, reason: &'static str, content_type: &'static str, body: Vec<u8>) -> Self {
        Response {
            code,
            reason,
            content_type,
            body,
            head_only: false,
        }
    }

    fn text(code: u16, reason: &'static str, body: String) -> Self {
        Response::new(code, reason, "text/plain; charset=utf-8", body.into_bytes())
    }

    /// The response as bytes on the wire (`Connection: close`).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
            self.code,
            self.reason,
            self.content_type,
            self.body.len()
        );
        if self.code == 405 {
            out.push_str("Allow: GET, HEAD\r\n");
        }
        out.push_str("\r\n");
        let mut out = out.into_bytes();
        if !self.head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// A bad request head.
pub fn bad(why: &'static str) -> Response {
    let code = if why == "head too large" { 431 } else { 400 };
    let reason = if code == 431 {
        "Request Header Fields Too Large"
    } else {
        "Bad Request"
    };
    Response::text(code, reason, format!("{why}\n"))
}

const INDEX: &str = "ecclusterd\n\
    /healthz  200 while the process serves\n\
    /readyz   200 when this node orders (normal, delivering, in the primary view), else 503 and why\n\
    /status   the status JSON (as `ecclusterd status --json`)\n\
    /metrics  Prometheus text format\n";

/// Answers `method path` from `status` (taken only by the paths that need it).
pub fn respond(method: &str, path: &str, status: impl FnOnce() -> Status) -> Response {
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => {
            return Response::text(405, "Method Not Allowed", "only GET and HEAD\n".to_owned());
        }
    };
    let mut r = match path {
        "/" => Response::text(200, "OK", INDEX.to_owned()),
        "/healthz" | "/livez" => Response::text(200, "OK", "ok\n".to_owned()),
        "/readyz" => match ready(&status()) {
            Ok(()) => Response::text(200, "OK", "ready\n".to_owned()),
            Err(why) => Response::text(503, "Service Unavailable", format!("not ready: {why}\n")),
        },
        "/status" => Response::new(
            200,
            "OK",
            "application/json",
            serde_json::to_vec(&status()).unwrap_or_default(),
        ),
        "/metrics" => match metrics::render(&status()) {
            Ok(text) => Response::new(
                200,
                "OK",
                "text/plain; version=0.0.4; charset=utf-8",
                text.into_bytes(),
            ),
            Err(e) => Response::text(500, "Internal Server Error", format!("metrics: {e}\n")),
        },
        _ => Response::text(404, "Not Found", format!("no {path} here; see /\n")),
    };
    r.head_only = head_only;
    r
}

/// Whether this node orders: a node without peers always does; one with
/// peers when its order is normal, not suspecting its view, and delivering
/// (its view is the primary component's).
pub fn ready(s: &Status) -> Result<(), String> {
    let Some(o) = &s.order else {
        return Ok(());
    };
    if o.mode != "normal" {
        return Err(format!(
            "the order is in {} (VR view {})",
            o.mode, o.vr_view
        ));
    }
    if o.suspecting {
        return Err(format!(
            "VR view {} looks dead (its leader, or for the leader a majority, is silent)",
            o.vr_view
        ));
    }
    if !o.delivering {
        return Err(format!(
            "not delivering: membership view {} [{}] is not the primary component's",
            o.view_id,
            o.members.join(" ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgc::ordered::OrderStatus;

    fn status(order: Option<OrderStatus>) -> Status {
        Status {
            node: "node1".into(),
            version: "0".into(),
            order,
            ..Status::default()
        }
    }

    fn order(mode: &str, suspecting: bool, delivering: bool) -> OrderStatus {
        OrderStatus {
            mode: mode.into(),
            suspecting,
            delivering,
            vr_view: 4,
            view_id: 7,
            members: vec!["node1".into(), "node2".into()],
            ..OrderStatus::default()
        }
    }

    #[test]
    fn readiness_says_why_not() {
        assert_eq!(ready(&status(None)), Ok(()));
        assert_eq!(ready(&status(Some(order("normal", false, true)))), Ok(()));
        let why = |o| ready(&status(Some(o))).unwrap_err();
        assert_eq!(
            why(order("view-change", false, false)),
            "the order is in view-change (VR view 4)"
        );
        assert!(why(order("normal", true, true)).contains("looks dead"));
        assert!(why(order("normal", false, false)).contains("not the primary component's"));
        let r = respond("GET", "/readyz", || {
            status(Some(order("recovering", false, false)))
        });
        assert_eq!(r.code, 503);
        assert!(
            String::from_utf8_lossy(&r.body).starts_with("not ready: the order is in recovering")
        );
    }

    #[test]
    fn paths_methods_and_head() {
        let st = || status(None);
        assert_eq!(respond("GET", "/healthz", st).code, 200);
        assert_eq!(respond("GET", "/nope", st).code, 404);
        let r = respond("POST", "/metrics", st);
        assert_eq!(r.code, 405);
        assert!(String::from_utf8_lossy(&r.to_bytes()).contains("Allow: GET, HEAD\r\n"));
        let r = respond("HEAD", "/status", st);
        let wire = String::from_utf8_lossy(&r.to_bytes()).into_owned();
        assert!(
            wire.ends_with("\r\n\r\n")
                && wire.contains(&format!("Content-Length: {}", r.body.len())),
            "{wire}"
        );
        let json: serde_json::Value =
            serde_json::from_slice(&respond("GET", "/status", st).body).unwrap();
        assert_eq!(json["node"], "node1");
        assert_eq!(bad("head too large").code, 431);
    }
}
