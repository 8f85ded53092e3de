//! `asapd audit tail`: follows the audit log, printing every new event
//! once, oldest first, however many arrive between two polls.
//!
//! Each poll reads forward (`after_id`) from the *floor*, the highest id
//! below which every id has been printed or given up on, page after page
//! until a short page. On PostgreSQL ids are handed out before their
//! transaction commits, so a lower id can appear after a higher one: an id
//! missing below the highest seen is a *gap*, and the floor waits at a gap
//! for `grace` before giving it up — with a line on standard error, since
//! the id was rolled back or its event committed too late to be shown.
//! The tail reads the log unfiltered (a gap in a filtered view means
//! nothing) and applies its filters itself.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use super::admin::AdminClient;

/// The largest page the server gives.
const PAGE: usize = 1000;

/// What the tail follows and how.
pub struct Tail {
    /// Filters, as query pairs: checked by the server once, then applied here.
    pub filter: Vec<(&'static str, String)>,
    pub interval: Duration,
    pub grace: Duration,
    pub json: bool,
}

/// Follows the log until stopped (or an error).
pub async fn run(client: &AdminClient, tail: &Tail) -> anyhow::Result<()> {
    // The filters, checked by the server (a bad one is a 400 naming it).
    let query = super::admin_cli::encode(&tail.filter);
    client
        .call(Method::GET, &format!("/audit?limit=1&{query}"), None)
        .await?;
    let newest = client.call(Method::GET, "/audit?limit=1", None).await?;
    let start = newest["events"][0]["id"].as_i64().unwrap_or(0);
    let mut follower = Follower::new(start, tail.grace);
    eprintln!("asapd audit tail: following the events after id {start}");
    loop {
        let mut after = follower.floor();
        loop {
            let path = format!("/audit?after_id={after}&limit={PAGE}");
            let page = client.call(Method::GET, &path, None).await?;
            let events = page["events"].as_array().cloned().unwrap_or_default();
            for event in &events {
                let Some(id) = event["id"].as_i64() else {
                    continue;
                };
                after = after.max(id);
                if follower.accept(id, Instant::now()) && matches(event, &tail.filter) {
                    print_event(event, tail.json);
                }
            }
            if events.len() < PAGE {
                break;
            }
        }
        std::io::stdout().flush()?;
        for ids in follower.settle(Instant::now()) {
            eprintln!(
                "asapd audit tail: no event with id {}..={} appeared within {:?} of later ones: \
                 rolled back, or committed later than that and not shown here (`asapd audit \
                 query` lists every stored event)",
                ids.start(),
                ids.end(),
                tail.grace
            );
        }
        tokio::time::sleep(tail.interval).await;
    }
}

/// The event passes the tail's filters (equality on each field given).
fn matches(event: &Value, filter: &[(&str, String)]) -> bool {
    filter
        .iter()
        .all(|(field, value)| event[*field].as_str() == Some(value.as_str()))
}

fn print_event(event: &Value, json: bool) {
    if json {
        println!("{event}");
        return;
    }
    let field = |name: &str| event[name].as_str().unwrap_or("-").to_owned();
    println!(
        "{}  {}  {}  {}  {}",
        field("time"),
        field("action"),
        field("outcome"),
        field("actor"),
        field("target")
    );
}

/// Which ids have been printed, and which are still awaited.
#[derive(Debug)]
struct Follower {
    /// Every id up to this one was printed or given up on.
    floor: i64,
    /// Ids above the floor printed already.
    seen: BTreeSet<i64>,
    /// Ids above the floor and below the highest seen, not seen yet: the
    /// first id of each run, the last, and when the run was first missed.
    gaps: BTreeMap<i64, (i64, Instant)>,
    grace: Duration,
}

impl Follower {
    fn new(start: i64, grace: Duration) -> Self {
        Self {
            floor: start,
            seen: BTreeSet::new(),
            gaps: BTreeMap::new(),
            grace,
        }
    }

    fn floor(&self) -> i64 {
        self.floor
    }

    fn highest(&self) -> i64 {
        self.seen.last().copied().unwrap_or(self.floor)
    }

    /// Notes `id` as read at `now`; true when it is new, to be printed.
    fn accept(&mut self, id: i64, now: Instant) -> bool {
        if id <= self.floor || self.seen.contains(&id) {
            return false;
        }
        let highest = self.highest();
        if id > highest + 1 {
            self.gaps.insert(highest + 1, (id - 1, now));
        } else if id < highest {
            self.fill(id);
        }
        self.seen.insert(id);
        true
    }

    /// Removes `id` from the gap that holds it, splitting the gap.
    fn fill(&mut self, id: i64) {
        let Some((&first, &(last, since))) = self.gaps.range(..=id).next_back() else {
            return;
        };
        if id > last {
            return;
        }
        self.gaps.remove(&first);
        if first < id {
            self.gaps.insert(first, (id - 1, since));
        }
        if id < last {
            self.gaps.insert(id + 1, (last, since));
        }
    }

    /// Raises the floor over what was printed and over gaps older than the
    /// grace; returns the ids given up.
    fn settle(&mut self, now: Instant) -> Vec<RangeInclusive<i64>> {
        let mut given_up = Vec::new();
        loop {
            let next = self.floor + 1;
            if self.seen.first() == Some(&next) {
                self.seen.remove(&next);
                self.floor = next;
            } else if let Some(&(last, since)) = self.gaps.get(&next) {
                if now.duration_since(since) < self.grace {
                    break;
                }
                self.gaps.remove(&next);
                given_up.push(next..=last);
                self.floor = last;
            } else {
                break;
            }
        }
        given_up
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_ids_are_printed_once_and_lost_ones_reported() {
        let grace = Duration::from_secs(10);
        let t0 = Instant::now();
        let mut f = Follower::new(10, grace);
        // 11 and 13 commit first; 12 is late.
        assert!(f.accept(11, t0));
        assert!(f.accept(13, t0));
        assert!(f.settle(t0).is_empty());
        assert_eq!(f.floor(), 11, "the floor waits at the gap");
        // The next poll re-reads 13: not printed twice.
        assert!(!f.accept(13, t0));
        assert!(f.accept(12, t0 + grace / 2));
        assert!(f.settle(t0 + grace / 2).is_empty());
        assert_eq!(f.floor(), 13);

        // 14..=16 never come, 17 does: given up after the grace, and said.
        assert!(f.accept(17, t0));
        assert!(f.accept(15, t0));
        assert!(f.settle(t0 + grace / 2).is_empty());
        assert_eq!(f.settle(t0 + grace), vec![14..=14, 16..=16]);
        assert_eq!(f.floor(), 17);
        assert!(!f.accept(16, t0 + grace), "below the floor");
    }
}
