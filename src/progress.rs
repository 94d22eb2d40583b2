//! Display only: the plan as lines, each apply step as it runs (a spinner line per step
//! on a terminal, plain lines otherwise, nothing with `--output json`), and a command's
//! report, printed once. Results do not pass through here: the command makes its report
//! from the plan and what apply returned.

use std::future::Future;
use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::aws::Clients;
use crate::change::{Action, Change, Delete, Deletion, Diff};

/// The resource column: as wide as its longest label, `function url`.
const LABEL_WIDTH: usize = 12;

/// How a change is worded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wording {
    /// What was done: "created", "updated: …".
    Done,
    /// `--dry-run`: "would create", "would update: …".
    Plan,
    /// `status`: "missing", "differs: …", "present".
    Status,
}

impl Wording {
    /// The line's leading symbol: ✓ for done or fine, +/~/- for planned changes, ✗ for
    /// a status that needs install.
    pub(crate) fn mark(self, action: &Action<Vec<Diff>>) -> &'static str {
        match (self, action) {
            (Self::Done, _) => "✓",
            (_, action) if !action.changes() => "✓",
            (Self::Plan, Action::Create) => "+",
            (Self::Plan, Action::Delete(_)) => "-",
            (Self::Plan, _) => "~",
            (Self::Status, _) => "✗",
        }
    }

    pub(crate) fn describe(self, change: &Change) -> String {
        let mut text = self.describe_action(&change.action);
        if change.breaking && change.action.changes() {
            text.push_str(" [breaks existing callers]");
        }
        text
    }

    pub(crate) fn describe_action(self, action: &Action<Vec<Diff>>) -> String {
        let diffs = |diffs: &[Diff]| diffs.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        match (self, action) {
            (Self::Done, Action::Create) => "created".into(),
            (Self::Done, Action::Update(d)) => format!("updated: {}", diffs(d)),
            (Self::Done, Action::Delete(reason)) => format!("deleted ({reason})"),
            (Self::Done, Action::Absent) => "not there (nothing to do)".into(),
            (Self::Plan, Action::Create) => "would create".into(),
            (Self::Plan, Action::Update(d)) => format!("would update: {}", diffs(d)),
            (Self::Plan, Action::Adopt(d)) if !d.is_empty() => format!("would adopt: {}", diffs(d)),
            (Self::Plan, Action::Delete(reason)) => format!("would delete ({reason})"),
            (Self::Plan, Action::Absent) => "not there".into(),
            (Self::Status, Action::Create) => "missing".into(),
            (Self::Status, Action::Update(d)) => format!("differs: {}", diffs(d)),
            (Self::Status, Action::Adopt(d)) if !d.is_empty() => format!("not managed yet: {}", diffs(d)),
            (Self::Status, Action::Delete(reason)) => format!("present, should not be ({reason})"),
            (Self::Status, Action::Absent) => "absent (as it should be)".into(),
            (Self::Status, Action::Keep) => "present".into(),
            (_, Action::Keep) => "unchanged".into(),
            (_, Action::Adopt(d)) if d.is_empty() => "adopted: not made by counterctl, used as it is".into(),
            (_, Action::Adopt(d)) => format!("adopted: {}", diffs(d)),
            (_, Action::Retain(reason)) => format!("kept: {reason}"),
        }
    }

    /// One line for a change: mark, resource, name, description.
    pub(crate) fn line(self, change: &Change) -> String {
        format!(
            "{} {:<LABEL_WIDTH$} {:<32} {}",
            self.mark(&change.action),
            change.resource.label(),
            change.name,
            self.describe(change)
        )
    }
}

/// Writes a line to stdout; an error (a closed pipe) goes back to the caller, which ends
/// quietly on it.
pub(crate) fn out(line: impl std::fmt::Display) -> std::io::Result<()> {
    writeln!(std::io::stdout().lock(), "{line}")
}

/// Prints a command's report, once: as JSON (`--output json`), else as its text.
pub(crate) fn report(json: bool, report: &(impl Serialize + std::fmt::Display)) -> anyhow::Result<()> {
    match json {
        true => out(serde_json::to_string_pretty(report)?)?,
        false => out(report)?,
    }
    Ok(())
}

/// Asks a question on the terminal and returns the answer, trimmed; `question` prints
/// what comes before it and returns it. Without a terminal to ask on, fails with
/// `refusal`.
pub(crate) fn ask(refusal: &str, question: impl FnOnce() -> std::io::Result<String>) -> anyhow::Result<String> {
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("{refusal}");
    }
    let question = question()?;
    print!("{question} ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim().to_owned())
}

pub(crate) struct Progress {
    /// `None` for plain lines; spinners only on a terminal.
    bars: Option<MultiProgress>,
    quiet: bool,
}

impl Progress {
    pub(crate) fn new(json: bool) -> Self {
        let bars = (!json && std::io::stdout().is_terminal()).then(MultiProgress::new);
        Self { bars, quiet: json }
    }

    /// Shows `change` while `work` carries it out, and its outcome when done.
    pub(crate) async fn step<T>(
        &self,
        change: Change,
        work: impl Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        let work = async { work.await.map(|value| (value, None)) };
        self.step_noting(change, work).await
    }

    /// As [`step`](Self::step), for work that may find AWS otherwise than the plan read
    /// it (a resource made since by an interrupted run): its note is shown instead of the
    /// planned outcome, and goes no further.
    pub(crate) async fn step_noting<T>(
        &self,
        change: Change,
        work: impl Future<Output = anyhow::Result<(T, Option<String>)>>,
    ) -> anyhow::Result<T> {
        let started = Instant::now();
        let label = change.resource.label();
        let bar = self.bars.as_ref().map(|bars| {
            let bar = bars.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template(&format!("{{spinner:.cyan}} {{prefix:<{LABEL_WIDTH}}} {{msg}}"))
                    .expect("a valid template"),
            );
            bar.set_prefix(label);
            bar.set_message(format!("{} …", change.name));
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        let result = work.await;
        let elapsed = format!("{:.1}s", started.elapsed().as_secs_f64());
        let (mark, text) = match &result {
            Ok((_, Some(note))) => ("✓", format!("{note} ({elapsed})")),
            Ok((_, None)) => {
                (Wording::Done.mark(&change.action), format!("{} ({elapsed})", Wording::Done.describe(&change)))
            }
            Err(_) => ("✗", format!("failed ({elapsed})")),
        };
        let line = format!("{:<32} {text}", change.name);
        match bar {
            Some(bar) => {
                bar.set_style(ProgressStyle::with_template("{prefix} {msg}").expect("a valid template"));
                bar.set_prefix(format!("{mark} {label:<LABEL_WIDTH$}"));
                bar.finish_with_message(line);
            }
            // Progress is best effort: a closed stdout shows up when the result is printed.
            None if !self.quiet => {
                let _ = out(format!("{mark} {label:<LABEL_WIDTH$} {line}"));
            }
            None => {}
        }
        result.map(|(value, _)| value)
    }

    /// Carries out a deletion, every target under one step; returns the reasons AWS
    /// gave for what it kept.
    pub(crate) async fn delete<T: Delete>(
        &self,
        clients: &Clients,
        deletion: &Deletion<T>,
    ) -> anyhow::Result<Vec<String>> {
        if !deletion.deletes() {
            return Ok(Vec::new());
        }
        let work = async {
            let mut kept = Vec::new();
            for target in &deletion.targets {
                kept.extend(target.delete(clients).await?);
            }
            let note = (!kept.is_empty()).then(|| format!("kept: {}", kept.join("; ")));
            anyhow::Ok((kept, note))
        };
        self.step_noting(deletion.row.row(), work).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::change::{Action, Nothing, Planned, Resource};

    #[test]
    fn every_resource_label_fits_its_column_so_names_line_up() {
        let resources = [
            Resource::Table,
            Resource::LogGroup,
            Resource::Role,
            Resource::Policy,
            Resource::Function,
            Resource::Alias,
            Resource::FunctionUrl,
            Resource::Permission,
            Resource::Api,
            Resource::Route,
            Resource::Integration,
            Resource::Stage,
            Resource::ApiKey,
            Resource::UsagePlan,
        ];
        let name_columns: Vec<usize> = resources
            .iter()
            .map(|resource| {
                let line = Wording::Status.line(&Planned::new(*resource, "NAME", Action::<Nothing>::Keep).row());
                line.find("NAME").unwrap()
            })
            .collect();
        assert!(name_columns.iter().all(|column| *column == name_columns[0]), "{name_columns:?}");
    }
}
