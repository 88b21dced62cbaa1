//! Process figures from `/proc` (Linux): the daemon's own (`process_*`, the names every
//! Prometheus client library uses) and its LiveKit child's. Works under `ProtectProc=invisible`:
//! a process always sees itself and its children (same user).

use std::path::Path;

/// One process's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessFigures {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub threads: u64,
    /// Start, seconds since the Unix epoch (0 when unknown).
    pub start_time_seconds: f64,
}

/// The fields of `/proc/PID/stat` we use, from its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFields {
    pub utime_ticks: u64,
    pub stime_ticks: u64,
    pub threads: u64,
    pub start_ticks: u64,
    pub vsize_bytes: u64,
    pub rss_pages: u64,
}

/// Parse `/proc/PID/stat`. The command name (field 2) may hold spaces and parentheses, so
/// fields are counted after its last `)`.
pub fn parse_stat(text: &str) -> Option<StatFields> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state): field N is f[N - 3]
    let n = |field: usize| f.get(field - 3)?.parse::<u64>().ok();
    Some(StatFields {
        utime_ticks: n(14)?,
        stime_ticks: n(15)?,
        threads: n(20)?,
        start_ticks: n(22)?,
        vsize_bytes: n(23)?,
        rss_pages: n(24)?,
    })
}

/// `btime` (boot time, Unix seconds) from `/proc/stat`.
pub fn parse_btime(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

fn clock_ticks() -> f64 {
    use nix::unistd::{sysconf, SysconfVar};
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as f64,
        _ => 100.0,
    }
}

fn page_size() -> u64 {
    use nix::unistd::{sysconf, SysconfVar};
    match sysconf(SysconfVar::PAGE_SIZE) {
        Ok(Some(p)) if p > 0 => p as u64,
        _ => 4096,
    }
}

/// Read `/proc/<pid>/stat` (`pid` = "self" for the daemon).
pub fn read(pid: &str) -> Option<ProcessFigures> {
    let stat = parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    let tck = clock_ticks();
    let btime = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|t| parse_btime(&t))
        .unwrap_or(0);
    let start_time_seconds = if btime == 0 {
        0.0
    } else {
        btime as f64 + stat.start_ticks as f64 / tck
    };
    Some(ProcessFigures {
        cpu_seconds: (stat.utime_ticks + stat.stime_ticks) as f64 / tck,
        resident_bytes: stat.rss_pages * page_size(),
        virtual_bytes: stat.vsize_bytes,
        threads: stat.threads,
        start_time_seconds,
    })
}

/// Open file descriptors of this process (entries of `/proc/self/fd`, minus the one the listing
/// itself holds).
pub fn open_fds() -> Option<u64> {
    let n = std::fs::read_dir(Path::new("/proc/self/fd")).ok()?.count() as u64;
    Some(n.saturating_sub(1))
}

/// The soft `RLIMIT_NOFILE` (what `open` runs into).
pub fn max_fds() -> Option<u64> {
    use nix::sys::resource::{getrlimit, Resource};
    getrlimit(Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_and_parentheses_in_the_name() {
        let text = "812 (live kit) (x)) S 1 812 812 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 \
                    17 0 123456 987654321 2048 18446744073709551615";
        let s = parse_stat(text).unwrap();
        assert_eq!(s.utime_ticks, 250);
        assert_eq!(s.stime_ticks, 50);
        assert_eq!(s.threads, 17);
        assert_eq!(s.start_ticks, 123456);
        assert_eq!(s.vsize_bytes, 987654321);
        assert_eq!(s.rss_pages, 2048);
        assert!(parse_stat("garbage").is_none());
        assert!(parse_stat("1 (x) S 1 2").is_none());
    }

    #[test]
    fn btime_line() {
        assert_eq!(
            parse_btime("cpu  1 2 3\nbtime 1700000000\nprocesses 5\n"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_btime("cpu 1\n"), None);
    }

    #[test]
    fn own_process_is_readable_and_sane() {
        let me = read("self").unwrap();
        assert!(me.resident_bytes > 1 << 20, "{me:?}");
        assert!(me.threads >= 1);
        assert!(me.start_time_seconds > 1.6e9, "{me:?}");
        let files: Vec<_> = (0..8)
            .map(|_| std::fs::File::open("/proc/self/stat").unwrap())
            .collect();
        assert!(open_fds().unwrap() >= files.len() as u64);
        assert!(max_fds().unwrap() >= 64);
    }
}
