//! The few W3C WebDriver calls the browser test needs, spoken to Debian's chromedriver with
//! reqwest (new session, navigate, execute script, screenshot, delete session).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use airclass_node::clock;

use base64::Engine;
use serde_json::{json, Value};

use crate::support::ports::PortBlock;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A chromedriver process on a reserved loopback port; killed on drop.
pub struct Chrome {
    child: Child,
    url: String,
    profile: tempfile::TempDir,
    _ports: PortBlock,
}

impl Chrome {
    /// Start chromedriver, or fail saying how to install the browser.
    pub fn start() -> Self {
        for p in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(p).exists(),
                "{p} is missing: apt-get install -y chromium chromium-driver (scripts/test.sh installs them)"
            );
        }
        let ports = PortBlock::reserve();
        let port = ports.port(0);
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot run chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let t0 = clock::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "chromedriver did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            url,
            profile: tempfile::tempdir().unwrap(),
            _ports: ports,
        }
    }

    /// A headless Chromium session with a fresh profile and no network of its own.
    pub async fn session(&self) -> Session {
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1200,820",
                    format!("--user-data-dir={}", self.profile.path().display())]
            }
        }}});
        let http = crate::support::http();
        let r: Value = http
            .post(format!("{}/session", self.url))
            .json(&caps)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver refused the session: {r}"))
            .to_owned();
        Session {
            base: format!("{}/session/{id}", self.url),
            http,
        }
    }
}

impl Drop for Chrome {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session.
pub struct Session {
    base: String,
    http: reqwest::Client,
}

impl Session {
    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let mut rb = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(Duration::from_secs(30));
        if !body.is_null() {
            rb = rb.json(&body);
        }
        let r = rb.send().await.unwrap();
        let v: Value = r.json().await.unwrap();
        assert!(v["value"].get("error").is_none(), "WebDriver {path}: {v}");
        v["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await;
    }

    pub async fn execute(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        )
        .await
    }

    pub async fn screenshot(&self, to: &Path) {
        let b64 = self
            .call(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, png).unwrap();
    }

    pub async fn close(self) {
        let _ = self.http.delete(&self.base).send().await;
    }
}
