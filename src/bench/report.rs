//! Counting and reporting: per-client statistics, their merge, and the end report as aligned
//! text and as JSON.
//!
//! Latencies are recorded in nanoseconds into HDR histograms (3 significant digits) and shown
//! in milliseconds with three decimals, i.e. microsecond precision.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::workload::OpKind;
use crate::jute::ErrorCode;

/// Largest latency a histogram holds (one hour, in ns); longer ones are clamped.
const MAX_LATENCY_NS: u64 = 3_600_000_000_000;

/// Makes an empty latency histogram.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("constant histogram bounds are valid")
}

/// Counts for one kind of operation on one client.
#[derive(Debug, Clone)]
pub struct OpStats {
    /// Latencies of measured, successful and failed replies alike, in ns.
    pub hist: Histogram<u64>,
    /// Measured replies.
    pub count: u64,
    /// Measured replies with a non-zero error code, by code.
    pub errors: BTreeMap<i32, u64>,
}

impl OpStats {
    fn new() -> Self {
        OpStats {
            hist: new_histogram(),
            count: 0,
            errors: BTreeMap::new(),
        }
    }

    fn merge(&mut self, other: &OpStats) {
        // Same bounds on both sides, so adding cannot fail; a failure would only drop samples.
        let _ = self.hist.add(&other.hist);
        self.count += other.count;
        for (code, n) in &other.errors {
            *self.errors.entry(*code).or_default() += n;
        }
    }
}

/// One client's statistics. The client's reader updates it once per batch of replies; the
/// progress printer and the final report read it.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    ops: [Option<OpStats>; OpKind::COUNT],
    /// Replies per kind, warm-up included: the progress line's throughput (see
    /// [`Stats::completed`]).
    completed: [u64; OpKind::COUNT],
    /// Watch notifications that arrived on a connection that did not expect them.
    pub stray_notifications: u64,
}

impl Stats {
    /// Records one reply. `measured` is false during warm-up: then only `completed` counts.
    pub fn record(&mut self, kind: OpKind, latency_ns: u64, err: i32, measured: bool) {
        self.completed[kind.index()] += 1;
        if !measured {
            return;
        }
        let op = self.ops[kind.index()].get_or_insert_with(OpStats::new);
        op.hist.saturating_record(latency_ns.max(1));
        op.count += 1;
        if err != 0 {
            *op.errors.entry(err).or_default() += 1;
        }
    }

    /// Replies of these kinds so far, warm-up included. A workload's progress counts only its
    /// main kinds: a `sessions` cycle is one session, not its connect, create and close too.
    pub fn completed(&self, kinds: &[OpKind]) -> u64 {
        kinds.iter().map(|k| self.completed[k.index()]).sum()
    }

    pub fn op(&self, kind: OpKind) -> Option<&OpStats> {
        self.ops[kind.index()].as_ref()
    }

    pub fn merge(&mut self, other: &Stats) {
        for (mine, theirs) in self.ops.iter_mut().zip(other.ops.iter()) {
            if let Some(theirs) = theirs {
                match mine {
                    Some(m) => m.merge(theirs),
                    None => *mine = Some(theirs.clone()),
                }
            }
        }
        for (mine, theirs) in self.completed.iter_mut().zip(other.completed.iter()) {
            *mine += theirs;
        }
        self.stray_notifications += other.stray_notifications;
    }

    /// Measured count and merged histogram over `kinds`.
    pub fn combined(&self, kinds: &[OpKind]) -> (u64, Histogram<u64>) {
        let mut h = new_histogram();
        let mut n = 0;
        for k in kinds {
            if let Some(op) = self.op(*k) {
                let _ = h.add(&op.hist);
                n += op.count;
            }
        }
        (n, h)
    }

    pub fn error_total(&self) -> u64 {
        self.ops
            .iter()
            .flatten()
            .map(|o| o.errors.values().sum::<u64>())
            .sum()
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    #[serde(rename = "p99.9")]
    pub p99_9: f64,
    pub max: f64,
    pub mean: f64,
}

fn ns_to_ms(ns: f64) -> f64 {
    // Round to whole microseconds.
    (ns / 1_000.0).round() / 1_000.0
}

impl Latency {
    pub fn from_histogram(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency {
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                p99_9: 0.0,
                max: 0.0,
                mean: 0.0,
            };
        }
        let q = |q: f64| ns_to_ms(h.value_at_quantile(q) as f64);
        Latency {
            p50: q(0.50),
            p90: q(0.90),
            p99: q(0.99),
            p99_9: q(0.999),
            max: ns_to_ms(h.max() as f64),
            mean: ns_to_ms(h.mean()),
        }
    }
}

/// One row of the per-operation table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpReport {
    pub op: String,
    pub count: u64,
    pub ops_per_sec: f64,
    pub latency_ms: Latency,
}

/// Errors of one code on one operation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorCount {
    pub op: String,
    pub code: i32,
    pub name: String,
    pub count: u64,
}

/// The end report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub workload: String,
    pub servers: Vec<String>,
    pub clients: usize,
    pub in_flight: usize,
    pub value_size: usize,
    pub keys: usize,
    pub warmup_s: f64,
    /// The measured window actually covered.
    pub duration_s: f64,
    pub setup_s: f64,
    pub teardown_s: f64,
    /// Measured operations of the workload's main kind(s) and their rate.
    pub ops: u64,
    pub ops_per_sec: f64,
    pub latency_ms: Latency,
    pub by_op: Vec<OpReport>,
    pub errors: Vec<ErrorCount>,
    /// Why the run stopped early (a lost connection, a stall), if it did.
    pub aborted: Option<String>,
}

/// The run's parameters the report repeats.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub workload: String,
    pub servers: Vec<String>,
    pub clients: usize,
    pub in_flight: usize,
    pub value_size: usize,
    pub keys: usize,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub setup_s: f64,
    pub teardown_s: f64,
    pub aborted: Option<String>,
}

/// The name ZooKeeper gives an error code, or the number when it is unknown.
pub fn error_name(code: i32) -> String {
    match ErrorCode::from_code(code) {
        Some(e) => format!("{e:?}"),
        None => format!("code {code}"),
    }
}

impl Report {
    /// Builds the report from merged statistics. `main` are the kinds that make up the
    /// headline throughput and latency.
    pub fn build(info: RunInfo, stats: &Stats, main: &[OpKind]) -> Report {
        let secs = if info.duration_s > 0.0 {
            info.duration_s
        } else {
            f64::MIN_POSITIVE
        };
        let rate = |n: u64| ((n as f64 / secs) * 10.0).round() / 10.0;
        let (ops, hist) = stats.combined(main);
        let mut by_op = Vec::new();
        let mut errors = Vec::new();
        for kind in OpKind::ALL {
            if let Some(op) = stats.op(kind) {
                by_op.push(OpReport {
                    op: kind.name().to_string(),
                    count: op.count,
                    ops_per_sec: rate(op.count),
                    latency_ms: Latency::from_histogram(&op.hist),
                });
                for (code, n) in &op.errors {
                    errors.push(ErrorCount {
                        op: kind.name().to_string(),
                        code: *code,
                        name: error_name(*code),
                        count: *n,
                    });
                }
            }
        }
        Report {
            workload: info.workload,
            servers: info.servers,
            clients: info.clients,
            in_flight: info.in_flight,
            value_size: info.value_size,
            keys: info.keys,
            warmup_s: info.warmup_s,
            duration_s: (info.duration_s * 1000.0).round() / 1000.0,
            setup_s: (info.setup_s * 1000.0).round() / 1000.0,
            teardown_s: (info.teardown_s * 1000.0).round() / 1000.0,
            ops,
            ops_per_sec: rate(ops),
            latency_ms: Latency::from_histogram(&hist),
            by_op,
            errors,
            aborted: info.aborted,
        }
    }

    /// The aligned text form.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "workload    {} ({} clients x {} in flight, {}-byte values, {} keys) against {}",
            self.workload,
            self.clients,
            self.in_flight,
            self.value_size,
            self.keys,
            self.servers.join(",")
        );
        let _ = writeln!(
            s,
            "measured    {:.2} s after {:.2} s warm-up (setup {:.2} s, teardown {:.2} s)",
            self.duration_s, self.warmup_s, self.setup_s, self.teardown_s
        );
        let _ = writeln!(
            s,
            "throughput  {:.1} ops/s ({} ops)",
            self.ops_per_sec, self.ops
        );
        let l = &self.latency_ms;
        let _ = writeln!(
            s,
            "latency ms  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            l.p50, l.p90, l.p99, l.p99_9, l.max
        );
        s.push('\n');
        let mut rows = vec![vec![
            "op".to_string(),
            "count".into(),
            "ops/s".into(),
            "p50 ms".into(),
            "p90 ms".into(),
            "p99 ms".into(),
            "p99.9 ms".into(),
            "max ms".into(),
            "mean ms".into(),
        ]];
        for op in &self.by_op {
            let l = &op.latency_ms;
            rows.push(vec![
                op.op.clone(),
                op.count.to_string(),
                format!("{:.1}", op.ops_per_sec),
                format!("{:.3}", l.p50),
                format!("{:.3}", l.p90),
                format!("{:.3}", l.p99),
                format!("{:.3}", l.p99_9),
                format!("{:.3}", l.max),
                format!("{:.3}", l.mean),
            ]);
        }
        s.push_str(&table(&rows));
        s.push('\n');
        if self.errors.is_empty() {
            s.push_str("errors      none\n");
        } else {
            let mut rows = vec![vec![
                "error".to_string(),
                "code".into(),
                "op".into(),
                "count".into(),
            ]];
            for e in &self.errors {
                rows.push(vec![
                    e.name.clone(),
                    e.code.to_string(),
                    e.op.clone(),
                    e.count.to_string(),
                ]);
            }
            s.push_str(&table(&rows));
        }
        if let Some(why) = &self.aborted {
            let _ = writeln!(s, "ABORTED     {why}");
        }
        s
    }

    pub fn to_json(&self) -> String {
        // Serializing plain structs of numbers and strings cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// Formats rows as a table: first column left-aligned, the rest right-aligned, two spaces
/// between columns, no trailing spaces.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut width = vec![0; cols];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let mut s = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i == 0 {
                let _ = write!(line, "{c:<w$}", w = width[0]);
            } else {
                let _ = write!(line, "  {c:>w$}", w = width[i]);
            }
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}

/// The progress line printed once a second.
pub fn progress_line(
    elapsed_s: u64,
    phase: &str,
    ops_per_sec: f64,
    p99_ms: Option<f64>,
    errors: u64,
) -> String {
    let p99 = match p99_ms {
        Some(p) => format!("{p:.3} ms"),
        None => "-".to_string(),
    };
    format!(
        "[{elapsed_s:>4}s] {phase:<8} {ops_per_sec:>10.0} ops/s  p99 {p99:>10}  errors {errors}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> RunInfo {
        RunInfo {
            workload: "get".into(),
            servers: vec!["127.0.0.1:2181".into()],
            clients: 16,
            in_flight: 8,
            value_size: 100,
            keys: 10_000,
            warmup_s: 2.0,
            duration_s: 10.0,
            setup_s: 0.5,
            teardown_s: 0.25,
            aborted: None,
        }
    }

    #[test]
    fn percentiles_are_in_ms_with_microsecond_precision() {
        let mut st = Stats::default();
        // 1..=1000 µs, one each.
        for us in 1..=1000u64 {
            st.record(OpKind::Get, us * 1_000, 0, true);
        }
        let l = Latency::from_histogram(&st.op(OpKind::Get).unwrap().hist);
        // HDR with 3 digits is exact to 0.1% here.
        assert!((l.p50 - 0.5).abs() <= 0.001, "{l:?}");
        assert!((l.p90 - 0.9).abs() <= 0.001, "{l:?}");
        assert!((l.p99 - 0.99).abs() <= 0.001, "{l:?}");
        assert!((l.p99_9 - 0.999).abs() <= 0.001, "{l:?}");
        assert!((l.max - 1.0).abs() <= 0.001, "{l:?}");
        // Three decimals at most.
        for v in [l.p50, l.p90, l.p99, l.p99_9, l.max, l.mean] {
            assert_eq!((v * 1000.0).round() / 1000.0, v);
        }
    }

    #[test]
    fn warmup_replies_only_count_as_completed() {
        let mut st = Stats::default();
        st.record(OpKind::Set, 5_000, 0, false);
        st.record(OpKind::Set, 5_000, -101, false);
        assert_eq!(st.completed(&[OpKind::Set]), 2);
        assert_eq!(st.completed(&[OpKind::Get]), 0);
        // A sessions cycle records four kinds; its progress counts one.
        for kind in [
            OpKind::Connect,
            OpKind::Create,
            OpKind::CloseSession,
            OpKind::Session,
        ] {
            st.record(kind, 5_000, 0, true);
        }
        assert_eq!(st.completed(&[OpKind::Session]), 1);
        assert!(st.op(OpKind::Set).is_none());
        assert_eq!(st.error_total(), 0);
    }

    #[test]
    fn merge_adds_counts_errors_and_histograms() {
        let mut a = Stats::default();
        let mut b = Stats::default();
        a.record(OpKind::Create, 1_000_000, 0, true);
        b.record(OpKind::Create, 3_000_000, -110, true);
        b.record(OpKind::Get, 2_000, 0, true);
        a.merge(&b);
        let c = a.op(OpKind::Create).unwrap();
        assert_eq!(c.count, 2);
        assert_eq!(c.errors.get(&-110), Some(&1));
        assert_eq!(c.hist.len(), 2);
        assert_eq!(a.error_total(), 1);
        let (n, h) = a.combined(&[OpKind::Create, OpKind::Get]);
        assert_eq!(n, 3);
        assert_eq!(h.len(), 3);
    }

    #[test]
    fn text_report_is_aligned_and_lists_errors() {
        let mut st = Stats::default();
        for _ in 0..100 {
            st.record(OpKind::Get, 250_000, 0, true);
        }
        st.record(OpKind::Set, 1_234_567, -101, true);
        let r = Report::build(info(), &st, &[OpKind::Get, OpKind::Set]);
        assert_eq!(r.ops, 101);
        assert_eq!(r.ops_per_sec, 10.1);
        let text = r.to_text();
        assert!(text.contains("throughput  10.1 ops/s (101 ops)"), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        let header = lines.iter().position(|l| l.starts_with("op ")).unwrap();
        // Header and rows have the same width and the numbers end in the same column.
        let w = lines[header].len();
        assert_eq!(lines[header + 1].len(), w, "{text}");
        assert_eq!(lines[header + 2].len(), w, "{text}");
        assert!(lines[header + 1].starts_with("get "));
        assert!(lines[header + 1].contains("  0.250  "), "{text}");
        assert!(lines[header + 2].contains("  1.235  "), "{text}");
        assert!(text.contains("NoNode  -101  set      1"), "{text}");
        assert!(!text.contains("ABORTED"));
    }

    #[test]
    fn json_report_has_the_documented_fields() {
        let mut st = Stats::default();
        st.record(OpKind::Get, 1_500, 0, true);
        let mut i = info();
        i.aborted = Some("client 3 lost its connection".into());
        let r = Report::build(i, &st, &[OpKind::Get]);
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["workload"], "get");
        assert_eq!(v["ops"], 1);
        assert_eq!(v["latency_ms"]["p99.9"], 0.002);
        assert_eq!(v["by_op"][0]["op"], "get");
        assert_eq!(v["errors"].as_array().unwrap().len(), 0);
        assert_eq!(v["aborted"], "client 3 lost its connection");
        assert!(r
            .to_text()
            .contains("ABORTED     client 3 lost its connection"));
    }

    #[test]
    fn table_aligns_columns() {
        let t = table(&[
            vec!["a".into(), "1".into()],
            vec!["long".into(), "12345".into()],
        ]);
        assert_eq!(t, "a         1\nlong  12345\n");
    }

    #[test]
    fn progress_line_formats() {
        assert_eq!(
            progress_line(3, "measure", 31245.6, Some(1.2345), 2),
            "[   3s] measure       31246 ops/s  p99   1.234 ms  errors 2"
        );
        assert!(progress_line(1, "warmup", 0.0, None, 0).contains("p99          -"));
    }
}
