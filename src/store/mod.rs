//! The keychain, behind keyring-core's store interface so that which store (and how it talks to
//! the OS) is decided here and nowhere else. Secrets are held in zeroizing buffers.

mod advice;
mod macos;
#[cfg(target_os = "linux")]
mod secret_service;
mod windows;

pub use macos::{forbid_dialogs, without_dialogs};

use std::sync::Arc;

use anyhow::{Result, anyhow};
use keyring_core::{CredentialStore, Entry, Error as KeyringError};
use zeroize::Zeroizing;

use crate::config::StoreKind;

/// An open keychain and the service name keyswitch's entries live under.
pub struct Keychain {
    store: Arc<CredentialStore>,
    service: String,
    kind: StoreKind,
}

impl Keychain {
    /// Connects to the configured keychain. Fails within seconds, never waiting on an unlock
    /// prompt, with a message that names the keychain and how to make it available.
    pub fn open(kind: StoreKind, service: &str) -> Result<Self> {
        let store = open_store(kind).map_err(|e| unreachable_error(kind, &e))?;
        Ok(Self::with_store(store, kind, service))
    }

    /// Uses an already built store: the pure-logic tests pass keyring-core's mock store here.
    pub fn with_store(store: Arc<CredentialStore>, kind: StoreKind, service: &str) -> Self {
        Self {
            store,
            service: service.to_string(),
            kind,
        }
    }

    /// The same keychain under another service name (`reauthorize` keeps safety copies there).
    pub fn with_service(&self, service: &str) -> Self {
        Self::with_store(self.store.clone(), self.kind, service)
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    fn entry(&self, name: &str) -> Result<Entry> {
        Entry::new_in_store(&self.store, &self.service, name).map_err(|e| {
            anyhow!(
                "{} cannot hold an entry named {name}: {e}",
                self.kind.describe()
            )
        })
    }

    /// The secret stored for `name`, or `None` when there is none; a secret that is not UTF-8
    /// (stored by another program) is a `NotText` error, which `get` passes over.
    pub fn read(&self, name: &str) -> Result<Option<Zeroizing<String>>> {
        match self.entry(name)?.get_secret() {
            Ok(bytes) => {
                let bytes = Zeroizing::new(bytes);
                let text = std::str::from_utf8(&bytes).map_err(|_| {
                    anyhow::Error::new(NotText {
                        name: name.to_string(),
                        store: self.kind.describe().to_string(),
                    })
                })?;
                Ok(Some(Zeroizing::new(text.to_string())))
            }
            Err(KeyringError::NoEntry) => Ok(None),
            Err(e) => Err(self.access_error(&e)),
        }
    }

    pub fn write(&self, name: &str, secret: &str) -> Result<()> {
        windows::check_fits(self.kind, secret)?;
        self.entry(name)?
            .set_secret(secret.as_bytes())
            .map_err(|e| self.access_error(&e))
    }

    /// Deletes the secret; `Ok(false)` when there was none.
    pub fn delete(&self, name: &str) -> Result<bool> {
        match self.entry(name)?.delete_credential() {
            Ok(()) => Ok(true),
            Err(KeyringError::NoEntry) => Ok(false),
            Err(e) => Err(self.access_error(&e)),
        }
    }

    fn access_error(&self, error: &KeyringError) -> anyhow::Error {
        unreachable_error(self.kind, error)
    }

    pub fn kind(&self) -> StoreKind {
        self.kind
    }
}

fn open_store(kind: StoreKind) -> keyring_core::Result<Arc<CredentialStore>> {
    match kind {
        #[cfg(target_os = "linux")]
        StoreKind::SecretService => Ok(secret_service::Store::connect()?),
        #[cfg(target_os = "linux")]
        StoreKind::Keyutils => Ok(linux_keyutils_keyring_store::Store::new()?),
        #[cfg(target_os = "macos")]
        StoreKind::MacosKeychain => Ok(apple_native_keyring_store::keychain::Store::new()?),
        #[cfg(windows)]
        StoreKind::WindowsCredentialManager => Ok(windows_native_keyring_store::Store::new()?),
        #[allow(unreachable_patterns)]
        other => Err(KeyringError::NotSupportedByStore(format!(
            "{} is not available on this platform",
            other.describe()
        ))),
    }
}

/// The message for a keychain that cannot be used, with the way to make it usable.
fn unreachable_error(kind: StoreKind, error: &KeyringError) -> anyhow::Error {
    let detail = error.to_string();
    let remedy = match kind {
        StoreKind::SecretService => match error {
            KeyringError::NoStorageAccess(_) => {
                "the keyring is locked: unlock it (log in to your desktop session, or unlock the \"login\" keyring in your keyring manager, e.g. Seahorse)".to_string()
            }
            _ => format!(
                "no Secret Service answers in this session: {}",
                advice::no_secret_service(
                    crate::paths::Dirs::from_env()
                        .ok()
                        .map(|d| d.config_file())
                        .as_deref()
                )
            ),
        },
        StoreKind::Keyutils => {
            "check that the kernel keyutils store is usable here (`keyctl show @u`)".to_string()
        }
        StoreKind::MacosKeychain => macos::status(error)
            .and_then(macos::remedy)
            .unwrap_or("unlock your login keychain (Keychain Access) and try again")
            .to_string(),
        StoreKind::WindowsCredentialManager => {
            "check that the Windows Credential Manager is available to your user".to_string()
        }
    };
    anyhow!("cannot use {} ({detail}): {remedy}", kind.describe())
}

/// A stored secret that is not text: no usable key, though the keychain itself works.
#[derive(Debug)]
pub struct NotText {
    name: String,
    store: String,
}

impl std::fmt::Display for NotText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the secret of {} in {} is not text: replace it with `keyswitch add {} --replace`",
            self.name, self.store, self.name
        )
    }
}

impl std::error::Error for NotText {}

impl NotText {
    /// Whether `error` is a stored secret that is not text: the key's problem, not the
    /// keychain's, so a caller passes over the key rather than failing.
    pub fn is(error: &anyhow::Error) -> bool {
        error.downcast_ref::<Self>().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mock() -> Keychain {
        let store: Arc<CredentialStore> = keyring_core::mock::Store::new().unwrap();
        Keychain::with_store(store, StoreKind::SecretService, "keyswitch-test")
    }

    #[test]
    fn write_read_delete() {
        let keychain = mock();
        assert!(keychain.read("a").unwrap().is_none());
        keychain.write("a", "sk-ant-test-one").unwrap();
        assert_eq!(
            keychain.read("a").unwrap().unwrap().as_str(),
            "sk-ant-test-one"
        );
        keychain.write("a", "sk-ant-test-two").unwrap();
        assert_eq!(
            keychain.read("a").unwrap().unwrap().as_str(),
            "sk-ant-test-two"
        );
        assert!(keychain.delete("a").unwrap());
        assert!(!keychain.delete("a").unwrap());
    }

    #[test]
    fn credential_manager_refuses_a_secret_it_cannot_hold_and_keeps_the_old_one() {
        let store: Arc<CredentialStore> = keyring_core::mock::Store::new().unwrap();
        let keychain =
            Keychain::with_store(store, StoreKind::WindowsCredentialManager, "keyswitch-test");
        let longest = "k".repeat(windows::MAX_CREDENTIAL_BLOB);
        keychain.write("a", &longest).unwrap();
        let error = keychain.write("a", &format!("{longest}k")).unwrap_err();
        assert!(error.downcast_ref::<crate::error::Refused>().is_some());
        assert!(error.to_string().contains("holds at most 2560"), "{error}");
        assert_eq!(keychain.read("a").unwrap().unwrap().as_str(), longest);
        // The other stores take what Claude Code accepts.
        mock().write("a", &"k".repeat(16_384)).unwrap();
    }
}
