//! `airclass-node status`, the pure half: from what the daemons answered to rows, a one-line
//! verdict and an exit code (0 healthy, 1 degraded, 2 down or unreachable), as a table or JSON.

use serde::Serialize;
use serde_json::Value;

use crate::cluster::protocol::{ClusterStatus, LivekitHealth, NodeState, NodeView};

/// The verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Healthy,
    Degraded,
    Down,
}

impl Verdict {
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Healthy => 0,
            Verdict::Degraded => 1,
            Verdict::Down => 2,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Verdict::Healthy => "healthy",
            Verdict::Degraded => "degraded",
            Verdict::Down => "down",
        }
    }
}

/// One node's row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub node: String,
    pub mode: String,
    /// Membership state on main (`alive`, `suspect`, `dead`, `left`), or `-` off-cluster.
    pub state: String,
    /// Control API address (`host:port`).
    pub address: String,
    /// LiveKit as the node reports it (`healthy`, `degraded`, `starting`, `down`, or the
    /// supervisor's state when asked directly).
    pub livekit: String,
    pub restarts: Option<u32>,
    pub sysload: Option<f64>,
    pub rooms: Option<u32>,
    pub participants: Option<u32>,
    /// Milliseconds since main last heard from the node (`None` off-cluster).
    pub heartbeat_age_ms: Option<u64>,
}

/// What the command found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub verdict: Verdict,
    /// The one-line verdict as printed.
    pub summary: String,
    pub exit_code: u8,
    /// The local daemon's control API.
    pub local: String,
    /// Main's control API, when known.
    pub main: Option<String>,
    pub sysload_limit: Option<f64>,
    pub nodes: Vec<Row>,
    /// What makes the verdict degraded or down.
    pub problems: Vec<String>,
    /// Worth knowing, not a problem (a node over the sysload limit while others take rooms).
    pub notes: Vec<String>,
}

/// What was asked and answered.
#[derive(Debug, Clone, Default)]
pub struct Answers {
    pub local_url: String,
    /// `GET /api/node` on the local daemon (`Err`: why it did not answer).
    pub local: Option<Result<Value, String>>,
    pub main_url: Option<String>,
    /// `GET /api/cluster/status` on main.
    pub cluster: Option<Result<ClusterStatus, String>>,
    /// `GET /api/node` on each node of main's table, by name.
    pub nodes: Vec<(String, Result<Value, String>)>,
}

fn host_port(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
        .unwrap_or_else(|| url.to_owned())
}

fn health_word(h: LivekitHealth) -> &'static str {
    match h {
        LivekitHealth::Healthy => "healthy",
        LivekitHealth::Degraded => "degraded",
        LivekitHealth::Down => "down",
        LivekitHealth::Starting => "starting",
    }
}

fn state_word(s: NodeState) -> &'static str {
    match s {
        NodeState::Alive => "alive",
        NodeState::Suspect => "suspect",
        NodeState::Dead => "dead",
        NodeState::Left => "left",
    }
}

fn restarts_of(v: &Value) -> Option<u32> {
    v["livekit"]["restarts"]
        .as_u64()
        .and_then(|r| u32::try_from(r).ok())
}

/// A row for a node in main's table; `direct` is its own `/api/node` answer, if it gave one.
fn cluster_row(n: &NodeView, direct: Option<&Value>) -> Row {
    Row {
        node: n.name.clone(),
        mode: format!("{:?}", n.info.mode).to_lowercase(),
        state: state_word(n.state).into(),
        address: host_port(&n.info.api_url),
        livekit: health_word(n.stats.livekit_health).into(),
        restarts: direct.and_then(restarts_of),
        sysload: Some(n.stats.sysload),
        rooms: Some(n.stats.rooms),
        participants: Some(n.stats.participants),
        heartbeat_age_ms: Some(n.last_seen_ms),
    }
}

/// The local daemon's row from its own `/api/node` (no cluster view).
fn local_row(v: &Value, url: &str) -> Row {
    let s = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned()
    };
    let state = match v.pointer("/cluster/state").and_then(Value::as_str) {
        Some(link) => link.to_owned(),
        None => "-".into(),
    };
    Row {
        node: s("/name"),
        mode: s("/mode"),
        state,
        address: host_port(url),
        livekit: s("/livekit/state"),
        restarts: restarts_of(v),
        sysload: v.pointer("/stats/sysload").and_then(Value::as_f64),
        rooms: None,
        participants: None,
        heartbeat_age_ms: v
            .pointer("/cluster/last_heartbeat_age_ms")
            .and_then(Value::as_u64),
    }
}

/// Problems the local daemon reports about itself (LiveKit, its link to main).
fn local_problems(v: &Value, problems: &mut Vec<String>, down: &mut bool) {
    let name = v["name"].as_str().unwrap_or("this node");
    match v.pointer("/livekit/state").and_then(Value::as_str) {
        Some("ready") => {}
        Some(st @ ("failed" | "stopped" | "stopping")) => {
            *down = true;
            problems.push(format!("{name}: LiveKit {st}"));
        }
        Some(st) => {
            let detail = v
                .pointer("/livekit/detail")
                .and_then(Value::as_str)
                .unwrap_or("");
            problems.push(format!("{name}: LiveKit {st} ({detail})"));
        }
        None => problems.push(format!("{name}: LiveKit state unknown")),
    }
    if let Some(link) = v.pointer("/cluster/state").and_then(Value::as_str) {
        if link != "registered" {
            let why = v
                .pointer("/cluster/reason")
                .and_then(Value::as_str)
                .unwrap_or("");
            let code = v
                .pointer("/cluster/error_code")
                .and_then(Value::as_str)
                .map(|c| format!("{c}: "))
                .unwrap_or_default();
            problems.push(
                format!("{name}: {link} by main ({code}{why})")
                    .replace("searching by main", "searching for main"),
            );
        }
    }
}

fn cluster_problems(c: &ClusterStatus, problems: &mut Vec<String>, notes: &mut Vec<String>) {
    for n in &c.nodes {
        match n.state {
            NodeState::Alive => {}
            NodeState::Left => continue,
            s => problems.push(format!(
                "{}: {} (last heard {:.1} s ago)",
                n.name,
                state_word(s),
                n.last_seen_ms as f64 / 1000.0
            )),
        }
        if n.state.is_live() && n.stats.livekit_health != LivekitHealth::Healthy {
            problems.push(format!(
                "{}: LiveKit {}",
                n.name,
                health_word(n.stats.livekit_health)
            ));
        }
        if n.state.is_live() && n.stats.sysload >= c.sysload_limit {
            notes.push(format!(
                "{}: sysload {:.2} at or over the limit {:.2} (gets no new rooms)",
                n.name, n.stats.sysload, c.sysload_limit
            ));
        }
    }
    let alive: Vec<&NodeView> = c
        .nodes
        .iter()
        .filter(|n| n.state == NodeState::Alive)
        .collect();
    if !alive.is_empty() && !alive.iter().any(|n| n.stats.sysload < c.sysload_limit) {
        problems.push(format!(
            "every alive node is at or over the sysload limit {:.2}: new rooms go to overloaded nodes",
            c.sysload_limit
        ));
    }
}

/// Rows, verdict and exit code from the answers.
pub fn build(a: &Answers) -> Report {
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let mut down = false;
    let mut rows = Vec::new();
    let local = match &a.local {
        Some(Ok(v)) => Some(v),
        Some(Err(e)) => {
            down = true;
            problems.push(format!(
                "the local daemon does not answer at {}: {e}",
                a.local_url
            ));
            None
        }
        None => None,
    };
    if let Some(v) = local {
        local_problems(v, &mut problems, &mut down);
    }
    let mut limit = None;
    match &a.cluster {
        Some(Ok(c)) => {
            limit = Some(c.sysload_limit);
            cluster_problems(c, &mut problems, &mut notes);
            for n in &c.nodes {
                let direct = a
                    .nodes
                    .iter()
                    .find(|(name, _)| *name == n.name)
                    .and_then(|(_, r)| r.as_ref().ok());
                rows.push(cluster_row(n, direct));
            }
        }
        Some(Err(e)) => {
            problems.push(format!(
                "main does not answer at {}: {e}",
                a.main_url.as_deref().unwrap_or("?")
            ));
            if let Some(v) = local {
                rows.push(local_row(v, &a.local_url));
            }
        }
        None => {
            if let Some(v) = local {
                rows.push(local_row(v, &a.local_url));
            }
        }
    }
    let verdict = if down {
        Verdict::Down
    } else if problems.is_empty() {
        Verdict::Healthy
    } else {
        Verdict::Degraded
    };
    let summary = summary(verdict, &rows, &problems);
    Report {
        verdict,
        exit_code: verdict.exit_code(),
        summary,
        local: a.local_url.clone(),
        main: a.main_url.clone(),
        sysload_limit: limit,
        nodes: rows,
        problems,
        notes,
    }
}

fn summary(v: Verdict, rows: &[Row], problems: &[String]) -> String {
    if v != Verdict::Healthy {
        return format!("{}: {}", v.as_str(), problems.join("; "));
    }
    let alive = rows.iter().filter(|r| r.state == "alive").count();
    let rooms: u32 = rows.iter().filter_map(|r| r.rooms).sum();
    let people: u32 = rows.iter().filter_map(|r| r.participants).sum();
    if alive == 0 {
        return format!("healthy: {} node, LiveKit ready", rows.len());
    }
    format!(
        "healthy: {alive} node{} alive, {rooms} room{}, {people} participant{}",
        if alive == 1 { "" } else { "s" },
        if rooms == 1 { "" } else { "s" },
        if people == 1 { "" } else { "s" }
    )
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|x| x.to_string()).unwrap_or_else(|| "-".into())
}

/// The table and the verdict line, as printed.
pub fn render_table(r: &Report) -> String {
    let head = [
        "NODE",
        "MODE",
        "STATE",
        "ADDRESS",
        "LIVEKIT",
        "RESTARTS",
        "SYSLOAD",
        "ROOMS",
        "PARTICIPANTS",
        "HEARTBEAT",
    ];
    let mut lines: Vec<Vec<String>> = vec![head.iter().map(|s| s.to_string()).collect()];
    for row in &r.nodes {
        let sysload = match (row.sysload, r.sysload_limit) {
            (Some(s), Some(l)) => format!("{s:.2}/{l:.2}"),
            (Some(s), None) => format!("{s:.2}"),
            _ => "-".into(),
        };
        let age = row
            .heartbeat_age_ms
            .map(|ms| format!("{:.1}s ago", ms as f64 / 1000.0))
            .unwrap_or_else(|| "-".into());
        lines.push(vec![
            row.node.clone(),
            row.mode.clone(),
            row.state.clone(),
            row.address.clone(),
            row.livekit.clone(),
            opt(row.restarts),
            sysload,
            opt(row.rooms),
            opt(row.participants),
            age,
        ]);
    }
    let widths: Vec<usize> = (0..head.len())
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for l in &lines {
        let cells: Vec<String> = l
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str(&r.summary);
    out.push('\n');
    for n in &r.notes {
        out.push_str("note: ");
        out.push_str(n);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, state: &str, health: &str, sysload: f64) -> Value {
        json!({"name": name, "state": state, "last_seen_ms": 1200,
            "info": {"name": name, "mode": if name == "main" {"main"} else {"sub"}, "protocol_version": 1,
                "software_version": "0.1.0", "api_url": format!("http://10.0.0.1:800{}", name.len() % 10),
                "livekit_url": "ws://10.0.0.1:7880", "rtc_range": {"start": 50000, "end": 50020}},
            "stats": {"cpu_percent": 1.0, "memory_used_bytes": 1, "memory_total_bytes": 2, "load1": 0.1,
                "sysload": sysload, "num_cpus": 4, "rooms": 2, "participants": 5,
                "livekit_health": health, "room_names": []}})
    }

    fn cluster(nodes: Vec<Value>) -> ClusterStatus {
        serde_json::from_value(
            json!({"cluster_id": "c", "main_name": "main", "protocol_version": 1,
            "heartbeat_secs": 5, "sysload_limit": 0.7, "nodes_alive": 0, "nodes_suspect": 0,
            "nodes_dead": 0, "nodes_left": 0, "rooms": 0, "participants": 0, "nodes": nodes}),
        )
        .unwrap()
    }

    fn local(mode: &str, lk: &str, link: Option<&str>) -> Value {
        let cluster = match link {
            Some(l) => json!({"role": "sub", "state": l, "main_url": "http://10.0.0.1:8000",
                "error_code": if l == "rejected" { json!("bad_signature") } else { json!(null) },
                "reason": "x", "last_heartbeat_age_ms": 400}),
            None => json!(null),
        };
        json!({"name": "node-1", "mode": mode, "livekit": {"state": lk, "restarts": 2, "detail": "d"},
            "stats": {"sysload": 0.1}, "cluster": cluster})
    }

    fn answers(local: Value, c: Option<ClusterStatus>) -> Answers {
        Answers {
            local_url: "http://127.0.0.1:8001".into(),
            local: Some(Ok(local)),
            main_url: c.as_ref().map(|_| "http://10.0.0.1:8000".into()),
            cluster: c.map(Ok),
            nodes: vec![("node-1".into(), Ok(json!({"livekit": {"restarts": 3}})))],
        }
    }

    #[test]
    fn healthy_cluster() {
        let c = cluster(vec![
            node("main", "alive", "healthy", 0.1),
            node("node-1", "alive", "healthy", 0.9),
        ]);
        let r = build(&answers(local("sub", "ready", Some("registered")), Some(c)));
        assert_eq!(r.verdict, Verdict::Healthy, "{r:?}");
        assert_eq!(r.exit_code, 0);
        assert_eq!(
            r.summary,
            "healthy: 2 nodes alive, 4 rooms, 10 participants"
        );
        assert_eq!(r.nodes[1].restarts, Some(3));
        assert_eq!(r.nodes[0].restarts, None);
        assert_eq!(r.notes.len(), 1, "node-1 over the limit is a note: {r:?}");
        let t = render_table(&r);
        assert!(t.starts_with("NODE "), "{t}");
        assert!(t.contains("node-1  sub   alive  10.0.0.1:8006  healthy  3         0.90/0.70  2      5             1.2s ago"), "{t}");
    }

    #[test]
    fn dead_node_or_sick_livekit_is_degraded() {
        let c = cluster(vec![
            node("main", "alive", "healthy", 0.1),
            node("node-2", "dead", "healthy", 0.1),
        ]);
        let r = build(&answers(local("main", "ready", None), Some(c)));
        assert_eq!(r.verdict, Verdict::Degraded);
        assert!(
            r.summary
                .starts_with("degraded: node-2: dead (last heard 1.2 s ago)"),
            "{}",
            r.summary
        );
        let c = cluster(vec![node("main", "alive", "degraded", 0.1)]);
        let r = build(&answers(local("main", "ready", None), Some(c)));
        assert_eq!(r.exit_code, 1);
        assert!(
            r.summary.contains("main: LiveKit degraded"),
            "{}",
            r.summary
        );
        let c = cluster(vec![
            node("main", "alive", "healthy", 0.8),
            node("node-1", "alive", "healthy", 0.9),
        ]);
        let r = build(&answers(local("main", "ready", None), Some(c)));
        assert!(
            r.summary.contains("every alive node is at or over"),
            "{}",
            r.summary
        );
    }

    #[test]
    fn sub_link_problems_and_down() {
        let r = build(&answers(local("sub", "ready", Some("rejected")), None));
        assert_eq!(r.verdict, Verdict::Degraded);
        assert!(
            r.summary.contains("rejected by main (bad_signature: x)"),
            "{}",
            r.summary
        );
        assert_eq!(r.nodes.len(), 1);
        assert_eq!(r.nodes[0].state, "rejected");
        let r = build(&answers(local("sub", "ready", Some("searching")), None));
        assert!(r.summary.contains("searching for main"), "{}", r.summary);
        let r = build(&answers(local("standalone", "failed", None), None));
        assert_eq!((r.verdict, r.exit_code), (Verdict::Down, 2));
        let mut a = answers(local("sub", "ready", Some("registered")), None);
        a.local = Some(Err("connection refused".into()));
        let r = build(&a);
        assert_eq!(r.exit_code, 2);
        assert!(
            r.summary
                .contains("does not answer at http://127.0.0.1:8001"),
            "{}",
            r.summary
        );
        assert!(r.nodes.is_empty());
        let mut a = answers(local("sub", "ready", Some("registered")), None);
        a.main_url = Some("http://10.0.0.1:8000".into());
        a.cluster = Some(Err("no answer within 2s".into()));
        let r = build(&a);
        assert_eq!(r.exit_code, 1);
        assert!(r.summary.contains("main does not answer"), "{}", r.summary);
        let r = build(&answers(local("standalone", "ready", None), None));
        assert_eq!(r.summary, "healthy: 1 node, LiveKit ready");
    }
}
