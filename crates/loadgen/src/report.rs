//! Human-readable output, and the one comparison table of `scripts/bench.sh` built from the JSON
//! results of the individual runs.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::hist::{fmt_ns, Summary};
use crate::run::{FloodResult, PingPongResult};

/// A ping-pong result for people.
pub fn pingpong_text(r: &PingPongResult) -> String {
    let l = &r.latency;
    format!(
        "ping-pong {}: {} round trips ({} warm-up), {} B out, {:.0} B back\n\
         {:>10} {:>10} {:>10} {:>10} {:>10}\n\
         {:>10} {:>10} {:>10} {:>10} {:>10}\n\
         answers: {}\n",
        r.target,
        l.count,
        r.warmup,
        r.message_size,
        r.answer_size,
        "p50",
        "p90",
        "p99",
        "p99.9",
        "max",
        fmt_ns(l.p50_ns),
        fmt_ns(l.p90_ns),
        fmt_ns(l.p99_ns),
        fmt_ns(l.p999_ns),
        fmt_ns(l.max_ns),
        r.counts.describe(),
    )
}

/// The heading of [`flood_line`]s.
pub fn flood_header() -> String {
    format!(
        "{:>6} {:>4} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8}  answers",
        "target",
        "sess",
        "rate/s",
        "achieved/s",
        "p50",
        "p99",
        "p99.9",
        "max",
        "lag p99",
        "verdict"
    )
}

/// One flood run for people.
pub fn flood_line(r: &FloodResult) -> String {
    let l: &Summary = &r.latency;
    let verdict = if r.passed() { "ok" } else { "FAIL" };
    let mut missing = match r.unanswered() {
        0 => String::new(),
        n => format!(" ({n} unanswered)"),
    };
    if let Some(first) = r.lost.first() {
        missing.push_str(&format!("; {} session(s) lost, {first}", r.lost.len()));
    }
    format!(
        "{:>6} {:>4} {:>10.0} {:>10.0} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8}  {}{}",
        r.target,
        r.sessions,
        r.rate,
        r.achieved,
        fmt_ns(l.p50_ns),
        fmt_ns(l.p99_ns),
        fmt_ns(l.p999_ns),
        fmt_ns(l.max_ns),
        fmt_ns(r.send_lag.p99_ns),
        verdict,
        r.counts.describe(),
        missing,
    )
}

fn load(dir: &Path, name: &str) -> Result<Option<Value>> {
    let p = dir.join(name);
    if !p.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    let v = serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))?;
    Ok(Some(v))
}

fn latency(v: &Option<Value>, key: &str) -> Option<f64> {
    v.as_ref()?.get("latency")?.get(key)?.as_f64()
}

fn max_rate(v: &Option<Value>) -> Option<f64> {
    v.as_ref()?.get("max_rate")?.as_f64()
}

/// A search's best rate for the table; when no step passed, "< " the lowest rate tried.
fn fmt_max_rate(v: &Option<Value>) -> String {
    match max_rate(v) {
        None => "n/a".into(),
        Some(r) if r > 0.0 => fmt_rate(r),
        Some(_) => {
            let lowest = v
                .as_ref()
                .and_then(|v| v.get("steps")?.as_array()?.first()?.get("rate")?.as_f64());
            match lowest {
                Some(l) => format!("< {}", fmt_rate(l)),
                None => "0".into(),
            }
        }
    }
}

fn fmt_rate(r: f64) -> String {
    // Thousands separators: 200000 -> 200,000.
    let s = format!("{:.0}", r);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The comparison table from `pingpong-fix.json`, `pingpong-echo.json`,
/// `flood-{fix,echo}-{1,16}.json` in `dir` (missing files show as `n/a`), with rows for
/// `pingpong-{fix,echo}-xcpu.json` (the client on another CPU) and
/// `flood-{fix,echo}-16-batched.json` (a client that batches) when present.
pub fn comparison_table(dir: &Path) -> Result<String> {
    let pf = load(dir, "pingpong-fix.json")?;
    let pe = load(dir, "pingpong-echo.json")?;
    let mut rows: Vec<[String; 5]> = Vec::new();
    let na = || "n/a".to_owned();
    for (label, key) in [
        ("ping-pong p50", "p50_ns"),
        ("ping-pong p99", "p99_ns"),
        ("ping-pong p99.9", "p999_ns"),
        ("ping-pong max", "max_ns"),
    ] {
        let (f, e) = (latency(&pf, key), latency(&pe, key));
        let ratio = match (f, e) {
            (Some(f), Some(e)) if e > 0.0 => Some(f / e),
            _ => None,
        };
        let verdict = match (key, ratio) {
            ("p50_ns", Some(r)) => {
                format!("≤ 1.3 × echo: {}", if r <= 1.3 { "met" } else { "not met" })
            }
            _ => String::new(),
        };
        rows.push([
            label.into(),
            f.map_or_else(na, |v| fmt_ns(v as u64)),
            e.map_or_else(na, |v| fmt_ns(v as u64)),
            ratio.map_or_else(na, |r| format!("{r:.2}×")),
            verdict,
        ]);
    }
    // The same ping-pong with the client on another CPU than the servers, if it was run.
    let xf = load(dir, "pingpong-fix-xcpu.json")?;
    let xe = load(dir, "pingpong-echo-xcpu.json")?;
    if xf.is_some() || xe.is_some() {
        for (label, key) in [
            ("ping-pong p50, client on another CPU", "p50_ns"),
            ("ping-pong p99, client on another CPU", "p99_ns"),
        ] {
            let (f, e) = (latency(&xf, key), latency(&xe, key));
            let ratio = match (f, e) {
                (Some(f), Some(e)) if e > 0.0 => Some(f / e),
                _ => None,
            };
            rows.push([
                label.into(),
                f.map_or_else(na, |v| fmt_ns(v as u64)),
                e.map_or_else(na, |v| fmt_ns(v as u64)),
                ratio.map_or_else(na, |r| format!("{r:.2}×")),
                String::new(),
            ]);
        }
    }
    for sessions in [1, 16] {
        let fj = load(dir, &format!("flood-fix-{sessions}.json"))?;
        let ej = load(dir, &format!("flood-echo-{sessions}.json"))?;
        let (f, e) = (max_rate(&fj), max_rate(&ej));
        let ratio = match (f, e) {
            (Some(f), Some(e)) if e > 0.0 && f > 0.0 => Some(f / e),
            _ => None,
        };
        let verdict = match (sessions, f) {
            (16, Some(f)) => format!(
                "≥ 200,000/s: {}",
                if f >= 200_000.0 { "met" } else { "not met" }
            ),
            _ => String::new(),
        };
        let plural = if sessions == 1 { "" } else { "s" };
        rows.push([
            format!("flood max orders/s, p99 < 1 ms, {sessions} session{plural}"),
            fmt_max_rate(&fj),
            fmt_max_rate(&ej),
            ratio.map_or_else(na, |r| format!("{r:.2}×")),
            verdict,
        ]);
    }
    // The 16-session flood again with a client that batches (one write per session per pacer
    // tick, the wait counted in the latency), if it was run: what the server does when the
    // per-write costs of both ends are shared by several orders.
    let bf = load(dir, "flood-fix-16-batched.json")?;
    let be = load(dir, "flood-echo-16-batched.json")?;
    if bf.is_some() || be.is_some() {
        let (f, e) = (max_rate(&bf), max_rate(&be));
        let ratio = match (f, e) {
            (Some(f), Some(e)) if e > 0.0 && f > 0.0 => Some(f / e),
            _ => None,
        };
        let tick_us = [&bf, &be]
            .iter()
            .find_map(|v| v.as_ref()?.get("tick_us")?.as_u64())
            .unwrap_or(0);
        rows.push([
            format!("flood max orders/s, p99 < 1 ms, 16 sessions, a write per {tick_us} µs"),
            fmt_max_rate(&bf),
            fmt_max_rate(&be),
            ratio.map_or_else(na, |r| format!("{r:.2}×")),
            f.map_or_else(String::new, |f| {
                format!(
                    "≥ 200,000/s: {}",
                    if f >= 200_000.0 { "met" } else { "not met" }
                )
            }),
        ]);
    }
    // The WebSocket API beside FIX, against the same floor, if it was run.
    let pw = load(dir, "pingpong-ws.json")?;
    if pw.is_some() {
        for (label, key) in [
            ("ws ping-pong p50", "p50_ns"),
            ("ws ping-pong p99", "p99_ns"),
            ("ws ping-pong p99.9", "p999_ns"),
            ("ws ping-pong max", "max_ns"),
        ] {
            let (w, e) = (latency(&pw, key), latency(&pe, key));
            let ratio = match (w, e) {
                (Some(w), Some(e)) if e > 0.0 => Some(w / e),
                _ => None,
            };
            rows.push([
                label.into(),
                w.map_or_else(na, |v| fmt_ns(v as u64)),
                e.map_or_else(na, |v| fmt_ns(v as u64)),
                ratio.map_or_else(na, |r| format!("{r:.2}×")),
                String::new(),
            ]);
        }
    }
    for sessions in [1, 16] {
        let Some(wj) = load(dir, &format!("flood-ws-{sessions}.json"))? else {
            continue;
        };
        let ej = load(dir, &format!("flood-echo-{sessions}.json"))?;
        let wj = Some(wj);
        let (w, e) = (max_rate(&wj), max_rate(&ej));
        let ratio = match (w, e) {
            (Some(w), Some(e)) if e > 0.0 && w > 0.0 => Some(w / e),
            _ => None,
        };
        let plural = if sessions == 1 { "" } else { "s" };
        rows.push([
            format!("ws flood max orders/s, p99 < 1 ms, {sessions} connection{plural}"),
            fmt_max_rate(&wj),
            fmt_max_rate(&ej),
            ratio.map_or_else(na, |r| format!("{r:.2}×")),
            String::new(),
        ]);
    }
    // Memory per idle session: the server's resident size with all the sessions logged on and
    // idle, less with the first one alone, per further session (no floor: an echo server keeps
    // no session); the first session's share, one-time costs included, on a row of its own.
    // An older file without the one-session reading divides by all of them.
    if let Some(v) = load(dir, "idle.json")? {
        let field = |k: &str| v.get(k).and_then(Value::as_f64);
        if let (Some(n), Some(before), Some(after)) = (
            field("sessions"),
            field("rss_before_kib"),
            field("rss_after_kib"),
        ) {
            let (label, per) = match field("rss_first_kib") {
                Some(first) if n > 1.0 => (
                    format!("memory per idle session ({n} logged on, after the first)"),
                    Some((after - first) / (n - 1.0)),
                ),
                _ if n > 0.0 => (
                    format!("memory per idle session ({n} logged on)"),
                    Some((after - before) / n),
                ),
                _ => (String::new(), None),
            };
            if let Some(per) = per.map(|p| p.max(0.0)) {
                rows.push([
                    label,
                    format!("{per:.1} KiB"),
                    na(),
                    na(),
                    format!("≤ 64 KiB: {}", if per <= 64.0 { "met" } else { "not met" }),
                ]);
            }
            if let Some(first) = field("rss_first_kib").filter(|_| n > 1.0) {
                rows.push([
                    "memory of the first idle session (one-time costs included)".into(),
                    format!("{:.1} KiB", (first - before).max(0.0)),
                    na(),
                    na(),
                    String::new(),
                ]);
            }
        }
    }
    let head = [
        "".to_owned(),
        "server".into(),
        "echo floor".into(),
        "server/echo".into(),
        "target (DESIGN.md §6)".into(),
    ];
    let mut widths = [0usize; 5];
    for r in std::iter::once(&head).chain(rows.iter()) {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |r: &[String; 5]| {
        let mut s = format!("{:<w$}", r[0], w = widths[0]);
        for (i, c) in r.iter().enumerate().skip(1) {
            let pad = widths[i] - c.chars().count();
            if i == 4 {
                s.push_str(&format!("  {c}"));
            } else {
                s.push_str(&format!("  {}{c}", " ".repeat(pad)));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(&head);
    let total: usize = widths.iter().sum::<usize>() + 8;
    out.push_str(&"-".repeat(total));
    out.push('\n');
    for r in &rows {
        out.push_str(&line(r));
    }
    if let Some(a) = pf.as_ref().and_then(|v| v.get("answers")) {
        out.push_str(&format!("\nFIX ping-pong answers: {a}\n"));
    }
    for (sessions, file) in [
        ("1 session", "flood-fix-1.json"),
        ("16 sessions", "flood-fix-16.json"),
        ("16 sessions batching", "flood-fix-16-batched.json"),
    ] {
        if let Some(v) = load(dir, file)? {
            if let Some(steps) = v.get("steps").and_then(Value::as_array) {
                let best = steps
                    .iter()
                    .rev()
                    .find(|s| s["passed"] == Value::Bool(true));
                if let Some(b) = best {
                    out.push_str(&format!(
                        "FIX flood, {sessions}, at the max: achieved {}/s, p99 {}, answers {}\n",
                        fmt_rate(b["achieved"].as_f64().unwrap_or(0.0)),
                        fmt_ns(b["latency"]["p99_ns"].as_u64().unwrap_or(0)),
                        b["answers"]
                    ));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_table_compares_fix_with_the_floor() {
        let dir = std::env::temp_dir().join(format!("loadgen-table-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str, v: Value| std::fs::write(dir.join(name), v.to_string()).unwrap();
        let lat = |p50: u64| json!({"p50_ns": p50, "p99_ns": p50 * 2, "p999_ns": p50 * 3, "max_ns": p50 * 10});
        write(
            "pingpong-fix.json",
            json!({"latency": lat(26_000), "answers": {"business_reject": 10}}),
        );
        write("pingpong-echo.json", json!({"latency": lat(20_000)}));
        write(
            "flood-fix-16.json",
            json!({"max_rate": 150000.0, "steps": [{"passed": true, "achieved": 149000.0, "latency": {"p99_ns": 800000}, "answers": {}}]}),
        );
        write("flood-echo-16.json", json!({"max_rate": 600000.0}));
        write(
            "flood-echo-1.json",
            json!({"max_rate": 0.0, "steps": [{"rate": 10000.0, "passed": false}]}),
        );
        write("pingpong-echo-xcpu.json", json!({"latency": lat(50_000)}));
        write("pingpong-ws.json", json!({"latency": lat(40_000)}));
        write("flood-ws-16.json", json!({"max_rate": 120000.0}));
        write(
            "flood-fix-16-batched.json",
            json!({"tick_us": 200, "max_rate": 100000.0}),
        );
        write(
            "flood-echo-16-batched.json",
            json!({"tick_us": 200, "max_rate": 1000000.0}),
        );
        write(
            "idle.json",
            json!({"sessions": 16.0, "rss_before_kib": 10000.0, "rss_first_kib": 10300.0, "rss_after_kib": 11050.0}),
        );
        let t = comparison_table(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(t.contains("26.0 µs"), "{t}");
        assert!(t.contains("1.30×"), "{t}");
        assert!(t.contains("≤ 1.3 × echo: met"), "{t}");
        assert!(t.contains("150,000"), "{t}");
        assert!(t.contains("600,000"), "{t}");
        assert!(t.contains("0.25×"), "{t}");
        assert!(t.contains("≥ 200,000/s: not met"), "{t}");
        let one = t
            .lines()
            .find(|l| l.starts_with("flood max orders/s, p99 < 1 ms, 1 session "))
            .unwrap();
        assert!(one.contains("n/a"), "a missing file: {one}");
        assert!(one.contains("< 10,000"), "no step passed: {one}");
        assert!(t.contains("n/a"), "{t}");
        let x = t
            .lines()
            .find(|l| l.starts_with("ping-pong p99, client on another CPU"))
            .unwrap();
        assert!(x.contains("n/a") && x.contains("100.0 µs"), "{x}");
        let w = t
            .lines()
            .find(|l| l.starts_with("ws ping-pong p50"))
            .unwrap();
        assert!(w.contains("40.0 µs") && w.contains("2.00×"), "{w}");
        let w = t
            .lines()
            .find(|l| l.starts_with("ws flood max orders/s, p99 < 1 ms, 16 connections"))
            .unwrap();
        assert!(w.contains("120,000") && w.contains("0.20×"), "{w}");
        assert!(!t.contains("1 connection "), "no file, no row: {t}");
        let b = t
            .lines()
            .find(|l| {
                l.starts_with("flood max orders/s, p99 < 1 ms, 16 sessions, a write per 200 µs")
            })
            .unwrap();
        assert!(
            b.contains("100,000") && b.contains("1,000,000") && b.contains("0.10×"),
            "{b}"
        );
        assert!(b.contains("≥ 200,000/s: not met"), "{b}");
        let m = t
            .lines()
            .find(|l| l.starts_with("memory per idle session (16 logged on, after the first)"))
            .unwrap();
        assert!(m.contains("50.0 KiB") && m.contains("≤ 64 KiB: met"), "{m}");
        let f = t
            .lines()
            .find(|l| l.starts_with("memory of the first idle session"))
            .unwrap();
        assert!(f.contains("300.0 KiB"), "{f}");
    }

    #[test]
    fn rates_get_separators() {
        assert_eq!(fmt_rate(0.0), "0");
        assert_eq!(fmt_rate(999.0), "999");
        assert_eq!(fmt_rate(200_000.0), "200,000");
        assert_eq!(fmt_rate(1_000_000.0), "1,000,000");
    }
}
