//! The handful of Secret Service calls keyswitch makes, over libdbus (the `dbus` crate) in a
//! *plain* session, in the order that keeps gnome-keyring alive.
//!
//! Why not `dbus-secret-service`: it opens the session as a client's first message to the
//! daemon. gnome-keyring 42 (Debian 12, Ubuntu 22.04–24.04) sets up its record of a new client
//! in a main-loop callback that a first method call can overtake; when `OpenSession` wins that
//! race, the daemon finds no client, asserts and aborts (`gkd_secret_service_get_pkcs11_session:
//! assertion 'client' failed`), taking every application's keyring with it. Measured: one in
//! a few hundred back-to-back `keyswitch get` runs killed it. libsecret never meets this: its
//! first message reads the service's properties. So does [`Bus::connect`] — a read that needs no
//! client record, answered from the same main loop, so by its answer the record exists.

use std::collections::HashMap;
use std::time::Duration;

use dbus::Path;
use dbus::arg::{PropMap, RefArg, Variant};
use dbus::blocking::stdintf::org_freedesktop_dbus::Properties;
use dbus::blocking::{Connection, Proxy};
use zeroize::Zeroizing;

const DESTINATION: &str = "org.freedesktop.secrets";
const SERVICE_PATH: &str = "/org/freedesktop/secrets";
const SERVICE: &str = "org.freedesktop.Secret.Service";
const COLLECTION: &str = "org.freedesktop.Secret.Collection";
const ITEM: &str = "org.freedesktop.Secret.Item";
/// What a path of `/` means in an answer: no such object, or no prompt needed.
const NOTHING: &str = "/";
/// libdbus's own default for a method call.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a call did not do what was asked.
#[derive(Debug)]
pub enum Fault {
    /// The item or collection is locked, or the service wants to prompt (never shown here).
    Locked,
    /// No collection to write to.
    NoCollection,
    Bus(dbus::Error),
}

impl From<dbus::Error> for Fault {
    fn from(error: dbus::Error) -> Self {
        match error.name() {
            Some("org.freedesktop.Secret.Error.IsLocked") => Self::Locked,
            _ => Self::Bus(error),
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Locked => f.write_str("the Secret Service collection is locked"),
            Self::NoCollection => f.write_str("the Secret Service has no collection to store in"),
            Self::Bus(error) => write!(f, "DBus error: {}", error.message().unwrap_or("unknown")),
        }
    }
}

impl std::error::Error for Fault {}

pub type Result<T> = std::result::Result<T, Fault>;

/// A Secret Service item's object path.
pub type ItemPath = Path<'static>;

/// A secret as the Secret Service passes it: session, parameters, value, content type.
type Secret<'a> = (Path<'a>, Vec<u8>, &'a [u8], &'a str);

/// A connection to the session bus with an open plain session.
pub struct Bus {
    connection: Connection,
    session: Path<'static>,
}

/// Items matching a search, as the service sorts them.
pub struct Found {
    pub unlocked: Vec<ItemPath>,
    pub locked: Vec<ItemPath>,
}

impl Bus {
    pub fn connect() -> Result<Self> {
        let connection = Connection::new_session()?;
        // First a read that needs no client record (see the module doc), then the session.
        // Its answer does not matter: a service that cannot give it fails the next call too.
        let _: std::result::Result<Vec<Path<'static>>, _> =
            service(&connection).get(SERVICE, "Collections");
        let (_, session): (Variant<Box<dyn RefArg>>, Path<'static>) =
            service(&connection).method_call(SERVICE, "OpenSession", ("plain", Variant("")))?;
        Ok(Self {
            connection,
            session,
        })
    }

    pub fn search(&self, attributes: &HashMap<&str, &str>) -> Result<Found> {
        let (unlocked, locked) =
            service(&self.connection).method_call(SERVICE, "SearchItems", (attributes,))?;
        Ok(Found { unlocked, locked })
    }

    pub fn secret(&self, item: &ItemPath) -> Result<Zeroizing<Vec<u8>>> {
        let ((_, _, value, _),): ((Path<'static>, Vec<u8>, Vec<u8>, String),) =
            self.object(item)
                .method_call(ITEM, "GetSecret", (&self.session,))?;
        Ok(Zeroizing::new(value))
    }

    pub fn set_secret(&self, item: &ItemPath, secret: &[u8]) -> Result<()> {
        let secret: Secret<'_> = (self.session.clone(), Vec::new(), secret, "text/plain");
        Ok(self
            .object(item)
            .method_call(ITEM, "SetSecret", (secret,))?)
    }

    pub fn delete(&self, item: &ItemPath) -> Result<()> {
        let (prompt,): (Path<'static>,) = self.object(item).method_call(ITEM, "Delete", ())?;
        no_prompt(&prompt)
    }

    /// The collection new items go to, as libsecret picks it: the `default` alias, else the
    /// `session` alias, else the first collection. Locked: an error, never a prompt.
    pub fn writable_collection(&self) -> Result<Path<'static>> {
        let proxy = service(&self.connection);
        let mut chosen = None;
        for alias in ["default", "session"] {
            let (path,): (Path<'static>,) = proxy.method_call(SERVICE, "ReadAlias", (alias,))?;
            if &*path != NOTHING {
                chosen = Some(path);
                break;
            }
        }
        let collection = match chosen {
            Some(path) => path,
            None => {
                let all: Vec<Path<'static>> = proxy.get(SERVICE, "Collections")?;
                all.into_iter().next().ok_or(Fault::NoCollection)?
            }
        };
        if self.object(&collection).get::<bool>(COLLECTION, "Locked")? {
            return Err(Fault::Locked);
        }
        Ok(collection)
    }

    /// Creates an item (or replaces the one with the same attributes) in `collection`.
    pub fn create_item(
        &self,
        collection: &Path<'static>,
        label: &str,
        attributes: &HashMap<&str, &str>,
        secret: &[u8],
    ) -> Result<()> {
        let attributes: HashMap<String, String> = attributes
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut properties = PropMap::new();
        properties.insert(
            format!("{ITEM}.Label"),
            Variant(Box::new(label.to_string())),
        );
        properties.insert(format!("{ITEM}.Attributes"), Variant(Box::new(attributes)));
        let secret: Secret<'_> = (self.session.clone(), Vec::new(), secret, "text/plain");
        let (_item, prompt): (Path<'static>, Path<'static>) = self.object(collection).method_call(
            COLLECTION,
            "CreateItem",
            (properties, secret, true),
        )?;
        no_prompt(&prompt)
    }

    fn object<'a>(&'a self, path: &'a Path<'static>) -> Proxy<'a, &'a Connection> {
        self.connection
            .with_proxy(DESTINATION, path.clone(), CALL_TIMEOUT)
    }
}

fn service(connection: &Connection) -> Proxy<'_, &Connection> {
    connection.with_proxy(DESTINATION, SERVICE_PATH, CALL_TIMEOUT)
}

/// A prompt would be an unlock dialog that holds Claude Code up: never shown, an error.
fn no_prompt(prompt: &Path<'_>) -> Result<()> {
    if &**prompt == NOTHING {
        Ok(())
    } else {
        Err(Fault::Locked)
    }
}
