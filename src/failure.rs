//! What a failure means for the key that met it: the one verdict the StopFailure hook (helper
//! mode) and the proxy share, and how it becomes a mark in the pool.

use jiff::Timestamp;

use crate::pool::{Lasting, Mark};
use crate::reason::{Cause, Reason, Source};

/// What a failure means for the key that was in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Out of budget or over a limit: the key cools down, until `until` when the upstream said
    /// when it lifts, else for the configured cooldown of `reason`.
    Spent {
        reason: Reason,
        until: Option<Timestamp>,
        /// In words, for the log and notifications; never a body.
        detail: String,
        /// Worth a desktop notification: a spent budget, not a per-minute limit.
        notable: bool,
    },
    /// The key itself was refused (revoked, mistyped): set aside until the user replaces or
    /// resets it.
    Revoked { reason: Reason, detail: String },
    /// This request is forbidden to the key (one model or resource), not the key itself: the
    /// next key may answer it, and nothing is marked.
    ThisRequestOnly { detail: String },
    /// Not about the key (overloaded, a bad request, a server error): leave it alone.
    NotTheKey,
}

impl Failure {
    /// The mark this failure makes when `source` saw it; none when it is not the key's.
    pub fn mark(&self, source: Source, note: Option<String>) -> Option<Mark> {
        let (lasting, reason) = match self {
            Self::Spent {
                reason,
                until: Some(until),
                ..
            } => (Lasting::Until(*until), *reason),
            Self::Spent { reason, .. } => (Lasting::Configured, *reason),
            Self::Revoked { reason, .. } => (Lasting::SetAside, *reason),
            Self::ThisRequestOnly { .. } | Self::NotTheKey => return None,
        };
        Some(Mark {
            lasting,
            cause: Cause::mark(source, reason),
            note,
        })
    }

    /// The failure in words; empty when it is not the key's.
    pub fn detail(&self) -> &str {
        match self {
            Self::Spent { detail, .. }
            | Self::Revoked { detail, .. }
            | Self::ThisRequestOnly { detail } => detail,
            Self::NotTheKey => "",
        }
    }

    /// Worth telling the user about on the desktop.
    pub fn notable(&self) -> bool {
        match self {
            Self::Spent { notable, .. } => *notable,
            Self::Revoked { .. } => true,
            Self::ThisRequestOnly { .. } | Self::NotTheKey => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_makes_its_mark() {
        let until: Timestamp = "2026-12-01T20:00:00Z".parse().unwrap();
        let spent = |until| Failure::Spent {
            reason: Reason::RateLimit,
            until,
            detail: "429".into(),
            notable: false,
        };
        let timed = spent(Some(until)).mark(Source::Proxy, None).unwrap();
        assert_eq!(timed.lasting, Lasting::Until(until));
        assert_eq!(timed.cause, Cause::Proxy(Reason::RateLimit));
        let configured = spent(None).mark(Source::Hook, Some("n".into())).unwrap();
        assert_eq!(configured.lasting, Lasting::Configured);
        assert_eq!(configured.cause, Cause::Hook(Reason::RateLimit));
        assert_eq!(configured.note.as_deref(), Some("n"));
        let revoked = Failure::Revoked {
            reason: Reason::AuthenticationFailed,
            detail: "401".into(),
        };
        assert_eq!(
            revoked.mark(Source::Proxy, None).unwrap().lasting,
            Lasting::SetAside
        );
        assert!(revoked.notable());
        assert_eq!(Failure::NotTheKey.mark(Source::Hook, None), None);
    }
}
