//! Claude Code's managed settings, read where each OS keeps them, for what they override of
//! keyswitch's wiring ([`super::overrides`]). They win over every other layer.
//!
//! - Linux, WSL and the BSDs: `/etc/claude-code/managed-settings.json`.
//! - macOS: `/Library/Application Support/ClaudeCode/managed-settings.json`, and the managed
//!   preferences of the `com.anthropic.claudecode` domain (per user, then the device's), read
//!   with `plutil`.
//! - Windows: `managed-settings.json` in `C:\Program Files\ClaudeCode` (or, in older Claude
//!   Code, `C:\ProgramData\ClaudeCode`), and the registry value `Settings` under
//!   `HKLM\SOFTWARE\Policies\ClaudeCode` (else `HKCU\…`), read with `reg query`.
//!
//! Beside each file, the `managed-settings.d` folder's `*.json` fragments are merged on top in
//! name order (hidden files skipped): objects merged key by key, a later scalar winning.
//! Server-managed settings (from the claude.ai console) cannot be read from here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use serde_json::{Map, Value};

use super::Report;
use super::overrides::{Layer, Wiring, check_credentials, check_hooks, check_managed_base_url};

/// How long a `plutil` or `reg` run may take.
#[cfg_attr(not(any(target_os = "macos", windows)), allow(dead_code))]
const TOOL_DEADLINE: Duration = Duration::from_secs(3);

/// One managed source that exists: its name for messages, and its settings (or why they could
/// not be read).
struct Source {
    name: String,
    settings: Result<Map<String, Value>, String>,
}

pub(super) fn check(r: &mut Report, wiring: &Wiring) -> Result<()> {
    let sources = sources();
    if sources.is_empty() {
        return r.ok("no managed settings on this machine (server-managed ones from the claude.ai console cannot be seen from here)");
    }
    for source in sources {
        let map = match source.settings {
            Ok(map) => map,
            Err(why) => {
                r.info(&format!(
                    "the managed settings {} cannot be read ({why}); Claude Code may not read them either",
                    source.name
                ))?;
                continue;
            }
        };
        let layer = Layer {
            name: format!("the managed settings {}", source.name),
            map: &map,
            managed: true,
        };
        check_credentials(r, &layer)?;
        check_managed_base_url(r, &layer, wiring)?;
        check_hooks(r, &layer, wiring)?;
    }
    Ok(())
}

/// The managed sources that exist, the file first.
fn sources() -> Vec<Source> {
    if let Some(path) = crate::failpoints::managed_settings_path() {
        return file_source(&path).into_iter().collect();
    }
    let mut found: Vec<Source> = system_files()
        .iter()
        .filter_map(|path| file_source(path))
        .collect();
    found.extend(platform::policy_sources());
    found
}

fn system_files() -> Vec<PathBuf> {
    if cfg!(target_os = "macos") {
        vec![PathBuf::from(
            "/Library/Application Support/ClaudeCode/managed-settings.json",
        )]
    } else if cfg!(windows) {
        vec![
            PathBuf::from(r"C:\Program Files\ClaudeCode\managed-settings.json"),
            PathBuf::from(r"C:\ProgramData\ClaudeCode\managed-settings.json"),
        ]
    } else {
        vec![PathBuf::from("/etc/claude-code/managed-settings.json")]
    }
}

/// The file and its drop-in fragments, merged; `None` when neither exists.
fn file_source(path: &Path) -> Option<Source> {
    let fragments = fragments(&path.with_file_name("managed-settings.d"));
    let base = match read_bounded(path) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Some(Source {
                name: path.display().to_string(),
                settings: Err(e.to_string()),
            });
        }
    };
    if base.is_none() && fragments.is_empty() {
        return None;
    }
    let mut name = path.display().to_string();
    if !fragments.is_empty() {
        name = format!("{name} (with managed-settings.d)");
    }
    let mut merged = Map::new();
    for (file, bytes) in base
        .map(|b| (path.to_path_buf(), b))
        .into_iter()
        .chain(fragments)
    {
        match parse_object(&bytes) {
            Ok(map) => merge(&mut merged, map),
            Err(why) => {
                return Some(Source {
                    name,
                    settings: Err(format!("{}: {why}", file.display())),
                });
            }
        }
    }
    Some(Source {
        name,
        settings: Ok(merged),
    })
}

/// The `*.json` files of a `managed-settings.d` folder, in name order, hidden ones skipped.
fn fragments(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or(".");
            !name.starts_with('.') && name.ends_with(".json") && p.is_file()
        })
        .collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| read_bounded(&p).ok().map(|bytes| (p, bytes)))
        .collect()
}

/// The largest managed settings file read: real ones are a few KiB.
const MAX_SETTINGS_BYTES: u64 = 1 << 20;

/// A regular file's bytes, at most [`MAX_SETTINGS_BYTES`]: a FIFO, a device or a huge file in
/// its place must not hang doctor or fill its memory.
fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind, Read};
    if !std::fs::metadata(path)?.is_file() {
        return Err(Error::other("not a regular file"));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_SETTINGS_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_SETTINGS_BYTES {
        return Err(Error::new(ErrorKind::InvalidData, "larger than 1 MiB"));
    }
    Ok(bytes)
}

fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("not a JSON object".to_string()),
        Err(e) => Err(format!("not valid JSON: {e}")),
    }
}

/// `over` on top of `base`: objects merged key by key, arrays joined, anything else replaced.
fn merge(base: &mut Map<String, Value>, over: Map<String, Value>) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(Value::Object(old)), Value::Object(new)) => merge(old, new),
            (Some(Value::Array(old)), Value::Array(new)) => {
                for item in new {
                    if !old.contains(&item) {
                        old.push(item);
                    }
                }
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(target_os = "macos")]
mod platform {
    use super::*;

    /// The managed preferences of the `com.anthropic.claudecode` domain, the user's first.
    pub(super) fn policy_sources() -> Vec<Source> {
        let user = std::env::var("USER").unwrap_or_default();
        let mut paths = Vec::new();
        if !user.is_empty() {
            paths.push(PathBuf::from(format!(
                "/Library/Managed Preferences/{user}/com.anthropic.claudecode.plist"
            )));
        }
        paths.push(PathBuf::from(
            "/Library/Managed Preferences/com.anthropic.claudecode.plist",
        ));
        paths
            .into_iter()
            .filter(|p| p.exists())
            .map(|path| {
                let mut plutil = std::process::Command::new("/usr/bin/plutil");
                plutil.args(["-convert", "json", "-o", "-"]).arg(&path);
                let settings = match crate::bounded_command::run(plutil, TOOL_DEADLINE) {
                    Some((status, out)) if status.success() => parse_object(&out),
                    Some(_) => Err("plutil could not convert it".to_string()),
                    None => Err("plutil did not answer".to_string()),
                };
                Source {
                    name: path.display().to_string(),
                    settings,
                }
            })
            .collect()
    }
}

#[cfg(windows)]
mod platform {
    use super::*;

    /// The policy registry value `Settings` (JSON): HKLM's, else HKCU's, which Claude Code
    /// reads only when no admin source exists.
    pub(super) fn policy_sources() -> Vec<Source> {
        for hive in ["HKLM", "HKCU"] {
            let key = format!(r"{hive}\SOFTWARE\Policies\ClaudeCode");
            let mut reg = std::process::Command::new("reg");
            reg.args(["query", &key, "/v", "Settings"]);
            let Some((status, out)) = crate::bounded_command::run(reg, TOOL_DEADLINE) else {
                continue;
            };
            if !status.success() {
                continue;
            }
            let text = String::from_utf8_lossy(&out);
            let value = text
                .lines()
                .find_map(|line| line.split_once("REG_SZ").map(|(_, v)| v.trim().to_string()));
            let settings = match value {
                Some(json) => parse_object(json.as_bytes()),
                None => Err("the Settings value is not a string".to_string()),
            };
            return vec![Source {
                name: format!(r"{key}\Settings"),
                settings,
            }];
        }
        Vec::new()
    }
}

#[cfg(not(any(target_os = "macos", windows)))]
mod platform {
    use super::Source;

    /// No policy store besides the file on Linux and the BSDs.
    pub(super) fn policy_sources() -> Vec<Source> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_fifo_a_device_or_a_huge_file_in_place_of_the_settings_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("managed-settings.json");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let started = std::time::Instant::now();
        let source = file_source(&fifo).unwrap();
        assert!(source.settings.unwrap_err().contains("not a regular file"));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let zero = dir.path().join("zero.json");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        assert!(read_bounded(&zero).is_err());
        let huge = dir.path().join("huge.json");
        std::fs::write(&huge, vec![b' '; (MAX_SETTINGS_BYTES + 1) as usize]).unwrap();
        assert!(
            read_bounded(&huge)
                .unwrap_err()
                .to_string()
                .contains("1 MiB")
        );
    }

    #[test]
    fn fragments_merge_over_the_file_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("managed-settings.json");
        std::fs::write(&file, r#"{"env": {"A": "1", "B": "1"}, "list": [1]}"#).unwrap();
        let drop_in = dir.path().join("managed-settings.d");
        std::fs::create_dir(&drop_in).unwrap();
        std::fs::write(drop_in.join("20-b.json"), r#"{"env": {"B": "3"}}"#).unwrap();
        std::fs::write(
            drop_in.join("10-a.json"),
            r#"{"env": {"B": "2"}, "list": [2]}"#,
        )
        .unwrap();
        std::fs::write(drop_in.join(".hidden.json"), r#"{"env": {"A": "x"}}"#).unwrap();
        let source = file_source(&file).unwrap();
        let map = source.settings.unwrap();
        assert_eq!(map["env"]["A"], "1");
        assert_eq!(map["env"]["B"], "3");
        assert_eq!(map["list"], serde_json::json!([1, 2]));
        assert!(file_source(&dir.path().join("none/managed-settings.json")).is_none());
    }
}
