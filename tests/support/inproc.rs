//! The daemon in this process: `airclass_node::daemon::run` with the node's resolved config, a
//! recording notifier in place of systemd, and a cancellation token in place of SIGTERM (as
//! mini-redis' tests call `server::run(listener, shutdown)`). LiveKit is still a child process.

use std::time::Duration;

use airclass_node::clock;
use airclass_node::daemon::{self, DaemonError, RunOptions};
use airclass_node::sync::lock;
use airclass_node::systemd::{Notification, Notifier, NotifyLog};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::node::NodeDir;

/// A daemon running as a task of the test's runtime.
pub struct InProcess {
    pub name: String,
    pub api: String,
    pub notes: NotifyLog,
    token: CancellationToken,
    task: JoinHandle<Result<(), DaemonError>>,
}

impl InProcess {
    /// Resolve `dir`'s configuration and secrets as `airclass-node run` would (with an empty
    /// environment) and start `daemon::run`; `opts.notifier` is replaced by a recording one.
    pub fn start(dir: &NodeDir, mut opts: RunOptions) -> Self {
        airclass_node::tls::install_crypto_provider();
        let run = dir.path().join("run");
        let resolved = airclass_node::config::resolve(
            &dir.sources(),
            &dir.instance,
            Some(run.to_str().unwrap()),
        );
        let (node, _warnings) = resolved.unwrap_or_else(|p| panic!("bad test config: {p:?}"));
        let secrets = airclass_node::config::load_secrets(&node, None, &mut Vec::new())
            .unwrap_or_else(|p| panic!("bad test secrets: {p:?}"));
        let (notifier, notes) = Notifier::recording();
        opts.notifier = notifier;
        let token = CancellationToken::new();
        let task = tokio::spawn(daemon::run(
            node,
            secrets,
            opts,
            token.clone().cancelled_owned(),
        ));
        InProcess {
            name: dir.instance.clone(),
            api: dir.api_url(),
            notes,
            token,
            task,
        }
    }

    /// Every `READY=1` / `STATUS=` / `STOPPING=1` text so far.
    pub fn statuses(&self) -> Vec<String> {
        lock(&self.notes)
            .iter()
            .filter_map(|(_, n)| match n {
                Notification::Ready(s) | Notification::Status(s) | Notification::Stopping(s) => {
                    Some(s.clone())
                }
                _ => None,
            })
            .collect()
    }

    /// The notifications so far.
    pub fn notifications(&self) -> Vec<Notification> {
        lock(&self.notes).iter().map(|(_, n)| n.clone()).collect()
    }

    /// The last status line.
    pub fn status(&self) -> String {
        self.statuses().pop().unwrap_or_default()
    }

    /// Wait until `READY=1` was sent; panics with the statuses otherwise.
    pub async fn wait_ready(&self, timeout: Duration) {
        let ready = self
            .wait_for(timeout, |n| matches!(n, Notification::Ready(_)))
            .await;
        assert!(
            ready,
            "{} never sent READY=1: {:?}",
            self.name,
            self.statuses()
        );
    }

    /// Wait until the last status line contains `needle`.
    pub async fn wait_status(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = clock::now() + timeout;
        while clock::now() < deadline {
            if self.status().contains(needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    async fn wait_for(&self, timeout: Duration, f: impl Fn(&Notification) -> bool) -> bool {
        let deadline = clock::now() + timeout;
        while clock::now() < deadline {
            if lock(&self.notes).iter().any(|(_, n)| f(n)) {
                return true;
            }
            if self.task.is_finished() {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Has `run` returned (an error, or a stop)?
    pub fn finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Cancel the token (SIGTERM, in effect) and wait for `run` to return.
    pub async fn stop(self) -> Result<(), DaemonError> {
        self.token.cancel();
        self.task.await.unwrap()
    }

    /// Wait for `run` to return on its own.
    pub async fn join(self, timeout: Duration) -> Result<(), DaemonError> {
        tokio::time::timeout(timeout, self.task)
            .await
            .expect("the daemon did not stop by itself")
            .unwrap()
    }
}
