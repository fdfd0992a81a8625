//! Linux: each process's facts from `/proc/<pid>/stat`.

use super::{Proc, ProcessTable};

/// Reads /proc on demand: nothing to snapshot.
pub struct Table;

impl Table {
    pub fn snapshot() -> Self {
        Self
    }
}

impl ProcessTable for Table {
    fn inspect(&self, pid: u32) -> Option<Proc> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        parse_stat(&stat)
    }
}

/// "pid (name) state ppid ..."; the name may hold spaces and parentheses: split at the last
/// ')'. Field 22 is the start time in clock ticks since boot.
pub fn parse_stat(stat: &str) -> Option<Proc> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close).map(str::to_string);
    let fields: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
    let parent = fields
        .get(1)
        .and_then(|p| p.parse().ok())
        .filter(|p| *p > 0);
    let start = fields.get(19).and_then(|s| s.parse().ok());
    Some(Proc {
        parent,
        name,
        start,
    })
}
