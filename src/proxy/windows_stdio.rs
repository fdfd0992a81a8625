//! Windows only: keeping this process's standard handles out of a background proxy.
//!
//! Windows hands a child every inheritable handle, not only the stdio it is given. `get`'s own
//! stdout (the pipe Claude Code reads the helper's answer from) would stay open in the proxy
//! `get` starts, and Claude Code would wait for that pipe's end as long as the proxy runs. The
//! child's stdio are separate inheritable copies std makes, so this process's own may stop
//! being inheritable.
#![allow(unsafe_code)]

use std::os::windows::io::AsRawHandle;

use windows_sys::Win32::Foundation::{HANDLE_FLAG_INHERIT, SetHandleInformation};

/// Makes stdin, stdout and stderr of this process not inheritable. Failures (no console, a
/// handle that is not there) leave things as they were: nothing to keep out then.
pub fn keep_from_children() {
    for handle in [
        std::io::stdin().as_raw_handle(),
        std::io::stdout().as_raw_handle(),
        std::io::stderr().as_raw_handle(),
    ] {
        // SAFETY: the process's own standard handles (or null, which the call refuses); only
        // their inherit flag changes.
        unsafe { SetHandleInformation(handle as _, HANDLE_FLAG_INHERIT, 0) };
    }
}
