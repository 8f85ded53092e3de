//! When the audit writer commits: at once, or a little later with more.
//!
//! Each commit has a fixed cost whatever its size (~250 µs of CPU on the
//! benchmark machine: an fsync, the thread hand-offs around it, the pages it
//! rewrites). When requests are slow to produce events (RS256 tokens, ~4k/s
//! on two cores) only a couple arrive during one commit, and those fixed
//! costs took about a sixth of the server's CPU (`benches/README.md`).
//! Waiting for more, like PostgreSQL's `commit_delay`, gathers them.
//!
//! Waiting only pays when events trickle in. When they pour in (ES256 at
//! ~30k/s) a commit's worth queues up during the previous commit anyway, and
//! a client waiting for its record is a client not sending the next request:
//! waiting there lowered issuance by a fifth. So the writer waits only while
//! the batch it expects without waiting (arrival rate × commit time) is
//! below the target, and never longer than `interval` after the previous
//! commit started, so a request after a quiet spell is committed at once.

use std::time::{Duration, Instant};

/// Settings: see `audit.commit_interval_ms` and `audit.commit_batch`.
#[derive(Debug, Clone, Copy)]
pub struct CommitPacing {
    /// At most one commit started per interval while events trickle in.
    /// Zero: commit whatever is queued as soon as the previous commit ends.
    pub interval: Duration,
    /// The batch worth a commit: one this large never waits.
    pub enough: usize,
}

/// Weight of the newest commit in the running averages.
const WEIGHT: f64 = 0.2;

/// The writer's recent history and the decision it feeds.
#[derive(Debug)]
pub struct Pacer {
    pacing: CommitPacing,
    last_start: Option<Instant>,
    /// Running averages; `None` until two commits have been seen.
    events_per_sec: Option<f64>,
    commit_secs: Option<f64>,
}

impl Pacer {
    pub fn new(pacing: CommitPacing) -> Self {
        Self {
            pacing,
            last_start: None,
            events_per_sec: None,
            commit_secs: None,
        }
    }

    /// Records a commit of `events` that started at `started` and took `took`.
    pub fn committed(&mut self, started: Instant, events: usize, took: Duration) {
        if let Some(last) = self.last_start {
            let gap = started.saturating_duration_since(last).as_secs_f64();
            if gap > 0.0 {
                let rate = events as f64 / gap;
                self.events_per_sec = Some(average(self.events_per_sec, rate));
            }
        }
        self.commit_secs = Some(average(self.commit_secs, took.as_secs_f64()));
        self.last_start = Some(started);
    }

    /// Until when to wait before committing the `queued` events at hand, if
    /// at all.
    pub fn wait_until(&self, now: Instant, queued: usize) -> Option<Instant> {
        if self.pacing.interval.is_zero() || queued >= self.pacing.enough {
            return None;
        }
        let deadline = self.last_start? + self.pacing.interval;
        if now >= deadline {
            return None;
        }
        let expected = match (self.events_per_sec, self.commit_secs) {
            (Some(rate), Some(commit)) => rate * commit,
            // No history yet: nothing says events pour in.
            _ => 0.0,
        };
        (expected < self.pacing.enough as f64).then_some(deadline)
    }
}

fn average(old: Option<f64>, sample: f64) -> f64 {
    old.map_or(sample, |old| old + WEIGHT * (sample - old))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn pacer() -> Pacer {
        Pacer::new(CommitPacing {
            interval: MS,
            enough: 8,
        })
    }

    /// Feeds `n` commits of `events` each, `gap` apart, each taking `took`.
    fn history(
        p: &mut Pacer,
        start: Instant,
        n: u32,
        gap: Duration,
        events: usize,
        took: Duration,
    ) -> Instant {
        let mut t = start;
        for _ in 0..n {
            p.committed(t, events, took);
            t += gap;
        }
        t - gap
    }

    #[test]
    fn a_first_event_and_one_after_a_quiet_spell_commit_at_once() {
        let mut p = pacer();
        let t0 = Instant::now();
        assert_eq!(p.wait_until(t0, 1), None);
        p.committed(t0, 1, MS / 4);
        assert_eq!(p.wait_until(t0 + 2 * MS, 1), None);
    }

    #[test]
    fn trickling_events_wait_for_the_interval() {
        let mut p = pacer();
        // ~5k events/s, 2 per 0.4 ms commit: the RS256 case.
        let last = history(&mut p, Instant::now(), 20, MS * 2 / 5, 2, MS * 2 / 5);
        let now = last + MS / 2;
        assert_eq!(p.wait_until(now, 2), Some(last + MS));
        // A batch already worth a commit does not wait.
        assert_eq!(p.wait_until(now, 8), None);
    }

    #[test]
    fn pouring_events_never_wait() {
        let mut p = pacer();
        // ~30k events/s, 24 per 0.8 ms commit: the ES256 case. Even a small
        // batch (the two halves of the clients fell out of step) goes at once.
        let last = history(&mut p, Instant::now(), 20, MS * 4 / 5, 24, MS * 4 / 5);
        assert_eq!(p.wait_until(last + MS / 10, 2), None);
    }

    #[test]
    fn zero_interval_turns_pacing_off() {
        let mut p = Pacer::new(CommitPacing {
            interval: Duration::ZERO,
            enough: 8,
        });
        let last = history(&mut p, Instant::now(), 5, MS, 1, MS / 2);
        assert_eq!(p.wait_until(last, 0), None);
    }
}
