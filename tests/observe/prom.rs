//! Parsing an exposition with the Prometheus project's Python parser
//! (`tests/metrics/parse_exposition.py`) and checking Prometheus' naming conventions.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Family {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub unit: String,
    pub help: String,
    pub samples: Vec<Sample>,
}

/// The Python with `prometheus_client` (scripts/test.sh creates it), or a failure saying how.
pub fn python() -> PathBuf {
    let cache =
        std::env::var("AIRCLASS_CACHE").unwrap_or_else(|_| "/var/tmp/airclass-cache".into());
    let p = std::env::var_os("AIRCLASS_PROM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(cache).join("venv-metrics/bin/python"));
    let ok = Command::new(&p)
        .args(["-c", "import prometheus_client.openmetrics.parser"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the Prometheus parser is missing: {} cannot import prometheus_client. scripts/test.sh \
         installs it (stage deps); by hand: python3 -m venv {dir} && {dir}/bin/pip install \
         prometheus-client==0.26.0 (or set AIRCLASS_PROM_PYTHON to a python that has it)",
        p.display(),
        dir = p
            .parent()
            .and_then(|d| d.parent())
            .map(|d| d.display().to_string())
            .unwrap_or_default()
    );
    p
}

/// Parse `text` as `openmetrics` or `text` (0.0.4); panics with the parser's message.
pub fn parse(text: &str, format: &str) -> Vec<Family> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/metrics/parse_exposition.py"
    );
    let mut child = Command::new(python())
        .arg(script)
        .arg(format)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus {format} parser refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// GET `url` with the Accept header Prometheus sends for OpenMetrics (or none): body, type.
pub async fn scrape(url: &str, openmetrics: bool) -> (String, String) {
    let mut rb = crate::support::http()
        .get(url)
        .timeout(std::time::Duration::from_secs(5));
    if openmetrics {
        rb = rb.header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        );
    }
    let r = rb.send().await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    (r.text().await.unwrap(), ct)
}

/// Every sample name a family can expose (type-aware: `_total`, `_bucket`, …).
pub fn sample_names(fams: &[Family]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for f in fams {
        let n = &f.name;
        let suffixes: &[&str] = match f.kind.as_str() {
            "counter" => &["_total", "_created"],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            "summary" => &["", "_sum", "_count", "_created"],
            "info" => &["_info"],
            _ => &[""],
        };
        for s in suffixes {
            out.insert(format!("{n}{s}"));
        }
        out.extend(f.samples.iter().map(|s| s.name.clone()));
    }
    out
}

/// The value of the sample `name` whose labels include `labels`.
pub fn value(fams: &[Family], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    fams.iter()
        .flat_map(|f| &f.samples)
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

/// Label names our families may use: each has a fixed set of values, except `node` (a node
/// name from main's table) and `version` (one value).
const LABELS: &[&str] = &[
    "reason", "start", "outcome", "result", "code", "node", "state", "to", "version", "mode",
];

/// Prometheus' naming conventions, checked on our families; `node_names` bounds `node`.
pub fn check_conventions(fams: &[Family], node_names: &[&str]) {
    let name_ok = |n: &str| {
        n.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    assert!(fams.len() >= 40, "only {} families", fams.len());
    for f in fams {
        let n = &f.name;
        assert!(name_ok(n), "{n}: not snake_case");
        assert!(
            n.starts_with("airclass_") || n.starts_with("process_"),
            "{n}: no airclass_ prefix"
        );
        assert!(!f.help.is_empty(), "{n}: no HELP");
        for bad in [
            "_ms",
            "_millis",
            "milliseconds",
            "_kb",
            "_mb",
            "percent",
            "_count_",
        ] {
            assert!(!n.contains(bad), "{n}: non-base unit {bad:?}");
        }
        let words: Vec<&str> = n.split('_').collect();
        if words
            .iter()
            .any(|w| ["seconds", "duration", "age", "time", "latency"].contains(w))
        {
            assert!(
                n.ends_with("_seconds") || n.ends_with("_seconds_total") || f.unit == "seconds",
                "{n}: a time must be in seconds and say so"
            );
        }
        if words.contains(&"memory") {
            assert!(n.ends_with("_bytes"), "{n}: sizes in bytes");
        }
        match f.kind.as_str() {
            "counter" => {
                assert!(
                    !n.ends_with("_total"),
                    "{n}: family name of a counter keeps _total for samples"
                );
                for s in &f.samples {
                    assert!(
                        s.name.ends_with("_total") || s.name.ends_with("_created"),
                        "{}: counter sample without _total",
                        s.name
                    );
                }
            }
            "gauge" | "histogram" | "info" => {
                assert!(!n.ends_with("_total"), "{n}: only counters end in _total");
            }
            k => panic!("{n}: unexpected type {k}"),
        }
        if !f.unit.is_empty() {
            assert!(
                n.ends_with(&format!("_{}", f.unit)),
                "{n}: unit {} not in the name",
                f.unit
            );
        }
        for s in &f.samples {
            for (k, v) in &s.labels {
                if k == "le" || k == "quantile" {
                    continue;
                }
                assert!(
                    LABELS.contains(&k.as_str()),
                    "{}: unbounded or unknown label {k}={v}",
                    s.name
                );
                if k == "node" && !v.is_empty() {
                    assert!(
                        node_names.contains(&v.as_str()),
                        "{}: node label {v} is not a node",
                        s.name
                    );
                }
            }
        }
    }
}
