//! What one client's operations do, decided without IO: the session's
//! lifecycle (nothing but CONNECT, PING and PONG before CONNECT when
//! credentials are configured), subject permissions, and where a publish
//! goes — a request for another node, straight to one node, into the total
//! order, or to this node's subscribers only. `session.rs` feeds parsed
//! operations in and performs the [`Decision`]s that come out, one handler
//! per kind.

use std::sync::Arc;

use bytes::Bytes;

use super::auth::{self, Auth};
use crate::config::Permissions;
use crate::nats::proto::{ConnectOptions, Op, ProtoError, Publish, text};
use crate::node::Request;

/// What the bus around a session is, for one decision.
pub struct Surroundings<'a> {
    pub auth: &'a Auth,
    /// This node's name.
    pub node: &'a str,
    /// The node has peers: publishes go through the total order.
    pub ordered: bool,
    /// The node whose client awaits replies on a subject, if another one
    /// (learnt from requests that came from other nodes).
    pub reply_route: &'a dyn Fn(&str) -> Option<String>,
}

/// Where a publish goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// To this node's subscribers only (no peers, or a `$MSGC.` subject);
    /// `status` asks for this node's status on the reply subject too.
    Local { status: bool },
    /// Into the total order.
    Order,
    /// Straight to `node` over the direct link (a reply to its request, a
    /// message to one of its clients' private names); into the order when
    /// the link cannot take it.
    Direct { node: String },
}

/// What the session does for one operation.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Nothing but the `+OK` of verbose mode.
    Ack,
    /// Nothing at all (`+OK`, `INFO` from a client).
    Nothing,
    /// The client answered our PING.
    Pong,
    /// The client's PING: its PONG once every earlier publish is ordered.
    Ping,
    /// CONNECT accepted: apply its options, then ack.
    Connected {
        opts: Box<ConnectOptions>,
        perms: Option<Arc<Permissions>>,
    },
    /// CONNECT with credentials that do not check out.
    AuthFailed,
    /// Say this `-ERR` line and go on (the operation is dropped).
    Refuse(String),
    /// The same for a permissions violation (counted apart).
    Forbid(String),
    /// Close the connection, after this `-ERR` text when there is one.
    Close(Option<&'static str>),
    /// The client sent `-ERR`: closed, as nats-server does.
    ClientError(String),
    Subscribe {
        subject: String,
        queue: Option<String>,
        sid: String,
    },
    Unsubscribe {
        sid: String,
        max: Option<u64>,
    },
    /// `$MSGC.PING|STATUS|SENDFILE.<node>`: answered later, on `reply`,
    /// from a task (no reply subject: nothing to answer to).
    NodeRequest {
        req: Request,
        reply: Option<String>,
        payload: Bytes,
    },
    Publish {
        route: Route,
        publish: Publish,
    },
}

/// One session's state: whether CONNECT came, and the permissions it
/// brought.
#[derive(Debug, Default)]
pub struct Admission {
    connected: bool,
    perms: Option<Arc<Permissions>>,
}

impl Admission {
    /// Decides what `op` does.
    pub fn decide(&mut self, op: Op, s: &Surroundings) -> Decision {
        if !self.connected
            && s.auth.required()
            && !matches!(op, Op::Connect(_) | Op::Ping | Op::Pong)
        {
            // With credentials configured nothing is served before CONNECT.
            return Decision::Close(Some(text::AUTHORIZATION_VIOLATION));
        }
        match op {
            Op::Connect(opts) => self.connect(opts, s),
            Op::Ok | Op::Info(_) => Decision::Nothing,
            // As nats-server: a client reporting an error is closed.
            Op::Err(e) => Decision::ClientError(e),
            Op::Ping => Decision::Ping,
            Op::Pong => Decision::Pong,
            Op::Sub {
                subject,
                queue,
                sid,
            } => self.subscribe(subject, queue, sid),
            Op::Unsub { sid, max } => Decision::Unsubscribe { sid, max },
            Op::Pub(p) => self.publish(p, s),
        }
    }

    /// What a protocol error does: nats-server's `-ERR` where it says one
    /// (closing when the error is fatal), else silence (or the `+OK` it
    /// gives a publish it drops).
    pub fn error(e: &ProtoError) -> Decision {
        match (e.err_text(), e.is_fatal()) {
            (Some(t), true) => Decision::Close(Some(t)),
            (Some(t), false) => Decision::Refuse(err_line(t)),
            (None, true) => Decision::Close(None),
            (None, false) if matches!(e, ProtoError::UnroutableSubject) => Decision::Ack,
            (None, false) => Decision::Nothing,
        }
    }

    fn connect(&mut self, opts: Box<ConnectOptions>, s: &Surroundings) -> Decision {
        let Some(who) = s.auth.authenticate(&opts) else {
            return Decision::AuthFailed;
        };
        let perms = s.auth.permissions(&who);
        self.perms = perms.clone();
        self.connected = true;
        Decision::Connected { opts, perms }
    }

    fn subscribe(&self, subject: String, queue: Option<String>, sid: String) -> Decision {
        if let Some(p) = &self.perms
            && !auth::may_subscribe(p, &subject)
        {
            return Decision::Forbid(violation(
                text::PERMISSIONS_VIOLATION_SUBSCRIPTION,
                &subject,
                queue.as_deref(),
            ));
        }
        Decision::Subscribe {
            subject,
            queue,
            sid,
        }
    }

    fn publish(&self, p: Publish, s: &Surroundings) -> Decision {
        if let Some(perms) = &self.perms
            && !auth::may_publish(perms, &p.subject)
        {
            return Decision::Forbid(violation(
                text::PERMISSIONS_VIOLATION_PUBLISH,
                &p.subject,
                None,
            ));
        }
        // Requests for another node are the daemon's alone: never routed
        // to subscribers.
        if let Some(req) = Request::parse(&p.subject) {
            return Decision::NodeRequest {
                req,
                reply: p.reply,
                payload: p.payload,
            };
        }
        let route = route(&p, s);
        Decision::Publish { route, publish: p }
    }
}

/// With peers every publish takes its place in the total order, but for
/// the daemon's own `$MSGC.` subjects (this node's) and what has one
/// destination node: a reply to another node's request, a message to a
/// private name of another node's client.
fn route(p: &Publish, s: &Surroundings) -> Route {
    if !s.ordered || p.subject.starts_with("$MSGC.") {
        let status = p.subject == super::STATUS_SUBJECT && p.reply.is_some();
        return Route::Local { status };
    }
    let target = (s.reply_route)(&p.subject).or_else(|| {
        crate::node::direct::private_node(&p.subject)
            .filter(|n| *n != s.node)
            .map(str::to_owned)
    });
    match target {
        Some(node) => Route::Direct { node },
        None => Route::Order,
    }
}

/// A denied operation, in nats-server's wording, queue included: nats.js
/// finds the subscription that failed by subject and queue. `what` is one
/// of `text::PERMISSIONS_VIOLATION_*`.
fn violation(what: &str, subject: &str, queue: Option<&str>) -> String {
    let queue = queue
        .map(|q| format!(" using queue \"{q}\""))
        .unwrap_or_default();
    format!("-ERR '{what} to \"{subject}\"{queue}'\r\n")
}

pub fn err_line(text: &str) -> String {
    format!("-ERR '{text}'\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BusSettings;

    fn auth(token: Option<&str>) -> Auth {
        let b = BusSettings {
            auth_token: token.map(str::to_owned),
            ..BusSettings::default()
        };
        Auth::from_settings(&b)
    }

    fn publish(subject: &str, reply: Option<&str>) -> Op {
        Op::Pub(Publish {
            subject: subject.to_owned(),
            reply: reply.map(str::to_owned),
            headers: None,
            payload: Bytes::from_static(b"x"),
        })
    }

    fn route_of(d: Decision) -> Route {
        match d {
            Decision::Publish { route, .. } => route,
            d => panic!("not a publish: {d:?}"),
        }
    }

    fn none(_: &str) -> Option<String> {
        None
    }

    /// Node n1's surroundings.
    fn around<'a>(
        auth: &'a Auth,
        ordered: bool,
        reply_route: &'a dyn Fn(&str) -> Option<String>,
    ) -> Surroundings<'a> {
        Surroundings {
            auth,
            node: "n1",
            ordered,
            reply_route,
        }
    }

    #[test]
    fn with_credentials_nothing_but_connect_ping_pong_before_connect() {
        let a = auth(Some("s3cret"));
        let s = around(&a, false, &none);
        let mut adm = Admission::default();
        assert_eq!(adm.decide(Op::Ping, &s), Decision::Ping);
        assert_eq!(
            adm.decide(publish("a", None), &s),
            Decision::Close(Some(text::AUTHORIZATION_VIOLATION))
        );
        let bad = ConnectOptions {
            auth_token: Some("wrong".into()),
            ..ConnectOptions::default()
        };
        assert_eq!(
            adm.decide(Op::Connect(Box::new(bad)), &s),
            Decision::AuthFailed
        );
        let good = ConnectOptions {
            auth_token: Some("s3cret".into()),
            ..ConnectOptions::default()
        };
        assert!(matches!(
            adm.decide(Op::Connect(Box::new(good)), &s),
            Decision::Connected { perms: None, .. }
        ));
        assert_eq!(
            route_of(adm.decide(publish("a", None), &s)),
            Route::Local { status: false }
        );
    }

    #[test]
    fn without_credentials_anything_before_connect() {
        let a = auth(None);
        let s = around(&a, false, &none);
        let mut adm = Admission::default();
        assert!(matches!(
            adm.decide(
                Op::Sub {
                    subject: "a.>".into(),
                    queue: None,
                    sid: "1".into()
                },
                &s
            ),
            Decision::Subscribe { .. }
        ));
        assert_eq!(
            adm.decide(Op::Err("x".into()), &s),
            Decision::ClientError("x".into())
        );
    }

    #[test]
    fn permissions_refuse_in_nats_server_words_and_keep_the_connection() {
        let mut adm = Admission {
            connected: true,
            perms: Some(Arc::new(Permissions {
                publish: vec!["ok.>".into()],
                subscribe: vec!["ok.>".into()],
                ..Permissions::default()
            })),
        };
        let a = auth(None);
        let s = around(&a, true, &none);
        assert_eq!(
            adm.decide(publish("no", None), &s),
            Decision::Forbid("-ERR 'Permissions Violation for Publish to \"no\"'\r\n".to_owned())
        );
        let sub = Op::Sub {
            subject: "no.x".into(),
            queue: Some("q".into()),
            sid: "7".into(),
        };
        assert_eq!(
            adm.decide(sub, &s),
            Decision::Forbid(
                "-ERR 'Permissions Violation for Subscription to \"no.x\" using queue \"q\"'\r\n"
                    .to_owned()
            )
        );
        assert_eq!(
            route_of(adm.decide(publish("ok.1", None), &s)),
            Route::Order
        );
    }

    #[test]
    fn where_a_publish_goes() {
        let a = auth(None);
        let routes = |subject: &str| (subject == "_INBOX.asked.by.n3").then(|| "n3".to_owned());
        let ordered = around(&a, true, &routes);
        let mut adm = Admission::default();
        let mut go = |subject: &str, reply: Option<&str>, s: &Surroundings| {
            route_of(adm.decide(publish(subject, reply), s))
        };
        assert_eq!(go("orders.new", None, &ordered), Route::Order);
        assert_eq!(
            go("_INBOX.asked.by.n3", None, &ordered),
            Route::Direct { node: "n3".into() }
        );
        assert_eq!(
            go("#12#n2", None, &ordered),
            Route::Direct { node: "n2".into() }
        );
        // This node's own private names are ordered like anything else.
        assert_eq!(go("#12#n1", None, &ordered), Route::Order);
        assert_eq!(
            go("$MSGC.STATUS", Some("r"), &ordered),
            Route::Local { status: true }
        );
        assert_eq!(
            go("$MSGC.STATUS", None, &ordered),
            Route::Local { status: false }
        );
        let alone = Surroundings {
            ordered: false,
            ..ordered
        };
        assert_eq!(
            go("_INBOX.asked.by.n3", None, &alone),
            Route::Local { status: false }
        );
        assert!(matches!(
            adm.decide(publish("$MSGC.PING.n2", Some("r")), &alone),
            Decision::NodeRequest { req: Request::Ping(n), reply: Some(_), .. } if n == "n2"
        ));
    }

    #[test]
    fn protocol_errors_as_nats_server_answers_them() {
        assert_eq!(
            Admission::error(&ProtoError::UnroutableSubject),
            Decision::Ack
        );
        assert!(matches!(
            Admission::error(&ProtoError::InvalidSubject),
            Decision::Refuse(_)
        ));
        assert!(matches!(
            Admission::error(&ProtoError::UnknownOperation),
            Decision::Close(_)
        ));
    }
}
