//! Client credentials from `msgc_server { auth_token users }`, checked on
//! CONNECT. Comparisons take the same time whatever the guess.

use crate::client::proto::ConnectOptions;
use crate::config::BusSettings;

#[derive(Debug, Clone, Default)]
pub struct Auth {
    token: Option<String>,
    users: Vec<(String, String)>,
}

impl Auth {
    pub fn from_settings(b: &BusSettings) -> Auth {
        Auth {
            token: b.auth_token.clone(),
            users: b.users.clone(),
        }
    }

    pub fn required(&self) -> bool {
        self.token.is_some() || !self.users.is_empty()
    }

    /// Whether CONNECT's credentials are good (always, when none are configured).
    pub fn check(&self, opts: &ConnectOptions) -> bool {
        if !self.required() {
            return true;
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
        token_ok | user_ok
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
    fn open_when_nothing_configured() {
        assert!(Auth::default().check(&opts(None, None)));
        assert!(!Auth::default().required());
    }

    #[test]
    fn token_and_users() {
        let a = Auth {
            token: Some("s3cret".into()),
            users: vec![("alice".into(), "pw".into())],
        };
        assert!(a.check(&opts(Some("s3cret"), None)));
        assert!(!a.check(&opts(Some("s3cre"), None)));
        assert!(!a.check(&opts(None, None)));
        assert!(a.check(&opts(None, Some(("alice", "pw")))));
        assert!(!a.check(&opts(None, Some(("alice", "pW")))));
        assert!(!a.check(&opts(None, Some(("bob", "pw")))));
    }
}
