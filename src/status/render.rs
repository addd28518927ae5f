//! `imageshim status` as text: backends, the cap, then one line per pull with a
//! progress bar for running pulls whose bytes are measured.

use std::fmt::Write;

use super::view::{PullView, StatusView};

const BAR_WIDTH: usize = 24;

/// The whole status as a table.
pub fn render(view: &StatusView) -> String {
    let mut out = String::new();
    for b in &view.backends {
        let state = match (b.ready, &b.error) {
            (true, _) => "ready".to_string(),
            (false, Some(error)) => format!("NOT READY ({error})"),
            (false, None) => "NOT READY (no answer yet)".to_string(),
        };
        let _ = writeln!(out, "backend {} ({}): {state}", b.name, b.kind);
    }
    let size = view
        .cap
        .size
        .map_or("unlimited".to_string(), |s| s.to_string());
    let _ = writeln!(
        out,
        "cap: {} / {size} running, {} queued; {} waiting callers",
        view.cap.in_use, view.cap.queued, view.waiters
    );
    if view.pulls.is_empty() {
        out.push_str("no pulls in flight\n");
        return out;
    }
    let _ = writeln!(
        out,
        "{:<8} {:>7} {:>7}  {:<w$}  {:<22} IMAGE (HANDLER@BACKEND)",
        "STATE",
        "WAITERS",
        "ELAPSED",
        "PROGRESS",
        "BYTES",
        w = BAR_WIDTH + 7
    );
    for pull in &view.pulls {
        out.push_str(&pull_line(pull));
        out.push('\n');
    }
    out
}

fn pull_line(pull: &PullView) -> String {
    let (bar, bytes) = match (pull.bytes_done, pull.bytes_total) {
        (Some(done), Some(total)) if total > 0 => (
            bar(done, total),
            format!("{} / {}", human_bytes(done), human_bytes(total)),
        ),
        (Some(done), _) => (String::new(), format!("{} / ?", human_bytes(done))),
        (None, _) if pull.state == "running" => (String::new(), "unknown".into()),
        (None, _) => (String::new(), String::new()),
    };
    let rate = pull
        .bytes_per_second
        .filter(|r| *r > 0.0)
        .map(|r| format!(" {}/s", human_bytes(r as u64)))
        .unwrap_or_default();
    let handler = match pull.handler.as_str() {
        "" => "default",
        other => other,
    };
    format!(
        "{:<8} {:>7} {:>6.0}s  {:<w$}  {:<22} {} ({handler}@{}){rate}",
        pull.state,
        pull.waiters,
        pull.elapsed_seconds,
        bar,
        bytes,
        pull.image,
        pull.backend,
        w = BAR_WIDTH + 7
    )
}

/// `[#######.........]  42%`
fn bar(done: u64, total: u64) -> String {
    let fraction = (done as f64 / total as f64).clamp(0.0, 1.0);
    let filled = (fraction * BAR_WIDTH as f64).round() as usize;
    format!(
        "[{}{}] {:>3.0}%",
        "#".repeat(filled),
        ".".repeat(BAR_WIDTH - filled),
        fraction * 100.0
    )
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ => format!("{value:.1} {}", UNITS[unit]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_and_sizes_read_well() {
        assert_eq!(
            bar(1, 4),
            format!("[{}{}]  25%", "#".repeat(6), ".".repeat(18))
        );
        assert_eq!(bar(9, 4), format!("[{}] 100%", "#".repeat(24)));
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
    }
}
