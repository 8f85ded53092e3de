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

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::config::CommitPacing;

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

/// Where the writer reads the time its pacing decides on, and waits.
///
/// On the system clock: the monotonic clock and tokio's timer. Under a
/// manual clock (tests) the same, until a test hands pacing to the manual
/// clock ([`PaceClock::follow_manual_clock`]): from then on pacing time
/// moves only when the test moves the clock, so whether records wait and
/// when their wait ends no longer depend on how fast a loaded machine
/// gets there; what the writer holds meanwhile is published, so the test
/// knows when its batch is complete.
#[derive(Debug, Clone)]
pub enum PaceClock {
    System,
    Manual(Arc<ManualPace>),
}

/// Pacing state under a manual clock.
#[derive(Debug)]
pub struct ManualPace {
    clock: Clock,
    /// Once handed over: the instant that stands for a reading of the
    /// manual clock (ms), both taken at the hand-over.
    followed: Mutex<Option<(Instant, i64)>>,
    held: AtomicUsize,
}

/// How often a wait on a manual clock looks at it again.
const MANUAL_TICK: Duration = Duration::from_millis(1);

impl PaceClock {
    pub fn new(clock: &Clock) -> Self {
        match clock {
            Clock::System => PaceClock::System,
            Clock::Manual(_) => PaceClock::Manual(Arc::new(ManualPace {
                clock: clock.clone(),
                followed: Mutex::new(None),
                held: AtomicUsize::new(0),
            })),
        }
    }

    /// Hands pacing to the manual clock; no effect on the system clock.
    /// Pacing time goes on from the real time of the hand-over, so a
    /// history taken before it stays consistent.
    pub fn follow_manual_clock(&self) {
        if let PaceClock::Manual(m) = self {
            *lock(&m.followed) = Some((Instant::now(), m.clock.now_ms()));
        }
    }

    /// Pacing time at the real instant `real`: `real` itself unless pacing
    /// follows a manual clock.
    pub fn at(&self, real: Instant) -> Instant {
        match self {
            PaceClock::System => real,
            PaceClock::Manual(m) => match *lock(&m.followed) {
                None => real,
                Some((base, base_ms)) => {
                    let ms = u64::try_from(m.clock.now_ms() - base_ms).unwrap_or(0);
                    base + Duration::from_millis(ms)
                }
            },
        }
    }

    /// Waits until pacing time reaches `deadline`. `held` counts the events
    /// the writer holds for the commit, for [`PaceClock::held`].
    pub async fn sleep_until(&self, deadline: Instant, held: impl Fn() -> usize) {
        match self {
            PaceClock::Manual(m) if lock(&m.followed).is_some() => {
                while self.at(Instant::now()) < deadline {
                    m.held.store(held(), Ordering::SeqCst);
                    tokio::time::sleep(MANUAL_TICK).await;
                }
                m.held.store(0, Ordering::SeqCst);
            }
            _ => tokio::time::sleep_until(deadline.into()).await,
        }
    }

    /// Events held in a wait that follows a manual clock; 0 otherwise.
    pub fn held(&self) -> usize {
        match self {
            PaceClock::System => 0,
            PaceClock::Manual(m) => m.held.load(Ordering::SeqCst),
        }
    }
}

/// The hand-over state is a plain value: a panic elsewhere cannot leave it
/// half-written.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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

    #[test]
    fn a_followed_manual_clock_is_pacing_time() {
        let clock = Clock::manual(1_000);
        let pace = PaceClock::new(&clock);
        let real = Instant::now();
        assert_eq!(pace.at(real), real, "real time until handed over");
        pace.follow_manual_clock();
        let t0 = pace.at(Instant::now());
        assert_eq!(pace.at(Instant::now() + MS * 50), t0, "stands still");
        clock.advance_ms(3);
        assert_eq!(pace.at(Instant::now()), t0 + MS * 3);
        assert_eq!(PaceClock::new(&Clock::System).at(real), real);
    }
}
