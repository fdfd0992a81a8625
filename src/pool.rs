//! The pool as commands see it: the config and the state read together, either as a reader
//! (no lock, never waits) or as the one writer (holding the lock from read to write), plus the
//! derived facts every command needs — which key is active, where each key stands.

use anyhow::Result;
use jiff::Timestamp;

use crate::config::Config;
use crate::cooldown::{as_of_clock, clock_was_set_back};
use crate::error::refuse;
use crate::events::{self, Event};
use crate::fileio::{WriteLock, sweep_stale_temp_files};
use crate::paths::Dirs;
use crate::select::{Availability, candidates};
use crate::state::State;

pub struct Pool {
    pub dirs: Dirs,
    pub config: Config,
    pub state: State,
    pending_events: Vec<Event>,
    lock: Option<WriteLock>,
}

impl Pool {
    /// Reads without the lock, for commands that only look. A damaged state file is reported on
    /// stderr; it is moved aside only if the lock happens to be free, so the warning comes once.
    pub fn read(dirs: Dirs, now: Timestamp) -> Result<Self> {
        let (state, damaged) = State::load(&dirs.state_file(), now, false)?;
        let Some(damaged) = damaged else {
            if state.cooldowns.values().any(|c| clock_was_set_back(c, now)) {
                return Self::read_after_clock_fix(dirs, state, now);
            }
            return Self::assemble(dirs, state, None);
        };
        // Read again under the lock, which sets the bad file aside (or finds it repaired). A
        // lock that cannot even be taken (the state folder is a file) only means no repair.
        if let Ok(Some(mut locked)) = Self::try_lock(dirs.clone(), now) {
            locked.lock = None;
            return Ok(locked);
        }
        eprintln!("{}", damaged.warning());
        Self::assemble(dirs, state, None)
    }

    /// The clock was set back past the start of some cooldown: writes them as the clock now
    /// allows (see [`as_of_clock`]) if the lock is free, so they end within their length of
    /// *this* moment rather than of every later one. Readers clamp meanwhile.
    fn read_after_clock_fix(dirs: Dirs, state: State, now: Timestamp) -> Result<Self> {
        let repaired = (|| -> Result<Option<Self>> {
            let Some(mut locked) = Self::try_lock(dirs.clone(), now)? else {
                return Ok(None);
            };
            locked.commit()?;
            locked.lock = None;
            Ok(Some(locked))
        })();
        match repaired {
            Ok(Some(pool)) => Ok(pool),
            Ok(None) => Self::assemble(dirs, state, None),
            Err(e) => {
                eprintln!(
                    "keyswitch: warning: could not save cooldowns after the clock was set back: {}",
                    crate::error::one_line(&e)
                );
                Self::assemble(dirs, state, None)
            }
        }
    }

    /// Takes the writer lock, then reads: what is read cannot change until [`Pool::commit`].
    pub fn lock(dirs: Dirs, now: Timestamp) -> Result<Self> {
        let lock = WriteLock::acquire(&dirs.lock_file())?;
        Self::read_locked(dirs, now, lock)
    }

    /// Like [`Pool::lock`], but `None` at once when another process holds the lock.
    pub fn try_lock(dirs: Dirs, now: Timestamp) -> Result<Option<Self>> {
        match WriteLock::try_acquire(&dirs.lock_file())? {
            Some(lock) => Ok(Some(Self::read_locked(dirs, now, lock)?)),
            None => Ok(None),
        }
    }

    fn read_locked(dirs: Dirs, now: Timestamp, lock: WriteLock) -> Result<Self> {
        let (mut state, damaged) = State::load(&dirs.state_file(), now, true)?;
        if let Some(d) = damaged {
            eprintln!("{}", d.warning());
        }
        let mut clock_fixes = Vec::new();
        for (name, cooldown) in &mut state.cooldowns {
            if clock_was_set_back(cooldown, now) {
                clock_fixes.push(
                    Event::new(now, "clock-set-back", Some(name), Some(&cooldown.reason))
                        .with_detail(format!("cooldown had started {}", cooldown.since)),
                );
                *cooldown = as_of_clock(cooldown, now);
            }
        }
        let mut pool = Self::assemble(dirs, state, Some(lock))?;
        pool.pending_events = clock_fixes;
        Ok(pool)
    }

    fn assemble(dirs: Dirs, state: State, lock: Option<WriteLock>) -> Result<Self> {
        Ok(Self {
            config: Config::load(&dirs.config_file())?,
            dirs,
            state,
            pending_events: Vec::new(),
            lock,
        })
    }

    pub fn availability(&self, now: Timestamp) -> Vec<Availability> {
        self.config
            .keys
            .iter()
            .map(|k| Availability::of(self.state.cooldowns.get(&k.name), now))
            .collect()
    }

    /// The order in which keys would be handed out now; the first is the active key.
    pub fn candidates(&self, now: Timestamp) -> Vec<usize> {
        candidates(&self.availability(now))
    }

    pub fn active(&self, now: Timestamp) -> Option<usize> {
        self.candidates(now).first().copied()
    }

    pub fn active_key(&self, now: Timestamp) -> Option<&crate::config::KeyConfig> {
        self.active(now).map(|i| &self.config.keys[i])
    }

    pub fn active_name(&self, now: Timestamp) -> Option<String> {
        self.active(now).map(|i| self.config.keys[i].name.clone())
    }

    /// The index of a configured key, or a refusal that lists the keys there are.
    pub fn resolve(&self, name: &str) -> Result<usize> {
        self.config.position(name).ok_or_else(|| {
            let known: Vec<&str> = self.config.keys.iter().map(|k| k.name.as_str()).collect();
            if known.is_empty() {
                refuse(format!(
                    "there is no key named {name}: no keys yet, add one with `keyswitch add NAME`"
                ))
            } else {
                refuse(format!(
                    "there is no key named {name}: the keys are {} (see `keyswitch list`)",
                    known.join(", ")
                ))
            }
        })
    }

    /// Queues an event for the log; written by [`Pool::commit`].
    pub fn log(&mut self, event: Event) {
        self.pending_events.push(event);
    }

    /// Notes a change of active key: records it and logs a `switch` event. Returns the new
    /// active key's name when it changed.
    pub fn note_switch(
        &mut self,
        now: Timestamp,
        reason: &str,
        session_id: Option<&str>,
    ) -> Option<String> {
        let active = self.active_name(now);
        if active == self.state.last_active {
            return None;
        }
        let from = self.state.last_active.take();
        self.state.last_active = active.clone();
        let detail = match &from {
            Some(from) => format!("from {from}"),
            None => "first key handed out".to_string(),
        };
        let event = Event::new(now, "switch", active.as_deref(), Some(reason))
            .with_detail(detail)
            .with_session(session_id.map(str::to_string));
        self.log(event);
        // First use is not a switch worth telling anyone about.
        from.and(active)
    }

    pub fn save_config(&self) -> Result<()> {
        self.expect_locked()?;
        self.config.save(&self.dirs.config_file())
    }

    /// Writes the state and the queued events, and sweeps what killed writers left behind.
    /// The lock stays held until the pool is dropped, so follow-up work (settings) is ordered too.
    pub fn commit(&mut self) -> Result<()> {
        self.expect_locked()?;
        self.state.save(&self.dirs.state_file())?;
        events::append(
            &self.dirs.event_log(),
            &std::mem::take(&mut self.pending_events),
        )?;
        sweep_stale_temp_files(&self.dirs.state);
        sweep_stale_temp_files(&self.dirs.config);
        Ok(())
    }

    fn expect_locked(&self) -> Result<()> {
        if self.lock.is_none() {
            anyhow::bail!(
                "internal error: a write was attempted without the lock; nothing was written"
            );
        }
        Ok(())
    }
}
