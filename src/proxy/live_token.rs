//! The access token the running proxy accepts, kept in step with the token file.
//!
//! The token file is the truth sessions get their token from (`keyswitch get` prints it). When
//! it is deleted — keyswitch's own advice for a damaged one — the next `get` makes a new one;
//! a proxy that kept the old token would then refuse every session, and prove itself to no
//! `get`. So the proxy looks at the file again whenever it matters (a health probe, a shutdown,
//! a request whose token it does not know): a new valid token there is adopted, and a missing
//! file gets the proxy's own token back. Only the user can write the file (its folder is
//! private), so adopting it trusts no one new.

use std::sync::{Arc, Mutex, RwLock};

use hyper::HeaderMap;
use zeroize::Zeroizing;

use super::headers::authorized;
use super::keys::{FileId, file_id};
use crate::paths::Dirs;

pub struct LiveToken {
    dirs: Dirs,
    current: RwLock<Arc<Zeroizing<String>>>,
    /// The token file as last looked at: it is read again only when it changed.
    seen: Mutex<Option<FileId>>,
}

impl LiveToken {
    pub fn new(dirs: Dirs, token: Zeroizing<String>) -> Self {
        let seen = file_id(&dirs.proxy_token_file());
        Self {
            dirs,
            current: RwLock::new(Arc::new(token)),
            seen: Mutex::new(seen),
        }
    }

    /// The token accepted now.
    pub fn current(&self) -> Arc<Zeroizing<String>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether the request's credential headers carry the token accepted now.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        authorized(
            &self.current.read().unwrap_or_else(|p| p.into_inner()),
            headers,
        )
    }

    /// As [`LiveToken::admits`], looking at the token file first when the token is not the
    /// current one: a session that got a new file's token from `get` is let in.
    pub fn admits_after_refresh(&self, headers: &HeaderMap) -> bool {
        self.admits(headers) || (self.refresh() && self.admits(headers))
    }

    /// Brings the token in step with the token file; true when it changed. A stat when the
    /// file is as last seen.
    pub fn refresh(&self) -> bool {
        let path = self.dirs.proxy_token_file();
        let now = file_id(&path);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if now.is_some() && now == *seen {
            return false;
        }
        let current = self.current();
        let file_token = match crate::proxy_token::read(&self.dirs) {
            Ok(Some(token)) => token,
            // Gone: put this proxy's own token back, so the next `get` hands out one it accepts.
            // A creator racing it wins, and its token is adopted.
            Ok(None) => match crate::proxy_token::place_token(&self.dirs, &current) {
                Ok(token) => token,
                Err(e) => {
                    say!(
                        "keyswitch: proxy: the token file {} is gone and cannot be written again: {e:#}",
                        path.display()
                    );
                    return false;
                }
            },
            // Damaged: `get` says so and how to repair it; keep the token sessions hold.
            Err(_) => {
                *seen = now;
                return false;
            }
        };
        *seen = file_id(&path);
        if file_token.as_str() == current.as_str() {
            return false;
        }
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(file_token);
        say!(
            "keyswitch: proxy: the token file {} holds a new token: sessions get it from `keyswitch get`",
            path.display()
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-api-key", token.parse().unwrap());
        h
    }

    #[test]
    fn a_deleted_token_file_gets_the_proxy_token_back_and_a_new_one_is_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = Dirs {
            config: dir.path().join("c"),
            state: dir.path().join("s"),
        };
        let first = crate::proxy_token::ensure_token(&dirs).unwrap();
        let live = LiveToken::new(dirs.clone(), first.clone());
        assert!(live.admits(&map(&first)));

        std::fs::remove_file(dirs.proxy_token_file()).unwrap();
        assert!(!live.refresh());
        assert_eq!(
            *crate::proxy_token::read(&dirs).unwrap().unwrap(),
            *first,
            "the proxy's token is put back"
        );

        std::fs::remove_file(dirs.proxy_token_file()).unwrap();
        let second = crate::proxy_token::ensure_token(&dirs).unwrap();
        assert_ne!(*second, *first);
        assert!(!live.admits(&map(&second)));
        assert!(live.admits_after_refresh(&map(&second)));
        assert!(!live.admits(&map(&first)));
    }
}
