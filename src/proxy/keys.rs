//! The proxy's view of the pool, shared by every request.
//!
//! - The config and state files are read again whenever either changes on disk (a stat per
//!   request), so `mark-exhausted`, `reset`, `move`, `remove` and `add` apply to the very next
//!   request. A config that stops parsing (an editor's half-written save) is said once in the
//!   proxy's log and the last good one serves on until the file parses again: one broken save
//!   must not fail every request of every session.
//! - A key that fails is marked in memory at once, so the request can move on to the next key
//!   within microseconds, and written to the state file (lock, fsync) on a blocking thread; the
//!   in-memory mark is dropped once the state file holds it. Concurrent failures on one key make
//!   one mark.
//! - Secrets are read from the keychain on first use and kept in zeroizing memory until the state
//!   says a secret changed (`add`, `add --replace`, `remove`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Result, anyhow};
use jiff::Timestamp;
use zeroize::Zeroizing;

use super::whole_seconds_now;
use crate::config::Config;
use crate::cooldown::is_cooling;
use crate::failure::Failure;
use crate::gateway::seen::Gateway;
use crate::paths::Dirs;
use crate::pool::{Mark, Pool};
use crate::reason::{Cause, Source};
use crate::select::Availability;
use crate::state::{Cooldown, State};
use crate::store::{Keychain, NotText};

pub type Secret = Arc<Zeroizing<String>>;

/// A mark not yet written gives way to the state file once the file changes and this long has
/// passed: writing a mark takes milliseconds, so an older one is a write that failed.
const PENDING_GRACE: Duration = Duration::from_secs(2);

/// How long an answer of [`KeyPool::keychain_readable`] stands.
const KEYCHAIN_CHECK_EVERY: Duration = Duration::from_secs(5);
/// How long a health probe waits for the keychain's answer.
const KEYCHAIN_CHECK_WAIT: Duration = Duration::from_millis(500);

/// The keychain trouble of a request, naming where the fix is: the proxy's environment is the
/// one it was started in (an ssh shell without the session's D-Bus, a login before the keyring
/// ran), which may not be the session's, so "start a Secret Service" would send the user after
/// a service that runs.
fn unreadable_from_here(kind: crate::config::StoreKind, error: &anyhow::Error) -> anyhow::Error {
    let cause = match kind {
        crate::config::StoreKind::SecretService
            if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() =>
        {
            "the proxy was started where the keychain was unreachable (no DBUS_SESSION_BUS_ADDRESS in its environment)"
        }
        crate::config::StoreKind::SecretService => {
            "the proxy was started where the keychain was unreachable (another session's DBUS_SESSION_BUS_ADDRESS?), or the keychain stopped or locked since"
        }
        _ => {
            "the proxy was started where the keychain was unreachable (outside your login session?), or the keychain locked since"
        }
    };
    // The store's own remedy ("cannot use X (detail): start a Secret Service …") is for a
    // session without one; here only its "cannot use X (detail)" is news.
    let said = crate::error::one_line(error);
    let said = said
        .split_once("): ")
        .map_or(said.clone(), |(head, _)| format!("{head})"));
    anyhow!(
        "the proxy cannot read the keychain: {cause}: run `keyswitch proxy restart` in your session, or the next `keyswitch get` replaces it ({said})"
    )
}

/// Enough of a file's metadata to notice it was replaced or changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileId {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    inode: u64,
}

pub(super) fn file_id(path: &Path) -> Option<FileId> {
    let meta = std::fs::metadata(path).ok()?;
    Some(FileId {
        len: meta.len(),
        modified: meta.modified().ok(),
        #[cfg(unix)]
        inode: std::os::unix::fs::MetadataExt::ino(&meta),
    })
}

/// The config and state as last read.
pub struct Files {
    config_id: Option<FileId>,
    state_id: Option<FileId>,
    pub config: Config,
    pub state: State,
}

/// What one request sees: the files, plus where each key stands now (in-memory marks included).
pub struct View {
    pub files: Arc<Files>,
    pub availability: Vec<Availability>,
}

#[derive(Default)]
struct Secrets {
    epoch: u64,
    by_name: HashMap<String, Secret>,
}

pub struct KeyPool {
    dirs: Dirs,
    /// Looked at on every request: made once.
    config_path: PathBuf,
    state_path: PathBuf,
    files: Mutex<Option<Arc<Files>>>,
    /// Marks not yet in the state file, with when they were made.
    pending: Mutex<HashMap<String, (Cooldown, Instant)>>,
    secrets: Mutex<Secrets>,
    keychain: Mutex<Option<Arc<Keychain>>>,
    /// The last answer of [`KeyPool::keychain_readable`], and when it was found.
    keychain_check: Mutex<Option<(Instant, bool)>>,
    recording_switch: AtomicBool,
    /// The gateway last noted at each endpoint, so the note is written only when it changes.
    gateways: Mutex<HashMap<String, String>>,
    /// Why the config file on disk is not the one in use, while it does not parse.
    config_trouble: Mutex<Option<ConfigTrouble>>,
}

/// A config file that does not parse, while the proxy serves from the last one that did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigTrouble {
    /// Since when the file on disk has not parsed.
    pub since: Timestamp,
    /// The parse error, naming the file and the place.
    pub problem: String,
}

/// A poisoned lock only means another request panicked; the data (a cache) is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl KeyPool {
    pub fn new(dirs: Dirs) -> Arc<Self> {
        Arc::new(Self {
            config_path: dirs.config_file(),
            state_path: dirs.state_file(),
            dirs,
            files: Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
            secrets: Mutex::new(Secrets::default()),
            keychain: Mutex::new(None),
            keychain_check: Mutex::new(None),
            recording_switch: AtomicBool::new(false),
            gateways: Mutex::new(HashMap::new()),
            config_trouble: Mutex::new(None),
        })
    }

    /// The folders this pool reads.
    pub fn dirs(&self) -> &Dirs {
        &self.dirs
    }

    /// Why the config in use is not the file on disk, while that file does not parse: for
    /// `doctor` (through the health answer) to say so.
    pub fn config_trouble(&self) -> Option<ConfigTrouble> {
        lock(&self.config_trouble).clone()
    }

    /// The pool as it stands at `now`.
    pub fn view(&self, now: Timestamp) -> Result<View> {
        let files = self.files()?;
        let pending = lock(&self.pending);
        let availability = files
            .config
            .keys
            .iter()
            .map(|k| {
                let cooldown = pending
                    .get(&k.name)
                    .map(|(c, _)| c)
                    .or_else(|| files.state.cooldowns.get(&k.name));
                Availability::of(cooldown, now)
            })
            .collect();
        Ok(View {
            files,
            availability,
        })
    }

    fn files(&self) -> Result<Arc<Files>> {
        let (config_path, state_path) = (&self.config_path, &self.state_path);
        let config_id = file_id(config_path);
        let state_id = file_id(state_path);
        let mut cached = lock(&self.files);
        if let Some(files) = cached.as_ref()
            && files.config_id == config_id
            && files.state_id == state_id
        {
            return Ok(files.clone());
        }
        let config = match cached.as_ref() {
            // Only the state changed (the common case: a mark): the config is still the one read.
            Some(files) if files.config_id == config_id => files.config.clone(),
            last => self.load_config(last.map(|files| &files.config))?,
        };
        let (state, damaged) = State::load(state_path, whole_seconds_now(), false)?;
        // The state changed on disk: it is the truth again for marks older than a write takes.
        // A mark whose write failed must not outlive a `reset` the user makes meanwhile.
        lock(&self.pending).retain(|_, (_, made)| made.elapsed() < PENDING_GRACE);
        if let Some(damaged) = damaged {
            say!("{}", damaged.warning());
        }
        {
            let mut secrets = lock(&self.secrets);
            if secrets.epoch != state.secrets_epoch {
                secrets.by_name.clear();
                secrets.epoch = state.secrets_epoch;
            }
        }
        let files = Arc::new(Files {
            config_id,
            state_id,
            config,
            state,
        });
        *cached = Some(files.clone());
        Ok(files)
    }

    /// The config file as it is now; the last good one (`last_good`) while the file does not
    /// parse, said in the log once per change of the file, not per request: the file's id is
    /// kept with the config in use, so a broken file is parsed again only when it changes.
    fn load_config(&self, last_good: Option<&Config>) -> Result<Config> {
        let had_keys = last_good.is_some_and(|c| !c.keys.is_empty());
        let loaded = if had_keys && !self.config_path.exists() {
            // An editor that renames the file away before it writes the new one (vim without
            // `backupcopy`) leaves a moment with no file: not "no keys yet" for every request.
            Err(anyhow!(
                "the config file {} is missing (moved away mid-save?)",
                self.config_path.display()
            ))
        } else {
            Config::load(&self.config_path)
        };
        let mut trouble = lock(&self.config_trouble);
        match (loaded, last_good) {
            (Ok(config), _) => {
                if trouble.take().is_some() {
                    say!(
                        "keyswitch: the config file {} parses again; the proxy now uses it",
                        self.config_path.display()
                    );
                }
                Ok(config)
            }
            (Err(e), Some(last_good)) => {
                let problem = crate::error::one_line(&e);
                crate::messages::warn(format_args!(
                    "{problem}; the proxy keeps serving from the config it last read until the file parses again"
                ));
                let since = trouble.as_ref().map_or_else(whole_seconds_now, |t| t.since);
                *trouble = Some(ConfigTrouble { since, problem });
                Ok(last_good.clone())
            }
            (Err(e), None) => Err(e),
        }
    }

    /// The secret of `name`; `None` when the keychain has none. Reads the keychain (on a
    /// blocking thread) only the first time.
    pub async fn secret(self: &Arc<Self>, name: &str) -> Result<Option<Secret>> {
        if let Some(secret) = lock(&self.secrets).by_name.get(name) {
            return Ok(Some(secret.clone()));
        }
        let epoch = lock(&self.secrets).epoch;
        let this = self.clone();
        let owned = name.to_string();
        let read = tokio::task::spawn_blocking(move || this.read_secret(&owned))
            .await
            .map_err(|e| anyhow!("the keychain read was interrupted: {e}"))??;
        if let Some(secret) = &read {
            let mut secrets = lock(&self.secrets);
            // A secret that changed while this read ran is not cached under the new epoch.
            if secrets.epoch == epoch {
                secrets.by_name.insert(name.to_string(), secret.clone());
            }
        }
        Ok(read)
    }

    fn read_secret(&self, name: &str) -> Result<Option<Secret>> {
        let keychain = {
            let mut slot = lock(&self.keychain);
            match slot.as_ref() {
                Some(k) => k.clone(),
                None => {
                    let config = &self.files()?.config;
                    let opened = Arc::new(
                        Keychain::open(config.store_kind(), config.keychain_service())
                            .map_err(|e| unreadable_from_here(config.store_kind(), &e))?,
                    );
                    *slot = Some(opened.clone());
                    opened
                }
            }
        };
        match keychain.read(name) {
            Ok(secret) => Ok(secret.map(Arc::new)),
            // Bytes that are no key: the key's problem, not the keychain's (it works).
            Err(e) if NotText::is(&e) => Err(e),
            Err(e) => {
                // Connect again next time: the keychain may have been restarted or unlocked.
                *lock(&self.keychain) = None;
                Err(unreadable_from_here(keychain.kind(), &e))
            }
        }
    }

    /// Whether the proxy can read the keychain: the first key's secret comes (from the cache,
    /// once read) or the keychain says it has none. Looked at again at most every
    /// [`KEYCHAIN_CHECK_EVERY`], so a `get` probing on every call costs no keychain read, and
    /// given up on after [`KEYCHAIN_CHECK_WAIT`] (a health probe must answer within the
    /// client's time limit; a hung keychain is not a broken environment).
    pub async fn keychain_readable(self: &Arc<Self>) -> bool {
        if let Some((at, readable)) = *lock(&self.keychain_check)
            && at.elapsed() < KEYCHAIN_CHECK_EVERY
        {
            return readable;
        }
        let Some(first) = self
            .files()
            .ok()
            .and_then(|f| f.config.keys.first().map(|k| k.name.clone()))
        else {
            // No keys, or config trouble: nothing about the keychain to say.
            return true;
        };
        let readable = tokio::time::timeout(KEYCHAIN_CHECK_WAIT, self.secret(&first))
            .await
            .map_or(true, |read| {
                read.as_ref().map_or_else(NotText::is, |_| true)
            });
        *lock(&self.keychain_check) = Some((Instant::now(), readable));
        readable
    }

    /// Marks `name` as failed. Returns false when it already is (another request, or the CLI,
    /// got there first), or when the failure is not the key's: then nothing more is written.
    pub fn mark(
        self: &Arc<Self>,
        name: &str,
        failure: &Failure,
        session: Option<String>,
        now: Timestamp,
    ) -> bool {
        let Some(mark) = failure.mark(Source::Proxy, Some(failure.detail().to_string())) else {
            return false;
        };
        let Ok(files) = self.files() else {
            return false;
        };
        let Some(key) = files.config.keys.iter().find(|k| k.name == name) else {
            return false;
        };
        {
            let mut pending = lock(&self.pending);
            if pending.contains_key(name) {
                return false;
            }
            let previous = files.state.cooldowns.get(name);
            if previous.is_some_and(|c| is_cooling(c, now)) {
                return false;
            }
            let cooldown = mark.cooldown(&files.config, key, previous, now);
            pending.insert(name.to_string(), (cooldown, Instant::now()));
        }
        let this = self.clone();
        let name = name.to_string();
        let notable = failure.notable();
        tokio::task::spawn_blocking(move || this.persist(&name, &mark, notable, session, now));
        true
    }

    fn persist(
        &self,
        name: &str,
        mark: &Mark,
        notable: bool,
        session: Option<String>,
        now: Timestamp,
    ) {
        // A failed write (a lock file in the way, a full disk for a moment) is tried again
        // before the mark is left to memory alone.
        let mut result = self.write_mark(name, mark, session.as_deref(), now);
        for _ in 0..2 {
            if result.is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
            result = self.write_mark(name, mark, session.as_deref(), now);
        }
        self.after_write(name, mark, notable, result);
    }

    fn write_mark(
        &self,
        name: &str,
        mark: &Mark,
        session: Option<&str>,
        now: Timestamp,
    ) -> Result<Option<String>> {
        let mut pool = Pool::lock(self.dirs.clone(), now)?;
        let Some(index) = pool.config().position(name) else {
            return Ok(None);
        };
        let switched = pool.mark(index, mark, session, now).switched_to;
        pool.commit()?;
        Ok(switched)
    }

    fn after_write(&self, name: &str, mark: &Mark, notable: bool, result: Result<Option<String>>) {
        match result {
            Ok(switched) => {
                // The state file now holds the mark (or the key is gone): it is the truth again.
                lock(&self.pending).remove(name);
                if notable {
                    let next = switched.unwrap_or_else(|| "the next key".to_string());
                    crate::notify::notify(
                        &format!("keyswitch: {name} is out; answering from {next}"),
                        &format!(
                            "{}. Nothing to resend: the proxy retried the request.",
                            mark.note.as_deref().unwrap_or_default()
                        ),
                    );
                }
            }
            Err(e) => crate::messages::warn(format!(
                "could not record that {name} ran out (kept in memory): {}",
                crate::error::one_line(&e)
            )),
        }
    }

    /// Notes the gateway an answer from `endpoint` names (see [`crate::gateway::seen`]), in the
    /// background and only when it is new.
    pub fn note_gateway(
        self: &Arc<Self>,
        endpoint: &crate::endpoint::Endpoint,
        header: &dyn Fn(&str) -> Option<String>,
    ) {
        let Some(gateway) = Gateway::named_in(header, whole_seconds_now()) else {
            return;
        };
        let described = gateway.describe();
        {
            let mut known = lock(&self.gateways);
            if known.get(endpoint.as_str()) == Some(&described) {
                return;
            }
            known.insert(endpoint.as_str().to_string(), described);
        }
        let path = self.dirs.gateways_seen();
        let endpoint = endpoint.to_string();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = crate::gateway::seen::note(&path, &endpoint, gateway) {
                crate::messages::warn_failed("note which gateway answered", &e);
            }
        });
    }

    /// Records a change of active key the proxy noticed (a cooldown that ended), in the
    /// background and only if the lock is free, as `get` does in helper mode.
    pub fn note_active(self: &Arc<Self>, name: &str, files: &Files) {
        if files.state.last_active.as_deref() == Some(name)
            || self.recording_switch.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let now = whole_seconds_now();
            let result = (|| -> Result<()> {
                let Some(mut pool) = Pool::try_lock(this.dirs.clone(), now)? else {
                    return Ok(());
                };
                if pool.note_switch(now, &Cause::CooldownEnded, None).is_some() {
                    pool.commit()?;
                }
                Ok(())
            })();
            if let Err(e) = result {
                crate::messages::warn_failed("record a switch", &e);
            }
            this.recording_switch.store(false, Ordering::Release);
        });
    }
}

#[cfg(test)]
impl KeyPool {
    /// The config file this pool reads, for a test to change.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// A pool whose secrets come from `keychain` (a test's mock store), not the config's.
    pub fn with_keychain(dirs: Dirs, keychain: Keychain) -> Arc<Self> {
        let pool = Self::new(dirs);
        *lock(&pool.keychain) = Some(Arc::new(keychain));
        pool
    }
}
