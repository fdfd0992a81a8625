//! The `env` a project's own settings give Claude Code: `.claude/settings.local.json` over
//! `.claude/settings.json` in the folder Claude Code runs in, both over the user settings.
//!
//! Claude Code hands the apiKeyHelper the user-level environment, but its own HTTP client
//! takes a project's `NO_PROXY`/`HTTPS_PROXY`: so `get` and `doctor` read these files
//! themselves to tell whether a request for the proxy would go through a corporate proxy.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::slot::Slot;

/// Whether a project's settings file is the user settings file itself (a session started in the
/// home folder: `~/.claude/settings.json` is then both), which holds keyswitch's own entries and
/// is no project's override.
pub fn is_the_user_settings(path: &Path) -> bool {
    let Ok(user) = super::settings_file::SettingsFile::locate(None) else {
        return false;
    };
    match (
        std::fs::canonicalize(path),
        std::fs::canonicalize(&user.path),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The project settings files that exist in a folder, most binding first.
pub struct ProjectEnv {
    layers: Vec<(PathBuf, Map<String, Value>)>,
}

impl ProjectEnv {
    /// The settings files of the project in `dir`. A file that cannot be read or is not a JSON
    /// object counts as absent here (`doctor` reports it on its own).
    pub fn in_dir(dir: &Path) -> Self {
        let layers = ["settings.local.json", "settings.json"]
            .into_iter()
            .filter_map(|name| {
                let path = dir.join(".claude").join(name);
                // Read first: most folders have no such file, and `get` should not pay for
                // locating and resolving the user settings to learn that.
                let bytes = std::fs::read(&path).ok()?;
                if is_the_user_settings(&path) {
                    return None;
                }
                match serde_json::from_slice(&bytes).ok()? {
                    Value::Object(map) => Some((path, map)),
                    _ => None,
                }
            })
            .collect();
        Self { layers }
    }

    /// The project folder of this process: Claude Code runs its helper there.
    pub fn here() -> Self {
        std::env::current_dir().map_or(Self { layers: Vec::new() }, |dir| Self::in_dir(&dir))
    }

    /// The value a project file gives `var` in its `env`, and the file; `None` when no project
    /// file sets it.
    pub fn get(&self, var: &str) -> Option<(&Path, Option<String>)> {
        self.layers.iter().find_map(|(path, map)| {
            Slot::Env(var)
                .get(map)
                .map(|value| (path.as_path(), value.as_str().map(str::to_string)))
        })
    }

    /// `var` as Claude Code's client sees it: the project's value, else `outer`'s.
    pub fn over(&self, var: &str, outer: impl Fn(&str) -> Option<String>) -> Option<String> {
        match self.get(var) {
            Some((_, value)) => value,
            None => outer(var),
        }
    }

    /// The project file that sets any of `vars`, for a message.
    pub fn setter_of(&self, vars: &[&str]) -> Option<&Path> {
        vars.iter()
            .find_map(|var| self.get(var).map(|(path, _)| path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_file_wins_over_the_shared_one_and_both_over_the_outer_value() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".claude")).unwrap();
        std::fs::write(
            dir.path().join(".claude/settings.json"),
            r#"{"env":{"NO_PROXY":"shared","HTTPS_PROXY":"http://corp:3128"}}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join(".claude/settings.local.json"),
            r#"{"env":{"NO_PROXY":"local"}}"#,
        )
        .unwrap();
        let env = ProjectEnv::in_dir(dir.path());
        let outer = |var: &str| Some(format!("outer-{var}"));
        assert_eq!(env.over("NO_PROXY", outer).as_deref(), Some("local"));
        assert_eq!(
            env.over("HTTPS_PROXY", outer).as_deref(),
            Some("http://corp:3128")
        );
        assert_eq!(
            env.over("no_proxy", outer).as_deref(),
            Some("outer-no_proxy")
        );
        assert!(
            env.setter_of(&["no_proxy", "HTTPS_PROXY"])
                .unwrap()
                .ends_with(".claude/settings.json")
        );
        assert!(
            ProjectEnv::in_dir(&dir.path().join("nowhere"))
                .get("NO_PROXY")
                .is_none()
        );
    }
}
