//! What a process uses, read from /proc: resident memory, threads, open fds. Shared by
//! the abuse test, `hack/bench` and `hack/soak`.

/// A field of /proc/PID/status in its unit (KiB for memory); 0 when unreadable.
pub fn status_field(pid: &str, name: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with(name) && line[name.len()..].starts_with(':'))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

/// Resident memory in KiB.
pub fn rss_kib(pid: &str) -> u64 {
    status_field(pid, "VmRSS")
}

/// Open file descriptors.
pub fn open_fds(pid: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count())
}
