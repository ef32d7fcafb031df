//! One benchmark's figures in a shape every benchmark shares: a table,
//! the ratios against the named reference (with the goal, where there is
//! one), and the load it ran under. Benchmarks print their own text; this
//! is what `flatnet-lab bench NAME` keeps as JSON and what `bench all`
//! turns into docs/benchmarks.md.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The file a benchmark writes its report to, when set (`flatnet-lab
/// bench` sets it; a plain `cargo bench` run writes nothing).
pub const JSON_ENV: &str = "FLATNET_BENCH_JSON";

/// flatnet's figure against the reference's, as a ratio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ratio {
    /// What is compared, e.g. "ADD p99 at c=16, flatnet / ptp+host-local".
    pub what: String,
    pub value: f64,
    /// The goal in words, e.g. "<= 1.5".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub met: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The `flatnet-lab bench` name: "cni", "policy", …
    pub bench: String,
    pub title: String,
    pub columns: Vec<String>,
    /// Cells as shown (numbers already rounded to what is meaningful).
    pub rows: Vec<Vec<String>>,
    pub ratios: Vec<Ratio>,
    #[serde(default)]
    pub notes: Vec<String>,
    /// /proc/loadavg at the end of the run.
    pub load: String,
}

/// The 1/5/15-minute load averages, now.
pub fn loadavg() -> String {
    let l = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    l.split_whitespace().take(3).collect::<Vec<_>>().join(" / ")
}

impl Report {
    pub fn new(bench: &str, title: impl Into<String>, columns: &[&str]) -> Report {
        Report {
            bench: bench.into(),
            title: title.into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
            ratios: Vec::new(),
            notes: Vec::new(),
            load: loadavg(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) -> &mut Self {
        self.rows.push(cells);
        self
    }

    /// A ratio; `goal` is `(words, met)`.
    pub fn ratio(&mut self, what: impl Into<String>, value: f64, goal: Option<(&str, bool)>) {
        self.ratios.push(Ratio {
            what: what.into(),
            value,
            goal: goal.map(|g| g.0.to_string()),
            met: goal.map(|g| g.1),
        });
    }

    pub fn note(&mut self, n: impl Into<String>) {
        self.notes.push(n.into());
    }

    /// Writes the report where [`JSON_ENV`] says (nothing when unset); an
    /// error is printed, not raised: the figures were printed already.
    pub fn emit(&mut self) {
        self.load = loadavg();
        let Some(path) = std::env::var_os(JSON_ENV).map(PathBuf::from) else {
            return;
        };
        let body = match serde_json::to_vec_pretty(self) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{JSON_ENV}: {e}");
                return;
            }
        };
        if let Some(d) = path.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        match std::fs::write(&path, body) {
            Ok(()) => eprintln!("report written to {}", path.display()),
            Err(e) => eprintln!("{JSON_ENV}: {}: {e}", path.display()),
        }
    }

    /// The report as a Markdown section body (table, ratios, notes).
    pub fn markdown(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "**{}**\n", self.title);
        if !self.columns.is_empty() {
            let _ = writeln!(o, "| {} |", self.columns.join(" | "));
            let _ = writeln!(o, "|{}", "---|".repeat(self.columns.len()));
            for r in &self.rows {
                let _ = writeln!(o, "| {} |", r.join(" | "));
            }
            o.push('\n');
        }
        for r in &self.ratios {
            let goal = match (&r.goal, r.met) {
                (Some(g), Some(true)) => format!(" (goal {g}: met)"),
                (Some(g), Some(false)) => format!(" (goal {g}: **not met**)"),
                (Some(g), None) => format!(" (goal {g})"),
                _ => String::new(),
            };
            let _ = writeln!(o, "- {}: **{:.2}**{goal}", r.what, r.value);
        }
        for n in &self.notes {
            let _ = writeln!(o, "- {n}");
        }
        let _ = writeln!(o, "- load average at the end: {}", self.load);
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_round_trips_and_renders_its_goal() {
        let mut r = Report::new("cni", "CNI latency", &["plugin", "ADD p99"]);
        r.row(vec!["flatnet".into(), "40.1 ms".into()]);
        r.ratio("ADD p99 flatnet / ptp", 0.71, Some(("< 50 ms", true)));
        r.ratio("apply / bare", 1.7, Some(("<= 1.5", false)));
        let back: Report = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        let md = r.markdown();
        assert!(md.contains("| flatnet | 40.1 ms |"), "{md}");
        assert!(md.contains("|---|---|"), "{md}");
        assert!(md.contains("**0.71** (goal < 50 ms: met)"), "{md}");
        assert!(md.contains("**1.70** (goal <= 1.5: **not met**)"), "{md}");
    }
}
