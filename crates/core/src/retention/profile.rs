//! Where a sweep's time went, for the benches: kept only when `XH_RETENTION_PROFILE` is set in
//! the environment of the process that runs the sweep (benches/retention_*.py set it), and
//! printed to stderr as one `profile:` line when a part ends. Without the variable nothing is
//! kept: a sweep in production pays one `Option` check a phase.
//!
//! A profile is counts (steps, rows, pages, checkpoints: whatever the target counts) and timed
//! phases, each phase's every sample kept so the line can give its spread (p50, p90, p99, max:
//! a step's longest time matters as much as the total) and how many samples took over 5 ms (the
//! most a step may hold a server, issue 13), plus "engine": the time between the
//! end of one step and the start of the next, which is the engine's own work (policy re-read,
//! record) as the target sees it.

use std::time::{Duration, Instant};

/// Each phase's line also counts its samples over this: no step is to hold a server longer.
const OVER: Duration = Duration::from_millis(5);

/// See the module's doc.
#[derive(Debug, Default)]
pub(crate) struct Profile {
    /// Named counts, in the order first counted.
    counts: Vec<(&'static str, i64)>,
    /// Named phases and their samples, in the order first timed.
    phases: Vec<(&'static str, Vec<Duration>)>,
    engine: Duration,
    last_end: Option<Instant>,
}

impl Profile {
    /// A profile when `XH_RETENTION_PROFILE` is set, else `None` (nothing kept).
    pub(crate) fn from_env() -> Option<Profile> {
        std::env::var_os("XH_RETENTION_PROFILE").map(|_| Profile::default())
    }

    /// Adds `n` to the count `name`.
    pub(crate) fn count(&mut self, name: &'static str, n: i64) {
        match self.counts.iter_mut().find(|(k, _)| *k == name) {
            Some((_, v)) => *v += n,
            None => self.counts.push((name, n)),
        }
    }

    /// One sample of the phase `name`.
    pub(crate) fn time(&mut self, name: &'static str, took: Duration) {
        match self.phases.iter_mut().find(|(k, _)| *k == name) {
            Some((_, v)) => v.push(took),
            None => self.phases.push((name, vec![took])),
        }
    }

    /// A step begins: the time since the last one ended was the engine's.
    pub(crate) fn step_begins(&mut self) {
        if let Some(end) = self.last_end.take() {
            self.engine += end.elapsed();
        }
    }

    /// A step ended (see [`Profile::step_begins`]).
    pub(crate) fn step_ends(&mut self) {
        self.last_end = Some(Instant::now());
    }

    /// The `profile:` line: the counts, then each phase's total and spread in milliseconds,
    /// then the engine's time between steps.
    pub(crate) fn line(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let mut parts: Vec<String> = self.counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
        for (name, samples) in &self.phases {
            let mut v = samples.clone();
            v.sort();
            let at = |q: f64| v.get(((v.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or_default();
            let total: Duration = v.iter().sum();
            // The bound on a step: how many went past it.
            let over = v.iter().filter(|d| **d > OVER).count();
            parts.push(format!(
                "{name} {} total {:.0} ms, p50 {:.2} p90 {:.2} p99 {:.2} max {:.2} ms, {over} over 5 ms",
                v.len(),
                ms(total),
                ms(at(0.5)),
                ms(at(0.9)),
                ms(at(0.99)),
                ms(at(1.0))
            ));
        }
        parts.push(format!("engine between steps {:.0} ms", ms(self.engine)));
        format!("profile: {}", parts.join("; "))
    }

    /// Prints [`Profile::line`] to stderr and starts again (the next part's profile).
    pub(crate) fn print_and_reset(&mut self) {
        eprintln!("{}", self.line());
        *self = Profile::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_gives_counts_in_order_and_each_phases_total_and_spread() {
        let mut p = Profile::default();
        p.count("steps", 1);
        p.count("rows", 200);
        p.count("steps", 1);
        for ms in 1..=100 {
            p.time("held", Duration::from_millis(ms));
        }
        p.time("checkpoint", Duration::from_millis(40));
        let line = p.line();
        assert!(line.starts_with("profile: 2 steps; 200 rows; held 100 total 5050 ms, p50 "), "{line}");
        // The 100 samples 1..=100 ms: the median is about 50 ms, the 99th percentile 99, max 100.
        assert!(line.contains("p50 51.00 p90 90.00 p99 99.00 max 100.00 ms, 95 over 5 ms"), "{line}");
        assert!(line.contains("checkpoint 1 total 40 ms, p50 40.00"), "{line}");
        assert!(line.ends_with("engine between steps 0 ms"), "{line}");
        p.print_and_reset();
        assert_eq!(p.line(), "profile: engine between steps 0 ms");
    }

    #[test]
    fn the_engines_time_is_what_passes_between_a_step_and_the_next() {
        let mut p = Profile::default();
        p.step_begins(); // no step before: nothing counted
        p.step_ends();
        std::thread::sleep(Duration::from_millis(20));
        p.step_begins();
        assert!(p.engine >= Duration::from_millis(20), "{:?}", p.engine);
        let after_one = p.engine;
        p.step_begins(); // no step ended since: nothing more counted
        assert_eq!(p.engine, after_one);
    }
}
