//! Seed sweeps: run one scenario over a range of seeds and collect the failing ones, each
//! with its first failure and replay command.

use core::fmt;
use core::ops::Range;

use crate::check::Failure;
use crate::protocol::Protocol;
use crate::scenario::Scenario;

/// What a sweep found.
#[derive(Clone, Debug, Default)]
pub struct SweepReport {
    /// The scenario's name.
    pub scenario: String,
    /// The seeds run.
    pub seeds: Range<u64>,
    /// Each failing seed's earliest failure (which names the seed and replay command).
    pub failures: Vec<Failure>,
    /// Events processed over all seeds.
    pub events: u64,
}

impl SweepReport {
    /// True when every seed passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// The failing seeds, in order.
    pub fn failing_seeds(&self) -> Vec<u64> {
        self.failures.iter().map(|f| f.seed).collect()
    }
}

impl fmt::Display for SweepReport {
    /// A summary line, then one block per failing seed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let runs = self.seeds.end.saturating_sub(self.seeds.start);
        writeln!(
            f,
            "{}: seeds {}..{}: {} passed, {} failed",
            self.scenario,
            self.seeds.start,
            self.seeds.end,
            runs - self.failures.len() as u64,
            self.failures.len()
        )?;
        for fail in &self.failures {
            writeln!(f, "  seed {}: {fail}", fail.seed)?;
        }
        Ok(())
    }
}

/// Runs `scenario` once per seed in `seeds`, without traces.
pub fn sweep<P: Protocol>(scenario: &Scenario<P>, seeds: Range<u64>) -> SweepReport {
    let mut report = SweepReport {
        scenario: scenario.name.clone(),
        seeds: seeds.clone(),
        ..SweepReport::default()
    };
    for seed in seeds {
        let r = scenario.sim(seed, false).run_to_report();
        report.events += r.stats.events;
        if let Some(f) = r.first_failure() {
            report.failures.push(f);
        }
    }
    report
}
