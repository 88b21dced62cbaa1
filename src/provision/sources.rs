//! Turning each provisioning source into [`Values`]: the `provision.toml` document (file on the
//! ESP or a USB stick, or the credential `airclass.provision`), single credentials
//! `airclass.NAME`, and `airclass.NAME=VALUE` on the kernel command line. Pure parsing; the
//! shell (`cli.rs`) reads the files. Error messages never quote a value (it may be a secret).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::keys::{Key, Origin, Values};
use super::Invalid;

/// `provision.toml`: unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    node: Option<String>,
    mode: Option<String>,
    cluster_id: Option<String>,
    main_url: Option<String>,
    redis_url: Option<String>,
    mdns: Option<bool>,
    secrets: Option<SecretsDoc>,
    access: Option<AccessDoc>,
    network: Option<NetworkDoc>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretsDoc {
    livekit_api_key: Option<String>,
    livekit_api_secret: Option<String>,
    cluster_secret: Option<String>,
    redis_password: Option<String>,
    app_token: Option<String>,
    app_token_sha256: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessDoc {
    ssh_authorized_keys: Option<Vec<String>>,
    console_password_hash: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkDoc {
    interface: Option<String>,
    address: Option<String>,
    gateway: Option<String>,
    dns: Option<Vec<String>>,
}

/// A deserializer message without the offending value: serde's "invalid type: string \"…\",
/// expected …" quotes it, and it may be a secret.
fn safe_message(msg: &str) -> String {
    let msg = msg.trim();
    for head in ["invalid type", "invalid value", "invalid length"] {
        if msg.starts_with(head) {
            return match msg.find(", expected") {
                Some(i) => format!("{head}{}", &msg[i..]),
                None => head.to_string(),
            };
        }
    }
    msg.to_string()
}

/// Parse a `provision.toml` document.
pub fn parse_doc(text: &str, origin: Origin) -> Result<Values, Invalid> {
    let doc: Doc = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        let msg = safe_message(e.message());
        Invalid {
            key: None,
            origin: origin.clone(),
            problem: match line {
                Some(l) => format!("line {l}: {msg}"),
                None => msg,
            },
            fix: "compare with airclass/provision.toml.example on the EFI partition (or docs/appliance.md)".into(),
        }
    })?;
    let mut v = Values::default();
    let mut put = |key: Key, s: Option<String>| {
        if let Some(s) = s {
            v.set(key, s.trim(), origin.clone());
        }
    };
    put(Key::Node, doc.node);
    put(Key::Mode, doc.mode);
    put(Key::ClusterId, doc.cluster_id);
    put(Key::MainUrl, doc.main_url);
    put(Key::RedisUrl, doc.redis_url);
    put(Key::Mdns, doc.mdns.map(|b| b.to_string()));
    let s = doc.secrets.unwrap_or_default();
    put(Key::LivekitApiKey, s.livekit_api_key);
    put(Key::LivekitApiSecret, s.livekit_api_secret);
    put(Key::ClusterSecret, s.cluster_secret);
    put(Key::RedisPassword, s.redis_password);
    put(Key::AppToken, s.app_token);
    put(Key::AppTokenSha256, s.app_token_sha256);
    let a = doc.access.unwrap_or_default();
    put(
        Key::SshAuthorizedKeys,
        a.ssh_authorized_keys.map(|l| l.join("\n")),
    );
    put(Key::ConsolePasswordHash, a.console_password_hash);
    let n = doc.network.unwrap_or_default();
    put(Key::Interface, n.interface);
    put(Key::Address, n.address);
    put(Key::Gateway, n.gateway);
    put(Key::Dns, n.dns.map(|l| l.join("\n")));
    Ok(v)
}

/// Lists given as one string: DNS servers separated by commas or blanks, SSH keys one per line.
fn normalise(key: Key, text: &str) -> String {
    match key {
        Key::Dns => text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("\n"),
        Key::SshAuthorizedKeys => text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => text.trim().to_string(),
    }
}

/// The credential holding a whole `provision.toml`.
pub const DOC_CREDENTIAL: &str = "airclass.provision";

/// Credentials, by name → contents. Returns (single credentials, the document credential).
pub fn from_credentials(creds: &BTreeMap<String, String>) -> (Values, Values, Vec<Invalid>) {
    let mut single = Values::default();
    let mut doc = Values::default();
    let mut errors = Vec::new();
    for (name, text) in creds {
        let Some(short) = name.strip_prefix("airclass.") else {
            continue;
        };
        if name == DOC_CREDENTIAL {
            match parse_doc(text, Origin::CredentialFile) {
                Ok(v) => doc = v,
                Err(e) => errors.push(e),
            }
            continue;
        }
        match Key::from_name(short) {
            Some(key) => single.set(key, normalise(key, text), Origin::Credential(name.clone())),
            None => errors.push(Invalid {
                key: None,
                origin: Origin::Credential(name.clone()),
                problem: format!("unknown credential {name}"),
                fix: format!(
                    "use airclass.provision or airclass.NAME with NAME one of: {}",
                    key_names()
                ),
            }),
        }
    }
    (single, doc, errors)
}

fn key_names() -> String {
    super::keys::KEYS
        .iter()
        .map(|i| i.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Split a kernel command line into parameters (double quotes group, as the kernel does).
fn split_cmdline(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `airclass.NAME=VALUE` parameters. Secrets are refused: /proc/cmdline is world-readable.
pub fn from_cmdline(line: &str) -> (Values, Vec<Invalid>) {
    let mut v = Values::default();
    let mut errors = Vec::new();
    for param in split_cmdline(line) {
        let Some(rest) = param.strip_prefix("airclass.") else {
            continue;
        };
        let (name, value) = rest.split_once('=').unwrap_or((rest, ""));
        let bad = |problem: String, fix: String| Invalid {
            key: None,
            origin: Origin::KernelCmdline,
            problem,
            fix,
        };
        match Key::from_name(name) {
            Some(key) if key.is_secret() => errors.push(Invalid {
                key: Some(key),
                ..bad(
                    format!("airclass.{name} is a secret; the kernel command line is readable by every user (/proc/cmdline)"),
                    format!("give it as the credential airclass.{name} or in airclass/provision.toml"),
                )
            }),
            Some(key) if value.is_empty() => errors.push(Invalid {
                key: Some(key),
                ..bad(format!("airclass.{name} has no value"), format!("write airclass.{name}=VALUE"))
            }),
            Some(key) => v.set(key, normalise(key, value), Origin::KernelCmdline),
            None => errors.push(bad(
                format!("unknown parameter airclass.{name}"),
                format!("known: {}", key_names()),
            )),
        }
    }
    (v, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
node = "node-1"
mode = "sub"
cluster_id = "school-a"
redis_url = "redis://10.0.0.10:6379"
mdns = true

[secrets]
livekit_api_key = "APIabc"
cluster_secret = "c0123456789012345678901234567890123"

[access]
ssh_authorized_keys = ["ssh-ed25519 AAAAC3Nza op@x", "ssh-rsa AAAAB3 other"]

[network]
address = "10.0.0.11/24"
dns = ["10.0.0.1", "10.0.0.2"]
"#;

    #[test]
    fn doc_is_flattened() {
        let v = parse_doc(FULL, Origin::EspFile).unwrap();
        assert_eq!(v.get(Key::Node), Some("node-1"));
        assert_eq!(v.get(Key::Mdns), Some("true"));
        assert_eq!(v.get(Key::LivekitApiKey), Some("APIabc"));
        assert_eq!(
            v.get(Key::SshAuthorizedKeys),
            Some("ssh-ed25519 AAAAC3Nza op@x\nssh-rsa AAAAB3 other")
        );
        assert_eq!(v.get(Key::Dns), Some("10.0.0.1\n10.0.0.2"));
        assert_eq!(v.0[&Key::Node].origin, Origin::EspFile);
        assert!(v.has_secret_from(&Origin::EspFile));
    }

    #[test]
    fn unknown_key_names_line_and_key_not_value() {
        let text = "node = \"main\"\n[secrets]\ncluster_secert = \"s3cr3t-value-here\"\n";
        let e = parse_doc(text, Origin::UsbFile).unwrap_err();
        assert!(e.problem.contains("line 3"), "{}", e.problem);
        assert!(e.problem.contains("cluster_secert"), "{}", e.problem);
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
    }

    #[test]
    fn wrong_type_does_not_leak() {
        let e = parse_doc(
            "[secrets]\ncluster_secret = 12345678901234\n",
            Origin::EspFile,
        )
        .unwrap_err();
        assert!(!e.to_string().contains("12345678901234"), "{e}");
        assert!(e.problem.contains("line 2"), "{}", e.problem);
    }

    #[test]
    fn credentials_single_and_doc() {
        let mut c = BTreeMap::new();
        c.insert("airclass.node".to_string(), "main\n".to_string());
        c.insert("airclass.dns".to_string(), "1.1.1.1, 9.9.9.9".to_string());
        c.insert(
            "airclass.provision".to_string(),
            "mode = \"main\"\n".to_string(),
        );
        c.insert("other.thing".to_string(), "ignored".to_string());
        c.insert("airclass.nod".to_string(), "x".to_string());
        let (single, doc, errors) = from_credentials(&c);
        assert_eq!(single.get(Key::Node), Some("main"));
        assert_eq!(single.get(Key::Dns), Some("1.1.1.1\n9.9.9.9"));
        assert_eq!(doc.get(Key::Mode), Some("main"));
        assert_eq!(errors.len(), 1);
        assert!(errors[0].problem.contains("airclass.nod"));
    }

    #[test]
    fn cmdline_parameters_and_refusals() {
        let line = "BOOT_IMAGE=/vmlinuz root=PARTUUID=x ro airclass.node=node-2 airclass.main=http://10.0.0.10:8000 \
                    \"airclass.ssh_authorized_keys=ssh-ed25519 AAAA op\" airclass.cluster_secret=abc airclass.bogus=1 airclass.mode=";
        let (v, errors) = from_cmdline(line);
        assert_eq!(v.get(Key::Node), Some("node-2"));
        assert_eq!(v.get(Key::MainUrl), Some("http://10.0.0.10:8000"));
        assert_eq!(v.get(Key::SshAuthorizedKeys), Some("ssh-ed25519 AAAA op"));
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors.iter().any(|e| e.problem.contains("is a secret")));
        assert!(errors.iter().all(|e| !e.to_string().contains("abc")));
        assert!(errors.iter().any(|e| e.problem.contains("airclass.bogus")));
        assert!(errors.iter().any(|e| e.problem.contains("no value")));
    }
}
