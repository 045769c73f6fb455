//! `LOG_FORMAT=json`: every event as one flat JSON object on one line, what Loki (`| json`),
//! Elasticsearch and Cloud Logging parse without a custom pattern:
//!
//! ```text
//! {"timestamp":"2026-03-30T12:15:17.705123Z","level":"INFO","message":"finished processing request","severity":"INFO","@timestamp":"2026-03-30T12:15:17.705123Z","log.level":"INFO","status":200,"latency_us":412,"span":"request","method":"GET","route":"/pingpong"}
//! ```
//!
//! `timestamp` (RFC 3339, UTC), `level` and `message` come first and are always there; then
//! the same time and level under the names log pipelines take them from without configuration:
//! `severity` (Google Cloud Logging: `DEBUG`, `INFO`, `WARNING`, `ERROR`), `@timestamp` and
//! `log.level` (Elastic Common Schema); then the event's own fields; then, if the event happened inside a span, `span` (the innermost span's
//! name) and the fields of every span it is in, outermost first. Integers, floats and booleans
//! are JSON numbers and booleans; everything else is a string.
//!
//! Span fields are rendered once, when the span is created or recorded, as a JSON fragment
//! (`"method":"GET","route":"/pingpong"`) kept with the span, so an event inside it only copies
//! them: no parsing and no allocation per event beyond the line itself.

use std::fmt::{self, Write as _};

use tracing::{
    Event, Level, Subscriber,
    field::{Field, Visit},
    span,
};
use tracing_subscriber::{
    field::RecordFields,
    fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, format::Writer},
    registry::LookupSpan,
};

/// Formats fields as a JSON fragment, `"name":value` pairs joined by commas, without braces.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonFields;

impl<'writer> FormatFields<'writer> for JsonFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut visitor = Fragment::new(&mut writer, Skip::Nothing);
        fields.record(&mut visitor);
        visitor.result
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &span::Record<'_>,
    ) -> fmt::Result {
        let first = current.fields.is_empty();
        let mut writer = current.as_writer();
        let mut visitor = Fragment::new(&mut writer, Skip::Nothing);
        visitor.first = first;
        fields.record(&mut visitor);
        visitor.result
    }
}

/// Formats an event as one JSON object (see the module's documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonEvent;

impl<S> FormatEvent<S, JsonFields> for JsonEvent
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let now = humantime::format_rfc3339_micros(std::time::SystemTime::now());
        let level = event.metadata().level();
        write!(
            writer,
            "{{\"timestamp\":\"{now}\",\"level\":\"{level}\",\"message\":"
        )?;
        let mut message = Message {
            writer: &mut writer,
            written: false,
            result: Ok(()),
        };
        event.record(&mut message);
        message.result?;
        if !message.written {
            writer.write_str("\"\"")?;
        }
        write!(
            writer,
            ",\"severity\":\"{}\",\"@timestamp\":\"{now}\",\"log.level\":\"{level}\"",
            severity(*level)
        )?;
        let mut fields = Fragment::new(&mut writer, Skip::Message);
        fields.first = false;
        event.record(&mut fields);
        fields.result?;
        if let Some(leaf) = ctx.event_scope().and_then(|mut scope| scope.next()) {
            writer.write_str(",\"span\":")?;
            write_str(&mut writer, leaf.name())?;
        }
        for span in ctx
            .event_scope()
            .into_iter()
            .flat_map(|scope| scope.from_root())
        {
            let extensions = span.extensions();
            if let Some(fields) = extensions.get::<FormattedFields<JsonFields>>()
                && !fields.fields.is_empty()
            {
                writer.write_char(',')?;
                writer.write_str(&fields.fields)?;
            }
        }
        writer.write_str("}\n")
    }
}

/// Cloud Logging's `severity` for a level: its names, of which `WARNING` differs from
/// tracing's `WARN`, and no `TRACE` (`DEBUG` the nearest).
pub fn severity(level: Level) -> &'static str {
    match level {
        Level::TRACE | Level::DEBUG => "DEBUG",
        Level::INFO => "INFO",
        Level::WARN => "WARNING",
        Level::ERROR => "ERROR",
    }
}

/// Which field a [`Fragment`] leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    Nothing,
    /// The event's message, written separately right after the level.
    Message,
}

/// Writes `"name":value` pairs, a comma before each but the first.
struct Fragment<'a, 'w> {
    writer: &'a mut Writer<'w>,
    skip: Skip,
    first: bool,
    result: fmt::Result,
}

impl<'a, 'w> Fragment<'a, 'w> {
    fn new(writer: &'a mut Writer<'w>, skip: Skip) -> Self {
        Fragment {
            writer,
            skip,
            first: true,
            result: Ok(()),
        }
    }

    fn field(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'w>) -> fmt::Result) {
        if self.result.is_err() || (self.skip == Skip::Message && field.name() == "message") {
            return;
        }
        self.result = (|| {
            if !std::mem::take(&mut self.first) {
                self.writer.write_char(',')?;
            }
            write_str(self.writer, field.name())?;
            self.writer.write_char(':')?;
            value(self.writer)
        })();
    }
}

impl Visit for Fragment<'_, '_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |w| {
            w.write_char('"')?;
            write!(Escaped(w), "{value:?}")?;
            w.write_char('"')
        });
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, |w| write_str(w, value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.field(field, |w| {
            w.write_char('"')?;
            write!(Escaped(w), "{value}")?;
            w.write_char('"')
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |w| write!(w, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |w| write!(w, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |w| write!(w, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity: those are strings.
        self.field(field, |w| {
            if value.is_finite() {
                write!(w, "{value}")
            } else {
                write!(w, "\"{value}\"")
            }
        });
    }
}

/// Writes the event's `message` field (a JSON string) and nothing else.
struct Message<'a, 'w> {
    writer: &'a mut Writer<'w>,
    written: bool,
    result: fmt::Result,
}

impl Visit for Message<'_, '_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" && !self.written {
            self.written = true;
            self.result = (|| {
                self.writer.write_char('"')?;
                write!(Escaped(self.writer), "{value:?}")?;
                self.writer.write_char('"')
            })();
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" && !self.written {
            self.written = true;
            self.result = write_str(self.writer, value);
        }
    }
}

/// `value` as a JSON string, quotes included.
fn write_str(writer: &mut impl fmt::Write, value: &str) -> fmt::Result {
    writer.write_char('"')?;
    Escaped(writer).write_str(value)?;
    writer.write_char('"')
}

/// Escapes what passes through it for the inside of a JSON string: quote, backslash and the
/// control characters; everything else (valid UTF-8 already) as is.
struct Escaped<'a, W: ?Sized>(&'a mut W);

impl<W: fmt::Write + ?Sized> fmt::Write for Escaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let Self(out) = self;
        let mut plain = 0;
        for (i, byte) in s.bytes().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f | 0x7f => "",
                _ => continue,
            };
            out.write_str(&s[plain..i])?;
            if escape.is_empty() {
                write!(out, "\\u{byte:04x}")?;
            } else {
                out.write_str(escape)?;
            }
            plain = i + 1;
        }
        out.write_str(&s[plain..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(s: &str) -> String {
        let mut out = String::new();
        write_str(&mut out, s).unwrap();
        out
    }

    #[test]
    fn strings_are_escaped_into_valid_json() {
        for s in [
            "plain",
            "a \"quote\"",
            "back\\slash",
            "line\nbreak\r\t",
            "\u{1}\u{7f}",
            "é ✓ 😀",
            "",
        ] {
            let json = escaped(s);
            assert_eq!(serde_json::from_str::<String>(&json).unwrap(), s, "{json}");
        }
        assert_eq!(escaped("a\"b\n\u{1}"), r#""a\"b\n\u0001""#);
    }

    #[test]
    fn severity_is_cloud_loggings_name_for_the_level() {
        let names = [
            Level::TRACE,
            Level::DEBUG,
            Level::INFO,
            Level::WARN,
            Level::ERROR,
        ]
        .map(severity);
        assert_eq!(names, ["DEBUG", "DEBUG", "INFO", "WARNING", "ERROR"]);
    }
}
