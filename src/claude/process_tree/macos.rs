//! macOS: each process's facts from `proc_pidinfo(PROC_PIDTBSDINFO)`, which needs no special
//! rights for the user's own processes.
// The one libc call below has no safe wrapper in std or libc.
#![allow(unsafe_code)]

use std::mem::{MaybeUninit, size_of};

use super::{Proc, ProcessTable};

/// Asks the kernel on demand: nothing to snapshot.
pub struct Table;

impl Table {
    pub fn snapshot() -> Self {
        Self
    }
}

impl ProcessTable for Table {
    fn inspect(&self, pid: u32) -> Option<Proc> {
        let pid = libc::c_int::try_from(pid).ok()?;
        let size = libc::c_int::try_from(size_of::<libc::proc_bsdinfo>()).ok()?;
        let mut info = MaybeUninit::<libc::proc_bsdinfo>::zeroed();
        // SAFETY: the buffer is a zeroed proc_bsdinfo of exactly `size` bytes, which is what
        // PROC_PIDTBSDINFO writes; the kernel writes at most `size` bytes.
        let written = unsafe {
            libc::proc_pidinfo(
                pid,
                libc::PROC_PIDTBSDINFO,
                0,
                info.as_mut_ptr().cast(),
                size,
            )
        };
        if written != size {
            return None;
        }
        // SAFETY: fully written above (and zeroed before, so every byte is initialised anyway).
        let info = unsafe { info.assume_init() };
        let name: Vec<u8> = info
            .pbi_comm
            .iter()
            .take_while(|c| **c != 0)
            .map(|c| *c as u8)
            .collect();
        Some(Proc {
            parent: Some(info.pbi_ppid).filter(|p| *p > 0),
            name: Some(String::from_utf8_lossy(&name).into_owned()),
            start: info
                .pbi_start_tvsec
                .checked_mul(1_000_000)
                .and_then(|us| us.checked_add(info.pbi_start_tvusec)),
        })
    }
}
