//! Test seams: named points where a test makes keyswitch fail, or die as a `kill -9` there
//! would, to check that every step of a settings change leaves something `uninstall` can undo.
//!
//! Live only with the `failpoints` feature, which `cargo test` turns on (see Cargo.toml);
//! every other build, the shipped ones included, compiles both functions to nothing and reads
//! no environment variable.
//!
//! Not the `fail` crate: its actions panic where these tests need the process to die with no
//! unwinding (as a kill would), it is configured through `FAILPOINTS` set up in `main`, and it
//! brings `rand` 0.8, `log` and `once_cell` for two functions.

use anyhow::Result;

/// `KEYSWITCH_TEST_CRASH_AT=<name>` aborts the process at the point of that name.
#[cfg(feature = "failpoints")]
pub fn crash_point(name: &str) {
    if std::env::var_os("KEYSWITCH_TEST_CRASH_AT").is_some_and(|v| v == name) {
        std::process::abort();
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn crash_point(_name: &str) {}

/// `KEYSWITCH_TEST_FAIL_AT=<name>` makes the step of that name fail as a full disk would
/// (root, which the tests run as, cannot be stopped by permissions).
#[cfg(feature = "failpoints")]
pub fn fail_point(name: &str) -> Result<()> {
    if std::env::var_os("KEYSWITCH_TEST_FAIL_AT").is_some_and(|v| v == name) {
        anyhow::bail!("{name} failed (KEYSWITCH_TEST_FAIL_AT)");
    }
    Ok(())
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn fail_point(_name: &str) -> Result<()> {
    Ok(())
}

/// `KEYSWITCH_TEST_LEGACY_HEALTH=1`: the proxy answers its health path as keyswitch did before
/// proofs (everything, to anyone, unproved), so a test can stand a real proxy of "an older
/// version" on the port and watch `get` replace it without sending it the token.
#[cfg(feature = "failpoints")]
pub fn legacy_health() -> bool {
    std::env::var_os("KEYSWITCH_TEST_LEGACY_HEALTH").is_some_and(|v| v == "1")
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn legacy_health() -> bool {
    false
}

/// `KEYSWITCH_TEST_BODY_IDLE_MS=<ms>`: how long the proxy waits for a request body that stopped
/// arriving, instead of `default`, so an integration test of a stalled body need not wait a
/// minute.
#[cfg(feature = "failpoints")]
pub fn body_idle(default: std::time::Duration) -> std::time::Duration {
    std::env::var("KEYSWITCH_TEST_BODY_IDLE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(default, std::time::Duration::from_millis)
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn body_idle(default: std::time::Duration) -> std::time::Duration {
    default
}

/// Whether `install --proxy` may hand the proxy to the login's service manager. Test builds do
/// only with `KEYSWITCH_TEST_SERVICE_MANAGER=1` (a test that set up a stand-in `systemctl`):
/// `launchctl bootstrap gui/UID` and `systemctl --user` reach the real login whatever folders a
/// sandbox names, and must never load a test's proxy into a developer's session.
#[cfg(feature = "failpoints")]
pub fn service_manager_allowed() -> bool {
    std::env::var_os("KEYSWITCH_TEST_SERVICE_MANAGER").is_some_and(|v| v == "1")
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn service_manager_allowed() -> bool {
    true
}

/// `KEYSWITCH_TEST_MANAGED_SETTINGS=<path>`: doctor reads this file (and the
/// `managed-settings.d` folder beside it) as Claude Code's managed settings, in place of the
/// system's file, plist and registry, so a test never writes `/etc`.
#[cfg(feature = "failpoints")]
pub fn managed_settings_path() -> Option<std::path::PathBuf> {
    std::env::var_os("KEYSWITCH_TEST_MANAGED_SETTINGS")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn managed_settings_path() -> Option<std::path::PathBuf> {
    None
}
