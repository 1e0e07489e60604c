//! stor's log lines (`tracing`) into Python's `logging`, logger `stor`: the
//! original service's "storage service initialized for region …" at INFO reaches
//! the application's handlers. `STOR_LOG` (an env-filter, default `stor=info`)
//! picks what is forwarded.

use pyo3::prelude::*;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

struct PyLogging;

#[derive(Default)]
struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            self.0.push_str(&format!(" {}={value}", field.name()));
        }
    }
}

impl<S: Subscriber> Layer<S> for PyLogging {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let level = match *event.metadata().level() {
            Level::ERROR => 40,
            Level::WARN => 30,
            Level::INFO => 20,
            Level::DEBUG => 10,
            Level::TRACE => 5,
        };
        let mut text = Text::default();
        event.record(&mut text);
        // Never blocks shutdown: an interpreter that is finalizing gets no logs.
        Python::try_attach(|py| {
            let log = py
                .import("logging")
                .and_then(|m| m.call_method1("getLogger", ("stor",)))
                .and_then(|l| l.call_method1("log", (level, text.0)));
            if let Err(e) = log {
                e.print(py);
            }
        });
    }
}

/// Installs the forwarding, unless the process already has a tracing subscriber.
pub fn install() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("stor=info"));
    let _ = tracing_subscriber::registry()
        .with(PyLogging.with_filter(filter))
        .try_init();
}
