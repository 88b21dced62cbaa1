//! Zap-style log lines on stderr for the livekit-server stand-in (TEST DOUBLE): console format
//! `<RFC3339 ts>\tINFO\tlivekit\t<caller>\t<msg>\t<json fields>` or one JSON object per line.
//!
//! This deliberately does not use `tracing`: the point of the stand-in is to print byte-for-byte
//! the shape that the real server's zap logger prints, so the supervisor's log parser is tested.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// Log levels in zap order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug = 0,
    Info = 1,
    Warn = 2,
    Error = 3,
}

impl Level {
    fn upper(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }

    fn lower(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }

    /// Parses `logging.level`; unknown or empty text gives `None`.
    pub fn parse(text: &str) -> Option<Level> {
        match text.to_ascii_lowercase().as_str() {
            "debug" => Some(Level::Debug),
            "info" => Some(Level::Info),
            "warn" | "warning" => Some(Level::Warn),
            "error" | "dpanic" | "panic" | "fatal" => Some(Level::Error),
            _ => None,
        }
    }
}

static MIN_LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
static JSON: AtomicBool = AtomicBool::new(false);

/// Sets the output format and minimum level (from `logging.json` / `logging.level`).
pub fn configure(json: bool, level: Level) {
    JSON.store(json, Ordering::Relaxed);
    MIN_LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Writes one log line to stderr. `fields` are kept in the given order.
pub fn log(level: Level, caller: &str, msg: &str, fields: &[(&str, Value)]) {
    if (level as u8) < MIN_LEVEL.load(Ordering::Relaxed) {
        return;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let line = if JSON.load(Ordering::Relaxed) {
        let mut obj = serde_json::Map::new();
        obj.insert("level".into(), Value::from(level.lower()));
        obj.insert("ts".into(), Value::from(now.as_secs_f64()));
        obj.insert("logger".into(), Value::from("livekit"));
        obj.insert("caller".into(), Value::from(caller));
        obj.insert("msg".into(), Value::from(msg));
        for (k, v) in fields {
            obj.insert((*k).to_string(), v.clone());
        }
        Value::Object(obj).to_string()
    } else {
        let mut line = format!(
            "{}\t{}\tlivekit\t{}\t{}",
            rfc3339_millis(now.as_secs() as i64, now.subsec_millis()),
            level.upper(),
            caller,
            msg
        );
        if !fields.is_empty() {
            line.push('\t');
            line.push_str(&zap_fields(fields));
        }
        line
    };
    let mut err = std::io::stderr().lock();
    // A closed stderr must not kill the stand-in.
    let _ = writeln!(err, "{line}");
}

/// Shorthand for INFO.
pub fn info(caller: &str, msg: &str, fields: &[(&str, Value)]) {
    log(Level::Info, caller, msg, fields);
}

/// zap console encoder style: `{"a": 1, "b": [1, 2]}`.
fn zap_fields(fields: &[(&str, Value)]) -> String {
    let parts: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}: {}", Value::from(*k), zap_value(v)))
        .collect();
    format!("{{{}}}", parts.join(", "))
}

fn zap_value(v: &Value) -> String {
    match v {
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(zap_value).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Object(map) => {
            let parts: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", Value::from(k.as_str()), zap_value(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        other => other.to_string(),
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn split_secs(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, mo, d) = civil_from_days(days);
    (
        y,
        mo,
        d,
        (rem / 3600) as u32,
        ((rem % 3600) / 60) as u32,
        (rem % 60) as u32,
    )
}

/// `2026-08-16T02:11:13.517Z`
pub fn rfc3339_millis(secs: i64, millis: u32) -> String {
    let (y, mo, d, h, mi, s) = split_secs(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{millis:03}Z")
}

/// Go's `time.Time.String()` for a whole-second UTC time: `2026-01-02 15:04:05 +0000 UTC`.
pub fn go_time_string(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = split_secs(secs);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} +0000 UTC")
}
