//! The proxy's loopback address in `env.NO_PROXY` and `env.no_proxy` of Claude Code's settings
//! (proxy mode), so a corporate `HTTPS_PROXY` never carries the session's requests for the
//! proxy. The user's own entries stay: those of the settings, and those of the environment
//! `install` ran in, which the settings' value replaces for Claude Code. The install record
//! remembers what was there, so `uninstall` (or a switch to helper mode) puts exactly that
//! back — an absent entry stays absent.

use serde_json::{Map, Value, json};

use super::install_record::InstallRecord;
use super::slot::Slot;
use crate::no_proxy::{NO_PROXY_VARS, entries, proxy_entries};

/// Sets both spellings to the user's entries plus the proxy's.
pub fn add_proxy_entries(
    map: &mut Map<String, Value>,
    record: &mut InstallRecord,
    listen: std::net::SocketAddr,
    env: impl Fn(&str) -> Option<String>,
) {
    let mut list: Vec<String> = Vec::new();
    let mut keep = |value: &str| {
        for entry in entries(value) {
            if !list.iter().any(|e| e == entry) {
                list.push(entry.to_string());
            }
        }
    };
    for var in NO_PROXY_VARS {
        let slot = Slot::Env(var);
        // A value the user wrote since keyswitch did is theirs.
        record.adopt_user_value(map, slot);
        let users = match record.entries.get(&slot.id()) {
            Some(entry) => entry.prior.clone(),
            None => slot.get(map).cloned(),
        };
        if let Some(Value::String(value)) = users {
            keep(&value);
        }
    }
    for var in NO_PROXY_VARS {
        if let Some(value) = env(var) {
            keep(&value);
        }
    }
    for entry in proxy_entries(listen) {
        keep(&entry);
    }
    let value = list.join(",");
    for var in NO_PROXY_VARS {
        record.set(map, Slot::Env(var), json!(value));
    }
}

/// Puts back what the settings held before [`add_proxy_entries`].
pub fn remove_proxy_entries(map: &mut Map<String, Value>, record: &mut InstallRecord) {
    for var in NO_PROXY_VARS {
        record.restore(map, Slot::Env(var));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_users_entries_stay_and_a_new_port_replaces_the_old_one() {
        let original = json!({"env": {"no_proxy": "corp.example"}, "model": "x"});
        let mut map = original.as_object().unwrap().clone();
        let mut record = InstallRecord::default();
        let env = |var: &str| (var == "NO_PROXY").then(|| ".internal, corp.example".to_string());
        add_proxy_entries(
            &mut map,
            &mut record,
            "127.0.0.1:9000".parse().unwrap(),
            env,
        );
        let expected = "corp.example,.internal,127.0.0.1,127.0.0.1:9000";
        assert_eq!(map["env"]["NO_PROXY"], expected);
        assert_eq!(map["env"]["no_proxy"], expected);
        record.finalize();
        add_proxy_entries(
            &mut map,
            &mut record,
            "127.0.0.1:9001".parse().unwrap(),
            env,
        );
        assert_eq!(
            map["env"]["no_proxy"],
            "corp.example,.internal,127.0.0.1,127.0.0.1:9001"
        );
        remove_proxy_entries(&mut map, &mut record);
        assert_eq!(Value::Object(map), original);
    }
}
