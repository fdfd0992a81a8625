//! `store-compare STORE SERVICE USER`: reads one secret through STORE and prints its length
//! (never the secret). STORE is one of:
//! - `libdbus-dh`: dbus-secret-service-keyring-store (libdbus, encrypted session)
//! - `zbus-dh`:    zbus-secret-service-keyring-store (zbus, encrypted session)
//! - `keyswitch`:  keyswitch's own store (libdbus, plain session), through `Keychain` as `get` uses it

use std::process::ExitCode;
use std::sync::Arc;

use keyring_core::{CredentialStore, Entry};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, store, service, user] = args.as_slice() else {
        eprintln!("usage: store-compare libdbus-dh|zbus-dh|keyswitch SERVICE USER");
        return ExitCode::from(2);
    };
    let length = match store.as_str() {
        "keyswitch" => keyswitch::bench::Keychain::open(
            keyswitch::bench::StoreKind::SecretService,
            service,
        )
        .and_then(|k| k.read(user))
        .map(|s| s.map_or(0, |s| s.len()))
        .map_err(|e| e.to_string()),
        "libdbus-dh" => read_with(dbus_secret_service_keyring_store::Store::new(), service, user),
        "zbus-dh" => read_with(zbus_secret_service_keyring_store::Store::new(), service, user),
        other => Err(format!("unknown store {other}")),
    };
    match length {
        Ok(n) => {
            println!("{n}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("store-compare: {e}");
            ExitCode::FAILURE
        }
    }
}

fn read_with<S: keyring_core::api::CredentialStoreApi + Send + Sync + 'static>(
    store: keyring_core::Result<Arc<S>>,
    service: &str,
    user: &str,
) -> Result<usize, String> {
    let store: Arc<CredentialStore> = store.map_err(|e| e.to_string())?;
    let entry = Entry::new_in_store(&store, service, user).map_err(|e| e.to_string())?;
    entry.get_secret().map(|s| s.len()).map_err(|e| e.to_string())
}
