//! Windows: parents and names from one Toolhelp32 snapshot of all processes, start times from
//! `GetProcessTimes`. Windows keeps a parent pid after the parent exits and reuses pids, so the
//! start times matter here (the walk drops a "parent" younger than its child).
// Win32 calls through windows-sys, which has no safe wrappers.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::mem::size_of;

use windows_sys::Win32::Foundation::{CloseHandle, FILETIME, HANDLE, INVALID_HANDLE_VALUE};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, PROCESSENTRY32W, Process32FirstW, Process32NextW, TH32CS_SNAPPROCESS,
};
use windows_sys::Win32::System::Threading::{
    GetProcessTimes, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION,
};

use super::{Proc, ProcessTable};

/// The processes running when the snapshot was taken: pid → (parent pid, exe name).
pub struct Table(HashMap<u32, (u32, String)>);

/// Closes a handle when dropped, so no early return leaks one.
struct Handle(HANDLE);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle came from a successful Create/Open call and is closed once.
        unsafe { CloseHandle(self.0) };
    }
}

impl Table {
    pub fn snapshot() -> Self {
        let mut processes = HashMap::new();
        // SAFETY: plain call; the result is checked before use.
        let raw = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0) };
        if raw == INVALID_HANDLE_VALUE || raw.is_null() {
            return Self(processes);
        }
        let snapshot = Handle(raw);
        let mut entry = PROCESSENTRY32W {
            dwSize: size_of::<PROCESSENTRY32W>() as u32,
            ..Default::default()
        };
        // SAFETY: `entry` is a PROCESSENTRY32W with dwSize set, as both calls require.
        let mut more = unsafe { Process32FirstW(snapshot.0, &mut entry) } != 0;
        while more {
            let len = entry
                .szExeFile
                .iter()
                .position(|c| *c == 0)
                .unwrap_or(entry.szExeFile.len());
            let name = String::from_utf16_lossy(&entry.szExeFile[..len]);
            processes.insert(entry.th32ProcessID, (entry.th32ParentProcessID, name));
            // SAFETY: as above.
            more = unsafe { Process32NextW(snapshot.0, &mut entry) } != 0;
        }
        Self(processes)
    }
}

impl ProcessTable for Table {
    fn inspect(&self, pid: u32) -> Option<Proc> {
        let (parent, name) = self.0.get(&pid)?;
        Some(Proc {
            parent: Some(*parent).filter(|p| *p > 0),
            name: Some(name.clone()),
            start: creation_time(pid),
        })
    }
}

/// When `pid` was created (FILETIME ticks), `None` when it is gone or not ours to query.
fn creation_time(pid: u32) -> Option<u64> {
    // SAFETY: plain call; the result is checked before use.
    let raw = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if raw.is_null() {
        return None;
    }
    let process = Handle(raw);
    let mut created = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let mut unused = [FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    }; 3];
    let [exited, kernel, user] = &mut unused;
    // SAFETY: every out-pointer points at a live FILETIME.
    let ok = unsafe { GetProcessTimes(process.0, &mut created, exited, kernel, user) } != 0;
    ok.then(|| (u64::from(created.dwHighDateTime) << 32) | u64::from(created.dwLowDateTime))
}
