//! Client credentials from `msgc_server { auth_token users }`, checked on
//! CONNECT. Comparisons take the same time whatever the guess.

use std::sync::Arc;

use crate::config::{BusSettings, Permissions};
use crate::nats::proto::ConnectOptions;
use crate::subject::pattern_matches;

#[derive(Debug, Clone, Default)]
pub struct Auth {
    token: Option<String>,
    users: Vec<(String, String)>,
    permissions: Vec<(String, Arc<Permissions>)>,
}

/// Who a CONNECT authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// No credentials configured, or the token.
    Anonymous,
    User(String),
}

impl Auth {
    pub fn from_settings(b: &BusSettings) -> Auth {
        Auth {
            token: b.auth_token.clone(),
            users: b.users.clone(),
            permissions: b
                .permissions
                .iter()
                .map(|(u, p)| (u.clone(), Arc::new(p.clone())))
                .collect(),
        }
    }

    pub fn required(&self) -> bool {
        self.token.is_some() || !self.users.is_empty()
    }

    /// Whether CONNECT's credentials are good (always, when none are configured).
    pub fn check(&self, opts: &ConnectOptions) -> bool {
        self.authenticate(opts).is_some()
    }

    /// Who CONNECT's credentials name, if they are good.
    pub fn authenticate(&self, opts: &ConnectOptions) -> Option<Identity> {
        if !self.required() {
            return Some(Identity::Anonymous);
        }
        let token_ok = match (&self.token, &opts.auth_token) {
            (Some(want), Some(got)) => ct_eq(want.as_bytes(), got.as_bytes()),
            _ => false,
        };
        let user_ok = match (&opts.user, &opts.pass) {
            (Some(u), Some(p)) => self.users.iter().fold(false, |ok, (wu, wp)| {
                ok | (ct_eq(wu.as_bytes(), u.as_bytes()) & ct_eq(wp.as_bytes(), p.as_bytes()))
            }),
            _ => false,
        };
        match (user_ok, token_ok, &opts.user) {
            (true, _, Some(u)) => Some(Identity::User(u.clone())),
            (_, true, _) => Some(Identity::Anonymous),
            _ => None,
        }
    }

    /// A user's permissions, when `permissions "user" {}` gives some.
    pub fn permissions(&self, who: &Identity) -> Option<Arc<Permissions>> {
        let Identity::User(u) = who else { return None };
        self.permissions
            .iter()
            .find(|(name, _)| name == u)
            .map(|(_, p)| p.clone())
    }
}

/// Whether `subject` may be published to under `p`.
pub fn may_publish(p: &Permissions, subject: &str) -> bool {
    let hit = |l: &[String]| l.iter().any(|pat| pattern_matches(pat, subject));
    (p.publish.is_empty() || hit(&p.publish)) && !hit(&p.publish_deny)
}

/// Whether a subscription to `subject` (which may hold wildcards) is allowed
/// under `p`: covered by an allow pattern, and overlapping no denied one (a
/// wildcard subscription that could receive a denied subject is refused).
pub fn may_subscribe(p: &Permissions, subject: &str) -> bool {
    let allowed =
        p.subscribe.is_empty() || p.subscribe.iter().any(|pat| pattern_matches(pat, subject));
    allowed && !p.subscribe_deny.iter().any(|pat| overlaps(pat, subject))
}

/// Whether some subject matches both patterns.
fn overlaps(a: &str, b: &str) -> bool {
    let (mut x, mut y) = (a.split('.'), b.split('.'));
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some(p), Some(q)) if p == q || p == "*" || q == "*" => {}
            _ => return false,
        }
    }
}

/// Equality whose time depends on the lengths only.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(token: Option<&str>, user: Option<(&str, &str)>) -> ConnectOptions {
        ConnectOptions {
            auth_token: token.map(Into::into),
            user: user.map(|u| u.0.into()),
            pass: user.map(|u| u.1.into()),
            ..ConnectOptions::default()
        }
    }

    #[test]
    fn permissions_allow_then_deny() {
        let p = Permissions {
            publish: vec!["orders.>".into(), "_INBOX.>".into()],
            publish_deny: vec!["orders.secret".into()],
            subscribe: vec!["orders.*".into(), "_INBOX.>".into()],
            subscribe_deny: vec!["orders.secret".into()],
        };
        assert!(may_publish(&p, "orders.eu"));
        assert!(!may_publish(&p, "orders.secret"));
        assert!(!may_publish(&p, "billing.x"));
        assert!(may_subscribe(&p, "orders.eu"));
        assert!(!may_subscribe(&p, "orders.secret"));
        // A wildcard that could receive the denied subject is refused.
        assert!(!may_subscribe(&p, "orders.*"));
        assert!(may_subscribe(&p, "_INBOX.abc.*"));
        assert!(!may_subscribe(&p, "billing.*"));
        // No lists: anything goes.
        assert!(may_publish(&Permissions::default(), "x"));
        assert!(may_subscribe(&Permissions::default(), ">"));
    }

    #[test]
    fn open_when_nothing_configured() {
        assert!(Auth::default().check(&opts(None, None)));
        assert!(!Auth::default().required());
    }

    #[test]
    fn token_and_users() {
        let a = Auth {
            token: Some("s3cret".into()),
            users: vec![("alice".into(), "pw".into())],
            permissions: Vec::new(),
        };
        assert!(a.check(&opts(Some("s3cret"), None)));
        assert!(!a.check(&opts(Some("s3cre"), None)));
        assert!(!a.check(&opts(None, None)));
        assert!(a.check(&opts(None, Some(("alice", "pw")))));
        assert!(!a.check(&opts(None, Some(("alice", "pW")))));
        assert!(!a.check(&opts(None, Some(("bob", "pw")))));
    }
}
