//! The settings entries of subscription-first mode that follow the hold: with none on, no
//! `apiKeyHelper` (the login is used) and the user's own `ANTHROPIC_BASE_URL`; while one is on,
//! keyswitch's helper and the active key's endpoint, as helper mode has them. Both go through
//! the install record, so `uninstall` takes them out exactly, also during a hold.

use serde_json::{Map, Value, json};

use crate::claude::install_record::InstallRecord;
use crate::claude::live::apply_base_url;
use crate::claude::slot::Slot;
use crate::claude::wiring::{BASE_URL_VAR, HELPER_KEY};
use crate::config::{Config, KeyConfig};

/// Wires `helper` while `held`, takes it out (putting back what was there) otherwise.
pub fn apply(
    map: &mut Map<String, Value>,
    record: &mut InstallRecord,
    config: &Config,
    active: Option<&KeyConfig>,
    helper: &str,
    held: bool,
) {
    if held {
        record.set(map, Slot::Top(HELPER_KEY), json!(helper));
        apply_base_url(map, record, config, active);
    } else {
        record.restore(map, Slot::Top(HELPER_KEY));
        let base_url = Slot::Env(BASE_URL_VAR);
        record.adopt_user_value(map, base_url);
        record.restore(map, base_url);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_wires_the_helper_and_its_end_puts_the_settings_back_exactly() {
        let original =
            json!({"env": {"ANTHROPIC_BASE_URL": "https://mine.example"}, "model": "opus"});
        let mut map = original.as_object().unwrap().clone();
        let mut record = InstallRecord::default();
        let config = Config::default();
        apply(
            &mut map,
            &mut record,
            &config,
            None,
            "/bin/keyswitch get",
            true,
        );
        assert_eq!(map[HELPER_KEY], json!("/bin/keyswitch get"));
        assert_eq!(map["env"]["ANTHROPIC_BASE_URL"], "https://mine.example");
        apply(
            &mut map,
            &mut record,
            &config,
            None,
            "/bin/keyswitch get",
            false,
        );
        assert_eq!(Value::Object(map), original);
        assert!(record.entries.is_empty());
    }
}
