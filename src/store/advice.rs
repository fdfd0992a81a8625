//! What to do when no Secret Service answers (a headless box, an ssh session, a desktop whose
//! keyring did not start): the exact command, or the exact line to write, for each way out.

use std::path::Path;

/// The routes out: the desktop's keyring, gnome-keyring in a D-Bus session of its own, or
/// the kernel keyutils store, written into `config_file` as it stands.
pub fn no_secret_service(config_file: Option<&Path>) -> String {
    let keyutils = match config_file {
        Some(file) => keyutils_step(file),
        None => "set \"store\": \"keyutils\" in keyswitch's config.json".to_string(),
    };
    format!(
        "on a desktop, log in to it so its keyring (gnome-keyring, KWallet or KeePassXC) starts; over ssh or on a headless box either run gnome-keyring in a D-Bus session of its own and keyswitch from the shell it opens (`dbus-run-session -- sh -c 'printf %s \"$KEYRING_PASSWORD\" | gnome-keyring-daemon --unlock --daemonize --components=secrets >/dev/null; exec \"$SHELL\"'`), or use the kernel keyutils store, which needs no daemon and keeps secrets until a reboot (then add them again): {keyutils}"
    )
}

/// The exact change for `"store": "keyutils"`: a command that writes the file when there is
/// none, else the line to add to it.
fn keyutils_step(file: &Path) -> String {
    let shown = file.display();
    if file.exists() {
        return format!(
            "add the line \"store\": \"keyutils\", right after the opening {{ of {shown}, then add your keys again (keyswitch add NAME)"
        );
    }
    let folder = file
        .parent()
        .map_or_else(|| ".".to_string(), |p| p.display().to_string());
    format!("mkdir -p '{folder}' && printf '%s\\n' '{{\"store\": \"keyutils\"}}' > '{shown}'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_config_gets_a_command_that_writes_it_and_an_existing_one_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keyswitch/config.json");
        let said = no_secret_service(Some(&file));
        let command = format!(
            "mkdir -p '{}' && printf '%s\\n' '{{\"store\": \"keyutils\"}}' > '{}'",
            file.parent().unwrap().display(),
            file.display()
        );
        assert!(said.contains(&command), "{said}");
        assert!(said.contains("dbus-run-session"), "{said}");
        // The command, run, writes a config keyswitch reads as the keyutils store.
        let ran = std::process::Command::new("sh")
            .args(["-c", &command])
            .status()
            .unwrap();
        assert!(ran.success());
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(written["store"], "keyutils");
        let said = no_secret_service(Some(&file));
        assert!(
            said.contains("add the line \"store\": \"keyutils\","),
            "{said}"
        );
    }
}
