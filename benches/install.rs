//! Figures for `counterctl install` against moto (docs/figures.md): wall time and AWS
//! calls of a fresh install, a re-install and an uninstall, each through the recording
//! proxy of the tests. Calls on the critical path are measured, not counted by hand: the
//! proxy adds a fixed latency to every call, and the extra wall time divided by that
//! latency is the number of calls made one after another.
//!
//! Run with `scripts/bench-install.sh` (starts moto).

#[allow(dead_code, unused_imports, unused_macros)]
#[path = "../tests/it/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::cli::Deployment;

const RUNS: usize = 5;
/// Per-call latency added to measure the critical path (a same-region AWS call is ~20–100 ms).
const LATENCY: Duration = Duration::from_millis(100);

#[derive(Default)]
struct Samples {
    wall: Vec<Duration>,
    calls: Vec<usize>,
    mutating: Vec<usize>,
}

impl Samples {
    fn median_wall(&self) -> Duration {
        let mut wall = self.wall.clone();
        wall.sort();
        wall[wall.len() / 2]
    }

    fn median(values: &[usize]) -> usize {
        let mut values = values.to_vec();
        values.sort();
        values[values.len() / 2]
    }
}

/// Runs `command` for `stack` and records its wall time and the calls it made.
async fn measure(stack: &Deployment, command: &str, args: &[&str], samples: &mut Samples) {
    let before = stack.proxy.actions().len();
    let started = Instant::now();
    stack.run(command, args).await.ok();
    samples.wall.push(started.elapsed());
    let actions = stack.proxy.actions()[before..].to_vec();
    samples.calls.push(actions.len());
    samples.mutating.push(actions.iter().filter(|action| support::aws_proxy::is_mutating(action)).count());
}

#[tokio::main]
async fn main() {
    let (mut fresh, mut again, mut removal) = (Samples::default(), Samples::default(), Samples::default());
    let (mut fresh_slow, mut again_slow) = (Samples::default(), Samples::default());
    for _ in 0..RUNS {
        let stack = Deployment::new().await;
        measure(&stack, "install", &[], &mut fresh).await;
        measure(&stack, "install", &[], &mut again).await;
        measure(&stack, "uninstall", &["--yes"], &mut removal).await;

        let slow = Deployment::new().await;
        slow.proxy.set_latency(LATENCY);
        measure(&slow, "install", &[], &mut fresh_slow).await;
        measure(&slow, "install", &[], &mut again_slow).await;
    }
    let critical_path = |slow: &Samples, fast: &Samples| {
        (slow.median_wall().saturating_sub(fast.median_wall())).as_secs_f64() / LATENCY.as_secs_f64()
    };
    println!("counterctl against moto on loopback, median of {RUNS} runs:");
    for (name, samples, slow) in [
        ("fresh install", &fresh, Some(&fresh_slow)),
        ("re-install", &again, Some(&again_slow)),
        ("uninstall", &removal, None),
    ] {
        print!(
            "  {name:<14} {:>7.0} ms  {:>3} AWS calls ({} mutating)",
            samples.median_wall().as_secs_f64() * 1e3,
            Samples::median(&samples.calls),
            Samples::median(&samples.mutating)
        );
        match slow {
            Some(slow) => println!(
                "; with {} ms per call: {:.0} ms, critical path ≈ {:.1} calls",
                LATENCY.as_millis(),
                slow.median_wall().as_secs_f64() * 1e3,
                critical_path(slow, samples)
            ),
            None => println!(),
        }
    }
}
