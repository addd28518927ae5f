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

/// CPU time (user + system, nanoseconds) of a process, every thread of it and every
/// process it started (nghttpx runs a worker process under its master), from
/// `/proc/*/task/*/schedstat`: nanosecond resolution, unlike the 10 ms ticks of `stat`.
pub fn cpu_ns(pid: &str) -> u64 {
    let mut total = 0;
    let mut family = vec![pid.to_string()];
    family.extend(children(pid));
    for member in family {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{member}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            total += stat
                .split_whitespace()
                .next()
                .and_then(|ns| ns.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    total
}

/// The processes whose parent is `pid`.
fn children(pid: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            name.parse::<u32>().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // The parent pid is the second field after the parenthesised command.
            let after = &stat[stat.rfind(')')? + 2..];
            let parent = after.split_whitespace().nth(1)?;
            (parent == pid).then_some(name)
        })
        .collect()
}
