//! A keyring-core store for the freedesktop Secret Service over a *plain* session ([`bus`]).
//!
//! Why not `dbus-secret-service-keyring-store`: it always negotiates an encrypted
//! (Diffie-Hellman) session, which is most of the cost of reading one secret (measured: 6.1 ms
//! against 2.4 ms for a plain session), and `get` runs on every Claude Code start and refresh.
//! The transport encryption only protects the secret from other readers of the user's own
//! session bus, who could ask the Secret Service for it anyway; libsecret itself falls back to
//! plain sessions. See docs/security.md.
//!
//! Entries use the attributes `service` and `username`, like the keyring crates and
//! `secret-tool lookup service keyswitch username NAME`. Nothing here ever prompts: a locked
//! collection is an error, not an unlock dialog that would hang Claude Code; and nothing waits
//! on the bus longer than [`DEADLINE`].

use std::collections::HashMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use keyring_core::api::{Credential, CredentialApi, CredentialStoreApi};
use keyring_core::{Entry, Error, Result};
use zeroize::Zeroizing;

mod bus;

use bus::{Bus, Fault, ItemPath};

/// How long any one keychain operation, connecting included, may take. libdbus gives each
/// method call 2 s, but its connection handshake has no limit at all: a bus that accepts the
/// connection and never answers (a stopped dbus-daemon) would hang `get` — and Claude Code —
/// for good. So every operation runs on a worker thread and is abandoned after this long; the
/// process ends soon after, taking the stuck thread with it.
pub const DEADLINE: Duration = Duration::from_secs(3);

type Shared = Arc<Mutex<Bus>>;

pub struct Store {
    ss: Shared,
}

impl Store {
    pub fn connect() -> Result<Arc<Self>> {
        let ss = bounded(|| Bus::connect().map_err(failure))?;
        Ok(Arc::new(Self {
            ss: Arc::new(Mutex::new(ss)),
        }))
    }
}

/// Runs `work` on a worker thread and waits for it at most [`DEADLINE`].
fn bounded<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    let (sender, receiver) = mpsc::sync_channel(1);
    thread::Builder::new()
        .name("secret-service".to_string())
        .spawn(move || {
            let _ = sender.send(work());
        })
        .map_err(|e| Error::PlatformFailure(Box::new(e)))?;
    match receiver.recv_timeout(DEADLINE) {
        Ok(result) => result,
        Err(RecvTimeoutError::Timeout) => Err(Error::PlatformFailure(
            format!(
                "the Secret Service did not answer within {} s; its D-Bus session bus or keyring daemon is stuck",
                DEADLINE.as_secs()
            )
            .into(),
        )),
        Err(RecvTimeoutError::Disconnected) => Err(Error::PlatformFailure(
            "the Secret Service call ended without an answer".into(),
        )),
    }
}

impl CredentialStoreApi for Store {
    fn vendor(&self) -> String {
        "keyswitch plain-session Secret Service store".to_string()
    }

    fn id(&self) -> String {
        "keyswitch-secret-service".to_string()
    }

    fn build(
        &self,
        service: &str,
        user: &str,
        _modifiers: Option<&HashMap<&str, &str>>,
    ) -> Result<Entry> {
        Ok(Entry::new_with_credential(Arc::new(Cred {
            ss: self.ss.clone(),
            service: service.to_string(),
            user: user.to_string(),
        })))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

struct Cred {
    ss: Shared,
    service: String,
    user: String,
}

/// What a worker needs to find this credential's items, owned so it can outlive the caller.
struct Target {
    ss: Shared,
    service: String,
    user: String,
}

impl Target {
    fn attributes(&self) -> HashMap<&str, &str> {
        HashMap::from([
            ("service", self.service.as_str()),
            ("username", self.user.as_str()),
        ])
    }

    /// Runs `f` on every unlocked item matching this credential (a secret may sit in more than
    /// one collection, e.g. `login` and `session`); `NoEntry` when there is none.
    fn with_items<T>(&self, f: impl FnOnce(&Bus, &[ItemPath]) -> Result<T>) -> Result<T> {
        let ss = self.ss.lock().map_err(|_| poisoned())?;
        let found = ss.search(&self.attributes()).map_err(failure)?;
        match (found.unlocked.is_empty(), found.locked.is_empty()) {
            (false, _) => f(&ss, &found.unlocked),
            (true, false) => Err(locked()),
            (true, true) => Err(Error::NoEntry),
        }
    }
}

impl Cred {
    /// Runs `f` against this credential on a worker thread, bounded by [`DEADLINE`].
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Target) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let target = Target {
            ss: self.ss.clone(),
            service: self.service.clone(),
            user: self.user.clone(),
        };
        bounded(move || f(&target))
    }
}

impl CredentialApi for Cred {
    fn set_secret(&self, secret: &[u8]) -> Result<()> {
        let secret = Zeroizing::new(secret.to_vec());
        self.run(move |target| {
            // Every copy gets the new secret, so no collection keeps serving the old one.
            let updated = target.with_items(|ss, items| {
                for item in items {
                    ss.set_secret(item, &secret).map_err(failure)?;
                }
                Ok(())
            });
            match updated {
                Err(Error::NoEntry) => {}
                other => return other,
            }
            let ss = target.ss.lock().map_err(|_| poisoned())?;
            let collection = ss.writable_collection().map_err(failure)?;
            let label = format!("keyswitch: {} ({})", target.user, target.service);
            ss.create_item(&collection, &label, &target.attributes(), &secret)
                .map_err(failure)
        })
    }

    fn get_secret(&self) -> Result<Vec<u8>> {
        self.run(|target| {
            target.with_items(|ss, items| {
                // keyring-core hands the secret on as a plain Vec; the copy read off the bus
                // is wiped here.
                ss.secret(&items[0])
                    .map(|secret| secret.to_vec())
                    .map_err(failure)
            })
        })
    }

    /// Deletes every matching item, so no copy (say, in the `session` collection) survives a
    /// `remove` that reported the secret deleted. Locked copies are an error: they remain.
    fn delete_credential(&self) -> Result<()> {
        self.run(|target| {
            target.with_items(|ss, items| {
                for item in items {
                    ss.delete(item).map_err(failure)?;
                }
                let rest = ss.search(&target.attributes()).map_err(failure)?;
                if rest.locked.is_empty() && rest.unlocked.is_empty() {
                    Ok(())
                } else {
                    Err(locked())
                }
            })
        })
    }

    fn get_credential(&self) -> Result<Option<Arc<Credential>>> {
        self.run(|target| target.with_items(|_, _| Ok(None)))
    }

    fn get_specifiers(&self) -> Option<(String, String)> {
        Some((self.service.clone(), self.user.clone()))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

fn failure(fault: Fault) -> Error {
    match fault {
        Fault::Locked => locked(),
        other => Error::PlatformFailure(Box::new(other)),
    }
}

fn locked() -> Error {
    Error::NoStorageAccess("the Secret Service collection is locked".into())
}

fn poisoned() -> Error {
    Error::PlatformFailure(
        "the Secret Service connection was poisoned by an earlier failure".into(),
    )
}
