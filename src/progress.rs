//! What each step did, shown as it happens: a spinner line per step on a terminal,
//! plain lines otherwise, nothing with `--output json` (the command prints one result).

use std::future::Future;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;

/// What a step did to its resource (or, when planning, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Created,
    Updated {
        changes: Vec<String>,
    },
    Unchanged,
    /// Found, not made by counterctl, and used as it is.
    Adopted {
        note: String,
    },
    Deleted,
    /// Already gone (uninstall) or deliberately absent (`--auth none`).
    Absent,
}

impl Outcome {
    /// `Updated` with these changes, or `Unchanged` when there are none.
    pub fn from_changes(changes: Vec<String>) -> Self {
        if changes.is_empty() { Self::Unchanged } else { Self::Updated { changes } }
    }

    pub fn changed(&self) -> bool {
        matches!(self, Self::Created | Self::Updated { .. } | Self::Deleted)
    }
}

/// How outcomes are worded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wording {
    /// What was done: "created", "updated (…)".
    Done,
    /// `--dry-run`: "create", "update (…)".
    Plan,
    /// `status`: "missing", "differs (…)", "present".
    Status,
}

impl Wording {
    /// The line's leading symbol: ✓ for done or fine, +/~/- for planned changes, ✗ for
    /// a status that needs install.
    pub fn mark(self, outcome: &Outcome) -> &'static str {
        match (self, outcome) {
            (Self::Done, _) | (_, Outcome::Unchanged | Outcome::Adopted { .. } | Outcome::Absent) => "✓",
            (Self::Plan, Outcome::Created) => "+",
            (Self::Plan, Outcome::Updated { .. }) => "~",
            (Self::Plan, Outcome::Deleted) => "-",
            (Self::Status, _) => "✗",
        }
    }

    pub fn describe(self, outcome: &Outcome) -> String {
        let changes = |changes: &[String]| changes.join("; ");
        match (self, outcome) {
            (Self::Done, Outcome::Created) => "created".into(),
            (Self::Done, Outcome::Updated { changes: c }) => format!("updated: {}", changes(c)),
            (Self::Done, Outcome::Unchanged) => "unchanged".into(),
            (Self::Done, Outcome::Deleted) => "deleted".into(),
            (Self::Done, Outcome::Absent) => "not there (nothing to do)".into(),
            (Self::Plan, Outcome::Created) => "would create".into(),
            (Self::Plan, Outcome::Updated { changes: c }) => format!("would update: {}", changes(c)),
            (Self::Plan, Outcome::Unchanged) => "unchanged".into(),
            (Self::Plan, Outcome::Deleted) => "would delete".into(),
            (Self::Plan, Outcome::Absent) => "not there".into(),
            (Self::Status, Outcome::Created) => "missing".into(),
            (Self::Status, Outcome::Updated { changes: c }) => format!("differs: {}", changes(c)),
            (Self::Status, Outcome::Unchanged) => "present".into(),
            (Self::Status, Outcome::Deleted) => "present, should not be".into(),
            (Self::Status, Outcome::Absent) => "absent (as it should be)".into(),
            (_, Outcome::Adopted { note }) => format!("adopted: {note}"),
        }
    }
}

/// One step's result, as `--output json` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    pub step: &'static str,
    pub resource: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub elapsed_ms: u128,
}

pub struct Progress {
    wording: Wording,
    /// `None` for plain lines; spinners only on a terminal.
    bars: Option<MultiProgress>,
    quiet: bool,
    reports: Mutex<Vec<StepReport>>,
}

impl Progress {
    pub fn new(wording: Wording, json: bool) -> Self {
        let bars = (!json && std::io::stdout().is_terminal()).then(MultiProgress::new);
        Self { wording, bars, quiet: json, reports: Mutex::default() }
    }

    /// Runs one step, showing it while it runs and its outcome when done.
    pub async fn step<T, E>(
        &self,
        step: &'static str,
        resource: &str,
        work: impl Future<Output = Result<(T, Outcome), E>>,
    ) -> Result<T, E> {
        let started = Instant::now();
        let bar = self.bars.as_ref().map(|bars| {
            let bar = bars.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner:.cyan} {prefix:<11} {msg}").expect("a valid template"),
            );
            bar.set_prefix(step);
            bar.set_message(format!("{resource} …"));
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        let result = work.await;
        let elapsed = started.elapsed();
        let line = match &result {
            Ok((_, outcome)) => format!("{resource:<32} {} ({})", self.wording.describe(outcome), seconds(elapsed)),
            Err(_) => format!("{resource:<32} failed ({})", seconds(elapsed)),
        };
        let mark = match &result {
            Ok((_, outcome)) => self.wording.mark(outcome),
            Err(_) => "✗",
        };
        match bar {
            Some(bar) => {
                bar.set_style(ProgressStyle::with_template("{prefix} {msg}").expect("a valid template"));
                bar.set_prefix(format!("{mark} {step:<11}"));
                bar.finish_with_message(line);
            }
            None if !self.quiet => println!("{mark} {step:<11} {line}"),
            None => {}
        }
        let (value, outcome) = result?;
        let report = StepReport { step, resource: resource.to_owned(), outcome, elapsed_ms: elapsed.as_millis() };
        self.reports.lock().expect("not poisoned").push(report);
        Ok(value)
    }

    pub fn reports(&self) -> Vec<StepReport> {
        self.reports.lock().expect("not poisoned").clone()
    }
}

fn seconds(elapsed: Duration) -> String {
    format!("{:.1}s", elapsed.as_secs_f64())
}
