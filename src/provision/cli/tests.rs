//! The whole provisioning flow against a temporary root, with the system calls recorded.

use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::provision::apply::{ISSUE, NODES, REDIS_CONF, SECRETS, STATE};
use crate::provision::ProvisionError;

#[derive(Default)]
struct Recorder {
    calls: Vec<String>,
}

impl System for Recorder {
    fn set_hostname(&mut self, name: &str) -> Result<(), ProvisionError> {
        self.calls.push(format!("hostname {name}"));
        Ok(())
    }
    fn set_root_password_hash(&mut self, _: &str) -> Result<(), ProvisionError> {
        self.calls.push("root password".into());
        Ok(())
    }
    fn systemctl(&mut self, args: &[&str]) -> Result<(), ProvisionError> {
        self.calls.push(format!("systemctl {}", args.join(" ")));
        Ok(())
    }
    fn group_id(&self, _: &str) -> Option<u32> {
        None
    }
}

const SECRET: &str = "s234567890123456789012345678901234";
const CLUSTER: &str = "c234567890123456789012345678901234";
const REDIS_PW: &str = "r2345678901234567890";
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOpTest operator@test";

fn layout() -> (tempfile::TempDir, Layout) {
    let d = tempfile::tempdir().unwrap();
    let l = Layout {
        root: d.path().join("root"),
    };
    (d, l)
}

fn read(l: &Layout, abs: &str) -> String {
    std::fs::read_to_string(l.path(abs)).unwrap_or_default()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn unprovisioned_says_what_is_missing_and_starts_nothing() {
    let (_d, l) = layout();
    let mut sys = Recorder::default();
    assert_eq!(run(&Inputs::default(), &l, &mut sys), exit::OK);
    assert!(sys.calls.is_empty(), "{:?}", sys.calls);
    let issue = read(&l, ISSUE);
    assert!(
        issue.contains("NOT PROVISIONED") && issue.contains("node:"),
        "{issue}"
    );
    assert!(!l.path(NODES).exists() && !l.path(STATE).exists());
}

fn main_inputs() -> Inputs {
    let mut i = Inputs::default();
    for (k, v) in [
        ("node", "main"),
        ("cluster_id", "school-a"),
        ("ssh_authorized_keys", KEY),
        ("redis_password", REDIS_PW),
    ] {
        i.credentials
            .insert(format!("airclass.{k}"), format!("{v}\n"));
    }
    i
}

#[test]
fn main_from_credentials_then_a_plain_reboot() {
    let (_d, l) = layout();
    let mut sys = Recorder::default();
    assert_eq!(run(&main_inputs(), &l, &mut sys), exit::OK);
    let node = read(&l, &format!("{NODES}/main.toml"));
    assert!(
        node.contains("mode = \"main\"") && node.contains("id = \"school-a\""),
        "{node}"
    );
    for f in SecretFile::ALL {
        let p = l.secret(f);
        assert!(p.exists(), "{f:?} missing");
        assert_eq!(
            mode(&p),
            if f == SecretFile::AppToken {
                0o600
            } else {
                0o640
            },
            "{f:?}"
        );
    }
    assert_eq!(mode(&l.path(SECRETS)), 0o750);
    assert_eq!(
        read(&l, "/etc/airclass/secrets/redis-password").trim(),
        REDIS_PW
    );
    let redis = read(&l, REDIS_CONF);
    assert!(redis.contains("user default on #") && !redis.contains(REDIS_PW));
    assert_eq!(mode(&l.path(REDIS_CONF)), 0o600);
    assert_eq!(read(&l, "/etc/hostname"), "airclass-main\n");
    assert_eq!(read(&l, "/root/.ssh/authorized_keys"), format!("{KEY}\n"));
    assert!(read(&l, ISSUE).contains("AirClass node main (main, cluster school-a)"));
    assert_eq!(
        sys.calls,
        [
            "hostname airclass-main",
            "systemctl restart --no-block airclass-redis.service",
            "systemctl restart --no-block airclass-node@main.service"
        ]
    );
    let secret_before = read(&l, "/etc/airclass/secrets/cluster-secret");
    // next boot: no sources at all; the identity comes from /etc/airclass/appliance.toml
    let mut sys = Recorder::default();
    assert_eq!(run(&Inputs::default(), &l, &mut sys), exit::OK);
    assert_eq!(
        sys.calls.last().map(String::as_str),
        Some("systemctl start --no-block airclass-node@main.service")
    );
    assert_eq!(
        read(&l, "/etc/airclass/secrets/cluster-secret"),
        secret_before,
        "secrets are kept"
    );
    assert_eq!(
        read(&l, "/root/.ssh/authorized_keys"),
        format!("{KEY}\n"),
        "keys not duplicated"
    );
}

#[test]
fn sub_from_the_esp_file_which_is_then_scrubbed() {
    let (d, l) = layout();
    let esp = d.path().join("esp/airclass/provision.toml");
    std::fs::create_dir_all(esp.parent().unwrap()).unwrap();
    let text = format!(
        "node = \"node-2\"\nredis_url = \"redis://10.0.0.10:6379\"\n[secrets]\nlivekit_api_key = \"APIk\"\n\
         livekit_api_secret = \"{SECRET}\"\ncluster_secret = \"{CLUSTER}\"\nredis_password = \"{REDIS_PW}\"\n\
         [access]\nconsole_password_hash = \"$6$salt$hash\"\n"
    );
    std::fs::write(&esp, &text).unwrap();
    let inputs = Inputs {
        esp_file: Some((esp.clone(), text)),
        ..Default::default()
    };
    let mut sys = Recorder::default();
    assert_eq!(run(&inputs, &l, &mut sys), exit::OK);
    assert!(!esp.exists(), "the used file stays on the FAT partition");
    assert!(esp.with_file_name("provisioned.txt").exists());
    assert_eq!(
        read(&l, "/etc/airclass/secrets/cluster-secret").trim(),
        CLUSTER
    );
    assert!(
        !l.secret(SecretFile::AppToken).exists(),
        "a sub gets no app token"
    );
    // but a hash (of a token nobody has): the unit's LoadCredential= needs the file
    let hash = read(&l, "/etc/airclass/secrets/app-token.sha256");
    assert_eq!(hash.trim().len(), 64, "{hash}");
    assert!(!l.path(REDIS_CONF).exists());
    let node = read(&l, &format!("{NODES}/node-2.toml"));
    assert!(
        node.contains("mode = \"sub\"") && node.contains("redis://10.0.0.10:6379"),
        "{node}"
    );
    assert!(sys.calls.contains(&"root password".to_string()));
    assert_eq!(
        sys.calls.last().map(String::as_str),
        Some("systemctl restart --no-block airclass-node@node-2.service")
    );
    assert!(!read(&l, STATE).contains(CLUSTER));
}

#[test]
fn bad_data_fails_loudly_and_keeps_the_earlier_node() {
    let (_d, l) = layout();
    assert_eq!(run(&main_inputs(), &l, &mut Recorder::default()), exit::OK);
    let mut bad = Inputs::default();
    bad.credentials
        .insert("airclass.mode".into(), "master".into());
    let mut sys = Recorder::default();
    assert_eq!(run(&bad, &l, &mut sys), exit::CONFIG);
    let issue = read(&l, ISSUE);
    assert!(
        issue.contains("PROVISIONING FAILED") && issue.contains("credential airclass.mode"),
        "{issue}"
    );
    assert!(issue.contains("Still running as main"), "{issue}");
    assert_eq!(
        sys.calls,
        ["systemctl start --no-block airclass-node@main.service"]
    );
}

#[test]
fn a_new_name_stops_the_old_node() {
    let (_d, l) = layout();
    assert_eq!(run(&main_inputs(), &l, &mut Recorder::default()), exit::OK);
    let i = Inputs {
        cmdline: "quiet airclass.node=node-4 airclass.mode=standalone".into(),
        ..Default::default()
    };
    let mut sys = Recorder::default();
    assert_eq!(run(&i, &l, &mut sys), exit::OK);
    assert_eq!(
        sys.calls[1..],
        [
            "systemctl stop --no-block airclass-node@main.service",
            "systemctl restart --no-block airclass-node@node-4.service"
        ]
    );
    assert!(
        !l.path(REDIS_CONF).exists(),
        "only a main with its own Redis keeps redis.conf"
    );
}

#[test]
fn operator_access_is_applied_while_waiting() {
    let (_d, l) = layout();
    let mut i = Inputs::default();
    i.credentials
        .insert("airclass.ssh_authorized_keys".into(), KEY.into());
    let mut sys = Recorder::default();
    assert_eq!(run(&i, &l, &mut sys), exit::OK);
    assert!(read(&l, ISSUE).contains("NOT PROVISIONED"));
    assert_eq!(read(&l, "/root/.ssh/authorized_keys"), format!("{KEY}\n"));
    assert!(sys.calls.is_empty());
}

#[test]
fn main_prints_a_complete_file_for_a_sub() {
    let (_d, l) = layout();
    assert_eq!(run(&main_inputs(), &l, &mut Recorder::default()), exit::OK);
    let addr = Some("10.0.0.10".parse().unwrap());
    let text = crate::provision::template::sub_file(&l, "node-3", addr).unwrap();
    let v = sources::parse_doc(&text, Origin::UsbFile).unwrap();
    let Ok(Outcome::Ready(p)) = plan(&v, &OnDisk::default()) else {
        panic!("the printed file is not complete:\n{text}")
    };
    assert_eq!(
        (p.node.as_str(), p.mode, p.cluster_id.as_str()),
        ("node-3", super::super::plan::Mode::Sub, "school-a")
    );
    assert_eq!(
        p.redis,
        super::super::plan::Redis::Remote("redis://10.0.0.10:6379".into())
    );
    assert_eq!(p.ssh_keys, [KEY]);
    assert_eq!(p.secrets[&SecretFile::RedisPassword], REDIS_PW);
    assert!(crate::provision::template::sub_file(&l, "main", addr).is_err());
}
