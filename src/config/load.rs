//! Reading and layering the config: cluster-wide file, per-instance file, environment.
//!
//! Each file is parsed and checked against the schema on its own, so every error names the
//! file it came from; the tables are then deep-merged (per-instance over cluster-wide) and the
//! original AirClass environment variables are applied on top. Every leaf key remembers its
//! source (file, variable or default) for later error messages.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::schema::Config;
use super::Problem;

/// Environment variables of the original AirClass design, and the key each one sets.
pub const ENV_OVERRIDES: &[(&str, &str, EnvKind)] = &[
    ("MODE", "node.mode", EnvKind::Str),
    ("NODE_NAME", "node.name", EnvKind::Str),
    ("MAIN_NODE_URL", "cluster.main_url", EnvKind::Str),
    ("LIVEKIT_PORT", "node.livekit_port", EnvKind::Port),
    (
        "LIVEKIT_RTC_PORT_START",
        "node.rtc_udp_start",
        EnvKind::Port,
    ),
    ("LIVEKIT_RTC_PORT_END", "node.rtc_udp_end", EnvKind::Port),
    ("REDIS_URL", "redis.url", EnvKind::Str),
    ("LIVEKIT_BINARY", "livekit.binary", EnvKind::Str),
    ("LIVEKIT_URL", "livekit.url", EnvKind::Str),
];

/// How an environment variable's text becomes a TOML value.
#[derive(Debug, Clone, Copy)]
pub enum EnvKind {
    Str,
    Port,
}

/// Where the config comes from.
#[derive(Debug, Clone)]
pub struct Sources {
    /// Cluster-wide file.
    pub config_path: PathBuf,
    /// True when the path was given explicitly (then a missing file is an error).
    pub config_explicit: bool,
    /// Folder of per-instance files (`NAME.toml`).
    pub nodes_dir: PathBuf,
    /// The daemon's environment (passed in so tests never mutate the process env).
    pub env: BTreeMap<String, String>,
}

/// The merged configuration and the source of every key that was set.
#[derive(Debug, Clone)]
pub struct Layered {
    pub config: Config,
    /// key path (`node.livekit_port`) → where it was set.
    pub provenance: BTreeMap<String, String>,
    /// Files that were read, in order.
    pub files: Vec<PathBuf>,
}

impl Layered {
    /// Where `key` was set, or `default` when nothing set it.
    pub fn source_of(&self, key: &str) -> String {
        self.provenance
            .get(key)
            .cloned()
            .unwrap_or_else(|| "default".to_string())
    }
}

/// Read, check and merge all layers. Returns every problem found.
pub fn layer(sources: &Sources, instance: &str) -> Result<Layered, Vec<Problem>> {
    let (layered, problems) = layer_all(sources, instance);
    if problems.is_empty() {
        Ok(layered)
    } else {
        Err(problems)
    }
}

/// Read, check and merge all layers: the merged configuration without the keys (or files)
/// that failed the schema, and every problem found — so the later stages of `check` can still
/// look at everything else.
pub fn layer_all(sources: &Sources, instance: &str) -> (Layered, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut merged = Table::new();
    let mut provenance = BTreeMap::new();
    let mut files = Vec::new();
    let node_file = sources.nodes_dir.join(format!("{instance}.toml"));
    for (file, explicit) in [
        (&sources.config_path, sources.config_explicit),
        (&node_file, false),
    ] {
        match read_table(file, explicit) {
            Ok(Some(t)) => {
                files.push(file.clone());
                let source = file.display().to_string();
                let t = check_against_schema(t, &source, &mut problems);
                merge_into(&mut merged, t, "", &source, &mut provenance);
            }
            Ok(None) => {}
            Err(p) => problems.push(p),
        }
    }
    apply_env(&sources.env, &mut merged, &mut provenance, &mut problems);

    // Every layer passed the schema alone; the merge can only fail through an env value
    // (e.g. MODE=primary), reported against its variable.
    let mut merged_checked = Vec::new();
    let merged = check_against_schema_with(merged, &mut merged_checked, |key| {
        provenance
            .get(key)
            .cloned()
            .unwrap_or_else(|| "merged configuration".into())
    });
    problems.extend(merged_checked);
    let config = deserialize(merged).unwrap_or_default();
    let layered = Layered {
        config,
        provenance,
        files,
    };
    (layered, problems)
}

/// The original AirClass environment variables, over the merged files.
fn apply_env(
    env: &BTreeMap<String, String>,
    merged: &mut Table,
    provenance: &mut BTreeMap<String, String>,
    problems: &mut Vec<Problem>,
) {
    for (var, key, kind) in ENV_OVERRIDES {
        let Some(text) = env.get(*var) else {
            continue;
        };
        if text.is_empty() {
            continue; // an empty variable is treated as unset
        }
        let value = match kind {
            EnvKind::Str => Value::String(text.clone()),
            EnvKind::Port => match text.trim().parse::<u32>() {
                Ok(v) => Value::Integer(i64::from(v)),
                Err(_) => {
                    problems.push(Problem::new(
                        format!("environment variable {var}"),
                        *key,
                        format!("{text:?} is not a port number"),
                        format!("set {var} to a number between 1 and 65535, or unset it"),
                    ));
                    continue;
                }
            },
        };
        set_path(merged, key, value);
        provenance.insert((*key).to_string(), format!("environment variable {var}"));
    }
}

/// Read and parse one TOML file. `Ok(None)` when it is absent and allowed to be.
fn read_table(path: &Path, must_exist: bool) -> Result<Option<Table>, Problem> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Problem::new(
                path.display().to_string(),
                "-",
                "the config file does not exist",
                "create it (see airclass-node(8)) or pass --config with the right path",
            ))
        }
        Err(e) => {
            return Err(Problem::new(
                path.display().to_string(),
                "-",
                format!("cannot read the config file: {e}"),
                "make it readable by the service user (group airclass)",
            ))
        }
    };
    text.parse::<Table>()
        .map(Some)
        .map_err(|e| syntax_problem(path, &text, &e))
}

/// A TOML syntax error by line, column, key and what the parser expected — never the line
/// itself: a missing quote in `url = "redis://:password@…` must not put the password in the
/// journal.
pub fn syntax_problem(path: &Path, text: &str, e: &toml::de::Error) -> Problem {
    let at = e.span().map_or(0, |s| s.start.min(text.len()));
    let before = text.get(..at).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |l| l.chars().count()) + 1;
    let key = text
        .get(line_start..)
        .and_then(|l| l.lines().next())
        .and_then(|l| l.split_once('='))
        .map(|(k, _)| k.trim())
        .filter(|k| {
            !k.is_empty()
                && k.len() <= 64
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.\"".contains(&b))
        })
        .map(|k| format!(" (in the value of {k})"))
        .unwrap_or_default();
    let what = e.message().lines().next().unwrap_or("").trim();
    Problem::new(
        path.display().to_string(),
        "-",
        format!("not valid TOML at line {line}, column {column}{key}: {what}"),
        "correct the syntax at that line and column (the line is not shown: it may hold a secret); until the file parses, the other checks read the defaults for what it sets",
    )
}

fn deserialize(t: Table) -> Result<Config, serde_path_to_error::Error<toml::de::Error>> {
    serde_path_to_error::deserialize(Value::Table(t))
}

/// Deserialize `t` against the schema; on an error, record it, drop the offending key and
/// retry, so every bad key of the file is reported. Returns the table without bad keys.
fn check_against_schema(t: Table, source: &str, problems: &mut Vec<Problem>) -> Table {
    check_against_schema_with(t, problems, |_| source.to_string())
}

fn check_against_schema_with(
    mut t: Table,
    problems: &mut Vec<Problem>,
    source_of: impl Fn(&str) -> String,
) -> Table {
    for _ in 0..64 {
        let err = match deserialize(t.clone()) {
            Ok(_) => return t,
            Err(e) => e,
        };
        let path: Vec<String> = err
            .path()
            .iter()
            .filter_map(|seg| match seg {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                _ => None,
            })
            .collect();
        let key = path.join(".");
        let inner = err.inner().to_string();
        let inner = inner.lines().next().unwrap_or("").trim().to_string();
        let (problem, fix) = describe(&inner, &key);
        problems.push(Problem::new(source_of(&key), key.clone(), problem, fix));
        if path.is_empty() || !remove_path(&mut t, &path) {
            return Table::new();
        }
    }
    t
}

/// Turn a serde message into a problem and a fix a person can act on.
fn describe(inner: &str, key: &str) -> (String, String) {
    if inner.starts_with("unknown field") {
        (
            format!("unknown key: {inner}"),
            "remove the key or correct its spelling (keys: airclass-node(8), docs/architecture.md)"
                .into(),
        )
    } else if inner.starts_with("unknown variant") {
        (
            format!("invalid value: {inner}"),
            format!("set {key} to one of the listed values"),
        )
    } else if inner.starts_with("invalid type") {
        (
            format!("wrong type: {inner}"),
            format!("give {key} a value of the expected type"),
        )
    } else {
        (inner.to_string(), format!("correct {key}"))
    }
}

fn remove_path(t: &mut Table, path: &[String]) -> bool {
    match path {
        [] => false,
        [last] => t.remove(last).is_some(),
        [first, rest @ ..] => match t.get_mut(first) {
            Some(Value::Table(inner)) => remove_path(inner, rest),
            Some(_) => t.remove(first).is_some(),
            None => false,
        },
    }
}

fn set_path(t: &mut Table, dotted: &str, value: Value) {
    let mut parts: Vec<&str> = dotted.split('.').collect();
    let Some(last) = parts.pop() else { return };
    let mut cur = t;
    for p in parts {
        let entry = cur
            .entry(p.to_string())
            .or_insert_with(|| Value::Table(Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        let Value::Table(next) = entry else { return };
        cur = next;
    }
    cur.insert(last.to_string(), value);
}

/// Deep-merge `src` into `dst`, recording each leaf's source.
fn merge_into(
    dst: &mut Table,
    src: Table,
    prefix: &str,
    source: &str,
    provenance: &mut BTreeMap<String, String>,
) {
    for (k, v) in src {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match (dst.get_mut(&k), v) {
            (Some(Value::Table(d)), Value::Table(s)) => merge_into(d, s, &path, source, provenance),
            (_, Value::Table(s)) => {
                let mut fresh = Table::new();
                merge_into(&mut fresh, s, &path, source, provenance);
                dst.insert(k, Value::Table(fresh));
            }
            (_, v) => {
                provenance.insert(path, source.to_string());
                dst.insert(k, v);
            }
        }
    }
}
