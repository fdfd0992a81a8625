//! The pool as commands see it: the config and the state read together, either as a reader
//! (no lock, never waits) or as the one writer (holding the lock from read to write), plus the
//! derived facts every command needs — which key is active, where each key stands.

use anyhow::Result;
use jiff::Timestamp;

use crate::config::{Config, KeyConfig};
use crate::cooldown::{Length, as_of_clock, clock_was_set_back, is_cooling, next_cooldown};
use crate::error::refuse;
use crate::events::{self, Event, EventKind};
use crate::fileio::{WriteLock, sweep_stale_temp_files};
use crate::paths::Dirs;
use crate::reason::Cause;
use crate::select::{Availability, candidates};
use crate::state::{Cooldown, State};

/// The config and the state, read together. Every change goes through the methods below, each
/// of which logs its one event in its one wording; callers only report what changed.
pub struct Pool {
    pub dirs: Dirs,
    config: Config,
    state: State,
    pending_events: Vec<Event>,
    lock: Option<WriteLock>,
}

/// How long a mark lasts, as the caller asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lasting {
    /// Until this time: what the user asked for, or the reset time an upstream gave.
    Until(Timestamp),
    /// The configured cooldown for the cause (see [`Config::cooldown_for`]), doubling when the
    /// key keeps running out.
    Configured,
    /// Until the user resets or replaces the key: the upstream rejected the key itself.
    SetAside,
}

/// A mark to make: how long, why, and a few words on how the key was found or what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub lasting: Lasting,
    pub cause: Cause,
    /// Added to the event's detail, e.g. "the key this session was handed"; never a body.
    pub note: Option<String>,
}

impl Mark {
    /// The cooldown this mark gives `key` at `now`, after `previous`: pure, so the proxy can
    /// apply a mark in memory before the state file holds it.
    ///
    /// A running cooldown is never shortened (see [`next_cooldown`]). A failure reported while
    /// the key already cools down is the same spent budget another session or request met
    /// first: one mark is enough, so it changes nothing. A manual mark, or a rejection, may
    /// still lengthen a running cooldown.
    pub fn cooldown(
        &self,
        config: &Config,
        key: &KeyConfig,
        previous: Option<&Cooldown>,
        now: Timestamp,
    ) -> Cooldown {
        let once = self.cause.reason().is_some() && self.lasting != Lasting::SetAside;
        if let Some(running) = previous.filter(|c| once && is_cooling(c, now)) {
            return running.clone();
        }
        let length = match self.lasting {
            Lasting::Until(until) => Length::Explicit(until),
            Lasting::SetAside => Length::Indefinite,
            Lasting::Configured => Length::Default(config.cooldown_for(key, self.cause.reason())),
        };
        next_cooldown(previous, length, &self.cause, now)
    }
}

/// What [`Pool::mark`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marked {
    /// The key's name as configured.
    pub key: String,
    /// The key's cooldown now.
    pub cooldown: Cooldown,
    /// False when the key already cooled down at least as long: nothing changed.
    pub changed: bool,
    /// The new active key, when the mark moved it.
    pub switched_to: Option<String>,
}

/// The words every mark is logged with: when it ends, and the caller's note.
fn mark_detail(until: Option<Timestamp>, note: Option<&str>) -> String {
    let until = match until {
        Some(until) => format!("until {until}"),
        None => "set aside until reset or replaced".to_string(),
    };
    match note {
        Some(note) => format!("{until}; {note}"),
        None => until,
    }
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
        say!("{}", damaged.warning());
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
                crate::messages::warn_failed("save cooldowns after the clock was set back", &e);
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
            say!("{}", d.warning());
        }
        let mut clock_fixes = Vec::new();
        for (name, cooldown) in &mut state.cooldowns {
            if clock_was_set_back(cooldown, now) {
                clock_fixes.push(
                    Event::new(
                        now,
                        EventKind::ClockSetBack,
                        Some(name),
                        Some(cooldown.reason.clone()),
                    )
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

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// The key at `index` (from [`Pool::resolve`], [`Pool::active`] or the candidates).
    pub fn key(&self, index: usize) -> &KeyConfig {
        &self.config.keys[index]
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

    pub fn active_key(&self, now: Timestamp) -> Option<&KeyConfig> {
        self.active(now).map(|i| &self.config.keys[i])
    }

    pub fn active_name(&self, now: Timestamp) -> Option<String> {
        self.active(now).map(|i| self.config.keys[i].name.clone())
    }

    /// The index of a configured key, or a refusal that lists the keys there are.
    pub fn resolve(&self, name: &str) -> Result<usize> {
        self.config.position(name).ok_or_else(|| {
            // What the user typed, control characters shown escaped rather than sent to the
            // terminal.
            let name = name.escape_debug();
            let known: Vec<&str> = self.config.keys.iter().map(|k| k.name.as_str()).collect();
            if known.is_empty() {
                refuse(format!(
                    "there is no key named {name}: {}",
                    crate::messages::NO_KEYS_YET
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

    /// Puts the key at `index` on cooldown (or sets it aside) as [`Mark::cooldown`] has it,
    /// logs it, and notes the switch this makes.
    pub fn mark(
        &mut self,
        index: usize,
        mark: &Mark,
        session: Option<&str>,
        now: Timestamp,
    ) -> Marked {
        let key = self.config.keys[index].clone();
        let previous = self.state.cooldowns.get(&key.name).cloned();
        let cooldown = mark.cooldown(&self.config, &key, previous.as_ref(), now);
        let changed = previous.as_ref() != Some(&cooldown);
        let kind = if changed {
            EventKind::Mark
        } else {
            EventKind::AlreadyCooling
        };
        let detail = if changed {
            mark_detail(cooldown.until, mark.note.as_deref())
        } else {
            // Which key and why is all there is to say: the cooldown is as it was.
            mark.note
                .clone()
                .unwrap_or_else(|| mark_detail(cooldown.until, None))
        };
        self.log(
            Event::new(now, kind, Some(&key.name), Some(mark.cause.clone()))
                .with_detail(detail)
                .with_session(session.map(str::to_string)),
        );
        if changed {
            self.state
                .cooldowns
                .insert(key.name.clone(), cooldown.clone());
        }
        let switched_to = self.note_switch(now, &mark.cause, session);
        Marked {
            key: key.name,
            cooldown,
            changed,
            switched_to,
        }
    }

    /// Ends the cooldown of the key at `index`, or of every key. Returns the keys whose cooldown
    /// was still running, and the new active key when that changed.
    pub fn reset(&mut self, index: Option<usize>, now: Timestamp) -> (Vec<String>, Option<String>) {
        let names: Vec<String> = match index {
            Some(i) => vec![self.config.keys[i].name.clone()],
            None => self.config.keys.iter().map(|k| k.name.clone()).collect(),
        };
        let ended = names
            .iter()
            .filter(|name| {
                self.state
                    .cooldowns
                    .remove(name.as_str())
                    .is_some_and(|c| is_cooling(&c, now))
            })
            .cloned()
            .collect();
        let logged_key = index.and(names.first().map(String::as_str));
        let mut event = Event::new(now, EventKind::Reset, logged_key, Some(Cause::Manual));
        if index.is_none() {
            event = event.with_detail("every key");
        }
        self.log(event);
        let switched_to = self.note_switch(now, &Cause::Manual, None);
        (ended, switched_to)
    }

    /// Appends a new key (its secret already in the keychain) and saves the config. Returns its
    /// 1-based position.
    pub fn add_key(&mut self, key: KeyConfig, now: Timestamp) -> Result<usize> {
        let name = key.name.clone();
        self.config.keys.push(key);
        self.save_config()?;
        let position = self.config.keys.len();
        self.log(
            Event::new(now, EventKind::Add, Some(&name), Some(Cause::Manual))
                .with_detail(format!("position {position}")),
        );
        self.secrets_changed();
        self.note_switch(now, &Cause::Manual, None);
        Ok(position)
    }

    /// Notes that the secret of the key at `index` was replaced in the keychain, applying any
    /// option changes `edit` makes to the key. A key the API had rejected comes back into
    /// rotation: its new secret is the way back.
    pub fn replace_secret(
        &mut self,
        index: usize,
        edit: impl FnOnce(&mut KeyConfig),
        now: Timestamp,
    ) -> Result<()> {
        edit(&mut self.config.keys[index]);
        self.save_config()?;
        let name = self.config.keys[index].name.clone();
        if self
            .state
            .cooldowns
            .get(&name)
            .is_some_and(|c| c.until.is_none())
        {
            self.state.cooldowns.remove(&name);
        }
        self.log(Event::new(
            now,
            EventKind::Replace,
            Some(&name),
            Some(Cause::Manual),
        ));
        self.secrets_changed();
        self.note_switch(now, &Cause::Manual, None);
        Ok(())
    }

    /// Changes the options of the key at `index` as `edit` does — its secret, position and
    /// cooldown state stay — and saves the config, unless nothing changed. Returns the key as
    /// it was before, `None` when nothing changed (and nothing was written).
    pub fn set_options(
        &mut self,
        index: usize,
        edit: impl FnOnce(&mut KeyConfig),
        now: Timestamp,
    ) -> Result<Option<KeyConfig>> {
        let before = self.config.keys[index].clone();
        edit(&mut self.config.keys[index]);
        let key = &self.config.keys[index];
        if key.endpoint() == before.endpoint() && key.cooldown() == before.cooldown() {
            self.config.keys[index] = before;
            return Ok(None);
        }
        let detail = format!(
            "endpoint {}; cooldown {}",
            key.endpoint_text().unwrap_or("default"),
            key.cooldown_text().unwrap_or("default")
        );
        let name = key.name.clone();
        self.save_config()?;
        self.log(
            Event::new(now, EventKind::Set, Some(&name), Some(Cause::Manual)).with_detail(detail),
        );
        Ok(Some(before))
    }

    /// Takes the key at `index` out of the order and forgets its state; saves the config.
    /// Returns it and the new active key when that changed.
    pub fn remove_key(
        &mut self,
        index: usize,
        now: Timestamp,
    ) -> Result<(KeyConfig, Option<String>)> {
        let key = self.config.keys.remove(index);
        self.save_config()?;
        self.state.forget(&key.name);
        self.log(Event::new(
            now,
            EventKind::Remove,
            Some(&key.name),
            Some(Cause::Manual),
        ));
        let switched_to = self.note_switch(now, &Cause::Manual, None);
        Ok((key, switched_to))
    }

    /// Moves the key at `from` to 1-based `position`; saves the config. Returns the new active
    /// key when that changed.
    pub fn move_key(
        &mut self,
        from: usize,
        position: usize,
        now: Timestamp,
    ) -> Result<Option<String>> {
        let key = self.config.keys.remove(from);
        let moved = key.name.clone();
        self.config.keys.insert(position - 1, key);
        self.save_config()?;
        self.log(
            Event::new(now, EventKind::Move, Some(&moved), Some(Cause::Manual))
                .with_detail(format!("to position {position}")),
        );
        Ok(self.note_switch(now, &Cause::Manual, None))
    }

    /// Tells a running proxy to drop the secrets it holds: one in the keychain changed.
    fn secrets_changed(&mut self) {
        self.state.secrets_epoch = self.state.secrets_epoch.wrapping_add(1);
    }

    /// Notes a change of active key: records it and logs a `switch` event. Returns the new
    /// active key's name when it changed.
    pub fn note_switch(
        &mut self,
        now: Timestamp,
        reason: &Cause,
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
        let event = Event::new(
            now,
            EventKind::Switch,
            active.as_deref(),
            Some(reason.clone()),
        )
        .with_detail(detail)
        .with_session(session_id.map(str::to_string));
        self.log(event);
        // First use is not a switch worth telling anyone about.
        from.and(active)
    }

    fn save_config(&self) -> Result<()> {
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
