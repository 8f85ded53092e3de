//! Logging setup. Filter with `ASAPD_LOG` (e.g. `info,asapd=debug`).

use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env("ASAPD_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,actix_server=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal: in a file, a pipe
        // or a log collector they are noise in every line.
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Json => builder.json().finish().with(ClientStreamErrors).try_init(),
        LogFormat::Text => builder.finish().with(ClientStreamErrors).try_init(),
    };
}

/// Drops actix-http's `stream error: …` line, which it logs at ERROR for
/// every connection a client ends badly: a malformed or oversized request
/// head, a head or body too slow, a reset. Anyone can cause those, so at
/// ERROR they would let anyone fill the error log. The answers themselves
/// are reported at WARN, at most once a minute (`http::raw_errors`).
struct ClientStreamErrors;

const DISPATCHER: &str = "actix_http::h1::dispatcher";

impl<S: Subscriber> Layer<S> for ClientStreamErrors {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        let meta = event.metadata();
        if meta.target() != DISPATCHER || *meta.level() != Level::ERROR {
            return true;
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        !message.0.starts_with("stream error")
    }
}

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

#[cfg(test)]
mod stream_error_tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<String>>>);

    impl<S: Subscriber> Layer<S> for Seen {
        fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
            let mut message = Message(String::new());
            event.record(&mut message);
            self.0.lock().unwrap().push(message.0);
        }
    }

    #[test]
    fn only_the_dispatchers_stream_errors_are_dropped() {
        let seen = Seen::default();
        let subscriber = tracing_subscriber::registry()
            .with(seen.clone())
            .with(ClientStreamErrors);
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(target: "actix_http::h1::dispatcher", "stream error: {}", "parse");
            tracing::error!(target: "actix_http::h1::dispatcher", "write zero; closing");
            tracing::error!("stream error: ours");
        });
        let seen = seen.0.lock().unwrap().clone();
        assert_eq!(seen, ["write zero; closing", "stream error: ours"]);
    }
}
