//! A cluster in one process, as chitchat's simulated-cluster tests do it: main and two subs are
//! `daemon::run` tasks (LiveKit is the real livekit-server, a child process each; one real
//! redis-server), and each sub reaches main only through its own [`Link`], which a scenario
//! cuts and heals.
//! A scenario is a list of [`Step`]s run in order; every wait is bounded and says what it saw.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use airclass_node::daemon::RunOptions;
use serde_json::json;

use crate::roles::{join, wait_until, APP_TOKEN};
use crate::support::http;
use crate::support::inproc::InProcess;
use crate::support::link::Link;
use crate::support::node::{NodeDir, NodeSpec};
use crate::support::redis::Redis;

/// One step of a scenario.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Main's table shows the node in this state within the time.
    State(&'static str, &'static str, Duration),
    /// The node's last `STATUS=` line contains the text within the time.
    Status(&'static str, &'static str, Duration),
    /// Cut the link from this sub to main.
    Cut(&'static str),
    /// Heal it.
    Heal(&'static str),
    /// Twenty new rooms are all placed on these nodes.
    JoinsOnlyOn(&'static [&'static str]),
}

use Step::*;

const S: Duration = Duration::from_secs(1);

/// The running cluster: nodes by name, the links of the subs.
struct Cluster {
    _redis: Redis,
    _dirs: Vec<NodeDir>,
    main_api: String,
    nodes: BTreeMap<&'static str, InProcess>,
    links: BTreeMap<&'static str, Link>,
}

/// A member of cluster `partition`: heartbeat 1 s, dead after 3 missed (3.5 s), drain 3 s.
fn member(spec: NodeSpec, redis: &Redis) -> NodeSpec {
    spec.redis(redis.url())
        .cluster_id("partition")
        .heartbeat_secs(1)
        .dead_after_missed(3)
        .drain_timeout_secs(3)
}

impl Cluster {
    async fn start(subs: &[&'static str]) -> Self {
        let redis = Redis::start();
        let main_dir = member(NodeSpec::main("main"), &redis).write();
        let main = InProcess::start(&main_dir, RunOptions::default());
        main.wait_ready(Duration::from_secs(20)).await;
        let main_addr = SocketAddr::from(([127, 0, 0, 1], main_dir.api_port));
        let mut cluster = Cluster {
            main_api: main_dir.api_url(),
            _redis: redis,
            _dirs: Vec::new(),
            nodes: BTreeMap::from([("main", main)]),
            links: BTreeMap::new(),
        };
        for name in subs {
            let link = Link::new(main_addr).await;
            let dir = member(NodeSpec::sub(name), &cluster._redis)
                .main_url(&link.url())
                .write();
            let node = InProcess::start(&dir, RunOptions::default());
            node.wait_ready(Duration::from_secs(20)).await;
            cluster.nodes.insert(name, node);
            cluster.links.insert(name, link);
            cluster._dirs.push(dir);
        }
        cluster._dirs.push(main_dir);
        cluster
    }

    /// Main's view: node → state.
    async fn states(&self) -> BTreeMap<String, String> {
        let v: serde_json::Value = match http()
            .get(format!("{}/api/cluster/nodes", self.main_api))
            .timeout(Duration::from_secs(2))
            .send()
            .await
        {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => return BTreeMap::new(),
        };
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| Some((n["name"].as_str()?.into(), n["state"].as_str()?.into())))
            .collect()
    }

    async fn run(&self, steps: &[Step]) {
        for (i, step) in steps.iter().enumerate() {
            println!("step {i}: {step:?}");
            match *step {
                State(node, state, within) => {
                    let ok = wait_until(within, || async {
                        self.states().await.get(node).map(String::as_str) == Some(state)
                    })
                    .await;
                    assert!(
                        ok.is_some(),
                        "step {i}: {node} not {state}: {:?}",
                        self.states().await
                    );
                }
                Status(node, text, within) => {
                    let n = &self.nodes[node];
                    assert!(
                        n.wait_status(text, within).await,
                        "step {i}: {node}'s status: {:?}",
                        n.status()
                    );
                }
                Cut(sub) => self.links[sub].cut(),
                Heal(sub) => self.links[sub].heal(),
                JoinsOnlyOn(allowed) => {
                    for r in 0..20 {
                        let body = json!({"identity": "u", "role": "student"});
                        let room = format!("step-{i}-room-{r}");
                        let (code, v) = join(&self.main_api, &room, Some(APP_TOKEN), body).await;
                        assert_eq!(code, 200, "step {i}: {v}");
                        let node = v["node"].as_str().unwrap();
                        assert!(allowed.contains(&node), "step {i}: {room} went to {node}");
                    }
                }
            }
        }
    }

    async fn stop(self) {
        for (name, node) in self.nodes {
            node.stop()
                .await
                .unwrap_or_else(|e| panic!("{name} stopped with {e}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_sub_is_declared_dead_gets_no_rooms_and_rejoins_when_healed() {
    let cluster = Cluster::start(&["node-1", "node-2"]).await;
    cluster
        .run(&[
            State("node-1", "alive", 10 * S),
            State("node-2", "alive", 10 * S),
            Status("node-1", "registered with main main", 5 * S),
            Cut("node-1"),
            State("node-1", "suspect", 5 * S),
            State("node-1", "dead", 8 * S),
            State("node-2", "alive", S),
            Status("node-1", "main unreachable", 5 * S),
            Status("main", "2 alive, 0 suspect, 1 dead", 5 * S),
            JoinsOnlyOn(&["main", "node-2"]),
            Heal("node-1"),
            State("node-1", "alive", 8 * S),
            Status("node-1", "registered with main main", 5 * S),
            Status("main", "3 alive, 0 suspect, 0 dead", 5 * S),
        ])
        .await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_sub_cut_main_places_every_room_on_itself() {
    let cluster = Cluster::start(&["node-1", "node-2"]).await;
    cluster
        .run(&[
            State("node-1", "alive", 10 * S),
            State("node-2", "alive", 10 * S),
            Cut("node-1"),
            Cut("node-2"),
            State("node-1", "dead", 8 * S),
            State("node-2", "dead", 8 * S),
            JoinsOnlyOn(&["main"]),
            Heal("node-2"),
            State("node-2", "alive", 8 * S),
            State("node-1", "dead", S),
        ])
        .await;
    cluster.stop().await;
}
