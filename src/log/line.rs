//! The log line format when stderr is not a terminal (CI, a log file): the same text as
//! `tracing_subscriber`'s default format without colours,
//!
//! `2026-11-29T15:21:34.374867Z  INFO plaid_vcr::serve::proxy: request mode="replay" status=200 …`,
//!
//! written for less. A profile of replay under load put the default formatter at 9 % of all
//! CPU: a calendar conversion per line, `Debug` escaping through `core::fmt` for every string
//! field, colour wrappers even with colours off. Here the date and time are formatted once per
//! second per thread, strings go into the line directly unless they need escaping, and numbers
//! skip the formatting machinery. plaid-vcr opens no spans, so there are none to print.

use std::cell::RefCell;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The event formatter (see the module header).
#[derive(Debug, Default, Clone, Copy)]
pub struct LineFormat;

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        write_timestamp(&mut writer, SystemTime::now())?;
        writer.write_str(match *meta.level() {
            Level::TRACE => " TRACE ",
            Level::DEBUG => " DEBUG ",
            Level::INFO => "  INFO ",
            Level::WARN => "  WARN ",
            Level::ERROR => " ERROR ",
        })?;
        writer.write_str(meta.target())?;
        writer.write_str(": ")?;
        let mut fields = Fields {
            out: &mut writer,
            first: true,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_char('\n')
    }
}

thread_local! {
    /// The second last formatted on this thread and its `YYYY-MM-DDTHH:MM:SS` text.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// `2026-11-29T15:21:34.374867Z`: RFC 3339 in UTC with microseconds, as the default format.
fn write_timestamp(out: &mut impl fmt::Write, now: SystemTime) -> fmt::Result {
    // A clock before 1970 prints as 1970, as the default format's arithmetic would.
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            let text = humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string();
            // "YYYY-MM-DDTHH:MM:SSZ": keep everything but the zone.
            cached.1 = text.trim_end_matches('Z').to_owned();
            cached.0 = secs;
        }
        out.write_str(&cached.1)
    })?;
    let mut micros = [b'.', b'0', b'0', b'0', b'0', b'0', b'0', b'Z'];
    let mut n = since.subsec_micros();
    for digit in micros[1..7].iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
    // Only ASCII digits, a dot and a Z were written above.
    out.write_str(std::str::from_utf8(&micros).map_err(|_| fmt::Error)?)
}

/// Whether `value` prints the same quoted as escaped like `Debug`: printable ASCII without a
/// quote or backslash. Anything else (non-ASCII included: `Debug` escapes some of it, such as
/// zero-width and C1 control characters) goes through `Debug` itself.
fn plain(value: &str) -> bool {
    value
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

/// Writes an event's fields: the message as is, then ` name=value` for each other field,
/// strings quoted (escaped like `Debug` only when they need it), like the default format.
struct Fields<'a, 'w> {
    out: &'a mut Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn name(&mut self, field: &Field) -> fmt::Result {
        if !std::mem::take(&mut self.first) {
            self.out.write_char(' ')?;
        }
        if field.name() != "message" {
            self.out.write_str(field.name())?;
            self.out.write_char('=')?;
        }
        Ok(())
    }

    fn record(&mut self, field: &Field, write: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self.name(field).and_then(|()| write(self.out));
        }
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let message = field.name() == "message";
        self.record(field, |out| {
            if message {
                out.write_str(value)
            } else if plain(value) {
                out.write_char('"')?;
                out.write_str(value)?;
                out.write_char('"')
            } else {
                write!(out, "{value:?}")
            }
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.record(field, |out| out.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record(field, |out| out.write_str(itoa::Buffer::new().format(value)));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.record(field, |out| out.write_str(if value { "true" } else { "false" }));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record(field, |out| write!(out, "{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The lines each formatter writes for the same events, timestamps cut off.
    fn lines(fast: bool) -> Vec<String> {
        let sink = Sink::default();
        let make = {
            let sink = sink.clone();
            move || sink.clone()
        };
        let builder = tracing_subscriber::fmt().with_writer(make).with_ansi(false);
        let dispatch = if fast {
            tracing::Dispatch::new(builder.event_format(LineFormat).finish())
        } else {
            tracing::Dispatch::new(builder.finish())
        };
        tracing::dispatcher::with_default(&dispatch, || {
            let (mode, endpoint, latency_us) = ("replay", "identity/get", 224u64);
            tracing::info!(mode, endpoint, outcome = "hit", status = 200u16, latency_us, "request");
            tracing::warn!(endpoint = "a\"b\\c\nd", differing = %"access_token", count = -3i64, ok = true, "miss");
            tracing::warn!(endpoint = "caf\u{e9}\u{200b}\u{85}'x", "non-ascii");
            tracing::error!(error = %std::io::Error::other("disk full"), "recording failed");
            tracing::info!(timeout = ?std::time::Duration::from_millis(1500), "no fields before the message");
        });
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        text.lines().map(|l| l[27..].to_owned()).collect()
    }

    #[test]
    fn lines_read_exactly_as_the_default_formats_lines() {
        let ours = lines(true);
        assert_eq!(ours, lines(false));
        assert_eq!(ours.len(), 5);
        assert_eq!(
            ours[0],
            "  INFO plaid_vcr::log::line::tests: request mode=\"replay\" endpoint=\"identity/get\" outcome=\"hit\" \
             status=200 latency_us=224"
        );
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        let mut out = String::new();
        write_timestamp(
            &mut out,
            UNIX_EPOCH + std::time::Duration::from_micros(1_764_429_694_000_042),
        )
        .unwrap();
        assert_eq!(out, "2025-11-29T15:21:34.000042Z");
        // The cached second is reused, the fraction is not.
        let mut again = String::new();
        write_timestamp(
            &mut again,
            UNIX_EPOCH + std::time::Duration::from_micros(1_764_429_694_999_999),
        )
        .unwrap();
        assert_eq!(again, "2025-11-29T15:21:34.999999Z");
    }
}
