//! Folding repeated records within one commit.
//!
//! A resource server that introspects every request's token asks about the
//! same token from the same place many times a second. Those records differ
//! only in their time and request id, so within one batch the writer keeps
//! the first and counts the rest into it: `detail.count` (all of them),
//! `detail.last_at_ms` and `detail.request_ids` (every request's id, the
//! first's included; the row's `request_id` stays the first's). Nothing is
//! lost, and the audit log grows by one row per token, caller, source and
//! answer per commit instead of one per request. Only records that say so
//! fold ([`AuditEvent::folds`]), and only those nobody waits for.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use serde_json::{json, Value};

use crate::domain::audit_event::AuditEvent;

/// The folds of one batch: which event a repeat joins, and what joined it.
#[derive(Default)]
pub(super) struct Folds {
    /// Fact hash → index of the batch's event holding that fact.
    first: HashMap<u64, usize>,
    /// Batch index → the repeats folded into that event.
    repeats: HashMap<usize, Repeats>,
}

struct Repeats {
    last_at_ms: i64,
    request_ids: Vec<Value>,
}

impl Folds {
    /// Folds `event` into one already in `events` if it repeats it, and
    /// says so; otherwise remembers it (at the index it is about to take)
    /// and hands it back for the caller to push.
    pub(super) fn fold(&mut self, events: &[AuditEvent], event: AuditEvent) -> Option<AuditEvent> {
        if !event.folds() {
            return Some(event);
        }
        let key = fact_hash(&event);
        match self.first.get(&key) {
            Some(&i) if events[i].same_fact(&event) => {
                let first = &events[i];
                let repeats = self.repeats.entry(i).or_insert_with(|| Repeats {
                    last_at_ms: first.at_ms,
                    request_ids: vec![json!(first.request_id)],
                });
                repeats.last_at_ms = repeats.last_at_ms.max(event.at_ms);
                repeats.request_ids.push(json!(event.request_id));
                None
            }
            Some(_) => Some(event),
            None => {
                self.first.insert(key, events.len());
                Some(event)
            }
        }
    }

    /// Writes the counts into the events that took repeats, and forgets
    /// them: the batch is about to be committed.
    pub(super) fn apply(&mut self, events: &mut [AuditEvent]) {
        for (i, repeats) in self.repeats.drain() {
            if let Value::Object(detail) = &mut events[i].detail {
                detail.insert("count".into(), json!(repeats.request_ids.len()));
                detail.insert("last_at_ms".into(), json!(repeats.last_at_ms));
                detail.insert("request_ids".into(), Value::Array(repeats.request_ids));
            }
        }
        self.first.clear();
    }
}

/// A hash of everything [`AuditEvent::same_fact`] compares; equal facts
/// hash alike. The detail is hashed as a value (serde_json's `Hash`, its
/// object keys in order), not as its JSON text: no formatting or escaping
/// for a record that is about to be folded away.
fn fact_hash(e: &AuditEvent) -> u64 {
    let mut h = DefaultHasher::new();
    (
        e.action,
        e.outcome.as_str(),
        &e.actor,
        &e.source_ip,
        &e.target,
        &e.issued,
        &e.detail,
    )
        .hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::audit_event::{action, Origin, Outcome};

    fn introspected(request: &str, at_ms: i64, jti: &str) -> AuditEvent {
        let origin = Origin {
            actor: "svc-b".into(),
            source_ip: "10.0.0.1".parse().ok(),
            request_id: Some(request.into()),
        };
        AuditEvent::new(&origin, at_ms, action::TOKEN_INTROSPECTED, Outcome::Success)
            .target(format!("jti:{jti}"))
            .detail(json!({"jti": jti, "active": true}))
    }

    fn push(folds: &mut Folds, events: &mut Vec<AuditEvent>, e: AuditEvent) {
        if let Some(e) = folds.fold(events, e) {
            events.push(e);
        }
    }

    #[test]
    fn repeats_become_one_record_with_every_request_id() {
        let (mut folds, mut events) = (Folds::default(), Vec::new());
        push(&mut folds, &mut events, introspected("r1", 10, "a"));
        push(&mut folds, &mut events, introspected("r2", 12, "b"));
        push(&mut folds, &mut events, introspected("r3", 15, "a"));
        push(&mut folds, &mut events, introspected("r4", 11, "a"));
        folds.apply(&mut events);
        assert_eq!(events.len(), 2);
        let a = &events[0];
        assert_eq!(a.request_id.as_deref(), Some("r1"));
        assert_eq!(a.at_ms, 10);
        assert_eq!(a.detail["count"], 3);
        assert_eq!(a.detail["last_at_ms"], 15);
        assert_eq!(a.detail["request_ids"], json!(["r1", "r3", "r4"]));
        assert_eq!(events[1].detail, json!({"jti": "b", "active": true}));
    }

    #[test]
    fn a_different_answer_caller_or_source_is_its_own_record() {
        let (mut folds, mut events) = (Folds::default(), Vec::new());
        push(&mut folds, &mut events, introspected("r1", 1, "a"));
        let inactive = introspected("r2", 1, "a").detail(json!({"jti": "a", "active": false}));
        push(&mut folds, &mut events, inactive);
        let mut other_caller = introspected("r3", 1, "a");
        other_caller.actor = "svc-c".into();
        push(&mut folds, &mut events, other_caller);
        let mut other_source = introspected("r4", 1, "a");
        other_source.source_ip = Some("10.0.0.2".into());
        push(&mut folds, &mut events, other_source);
        folds.apply(&mut events);
        assert_eq!(events.len(), 4);
        assert!(events.iter().all(|e| e.detail.get("count").is_none()));
    }

    #[test]
    fn only_records_that_fold_are_folded() {
        let (mut folds, mut events) = (Folds::default(), Vec::new());
        for request in ["r1", "r2"] {
            let origin = Origin {
                actor: "svc-a".into(),
                request_id: Some(request.into()),
                ..Origin::default()
            };
            let issued = AuditEvent::new(&origin, 1, action::TOKEN_DENIED, Outcome::Denied);
            push(&mut folds, &mut events, issued);
        }
        folds.apply(&mut events);
        assert_eq!(events.len(), 2);
    }
}
