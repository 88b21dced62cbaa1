//! Tests of merging and validating provisioning values.

use super::*;
use crate::provision::keys::{Key, Origin, Values};
use crate::provision::sources::{from_cmdline, parse_doc};

const SECRET: &str = "s234567890123456789012345678901234";
const CLUSTER: &str = "c234567890123456789012345678901234";

fn sub_secrets(v: &mut Values) {
    let o = Origin::Credential("airclass.x".into());
    v.set(Key::LivekitApiKey, "APIkey1", o.clone());
    v.set(Key::LivekitApiSecret, SECRET, o.clone());
    v.set(Key::ClusterSecret, CLUSTER, o.clone());
    v.set(Key::RedisPassword, "r2345678901234567", o);
}

fn ready(v: &Values) -> Plan {
    match plan(v, &OnDisk::default()).unwrap() {
        Outcome::Ready(p) => *p,
        Outcome::Needs { missing, .. } => panic!("missing {missing:?}"),
    }
}

fn errors(v: &Values) -> Vec<Invalid> {
    plan(v, &OnDisk::default()).unwrap_err()
}

#[test]
fn nothing_given_needs_the_node_name() {
    let Outcome::Needs { missing, .. } = plan(&Values::default(), &OnDisk::default()).unwrap()
    else {
        panic!("not ready")
    };
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].key, Key::Node);
}

#[test]
fn main_needs_only_its_name() {
    let (v, e) = from_cmdline("airclass.node=main");
    assert!(e.is_empty());
    let p = ready(&v);
    assert_eq!(p.mode, Mode::Main);
    assert_eq!(p.redis, Redis::Local);
    assert_eq!(p.cluster_id, "airclass");
    assert!(p.mdns);
    assert_eq!(p.hostname(), "airclass-main");
    assert_eq!(p.unit(), "airclass-node@main.service");
    assert!(p.warnings.iter().any(|w| w.contains("operator access")));
}

#[test]
fn sub_lists_every_missing_secret_and_redis() {
    let (v, _) = from_cmdline("airclass.node=node-3");
    let Outcome::Needs { missing, .. } = plan(&v, &OnDisk::default()).unwrap() else {
        panic!("a sub without secrets is not ready")
    };
    let keys: Vec<Key> = missing.iter().map(|m| m.key).collect();
    assert_eq!(
        keys,
        [
            Key::LivekitApiKey,
            Key::LivekitApiSecret,
            Key::ClusterSecret,
            Key::RedisPassword,
            Key::RedisUrl
        ]
    );
    // secrets already on disk from an earlier provisioning count
    let disk = OnDisk {
        secrets: SecretFile::ALL.to_vec(),
    };
    let (v, _) = from_cmdline("airclass.node=node-3 airclass.redis=redis://10.0.0.10:6379");
    assert!(matches!(plan(&v, &disk).unwrap(), Outcome::Ready(_)));
}

#[test]
fn sub_derives_redis_from_main_url() {
    let (mut v, _) = from_cmdline("airclass.node=node-1 airclass.main=http://10.0.0.10:8000/");
    sub_secrets(&mut v);
    let p = ready(&v);
    assert_eq!(p.mode, Mode::Sub);
    assert_eq!(p.main_url.as_deref(), Some("http://10.0.0.10:8000"));
    assert_eq!(p.redis, Redis::Remote("redis://10.0.0.10:6379".into()));
    assert_eq!(p.secrets.len(), 4);
}

#[test]
fn credentials_beat_file_beats_cmdline() {
    let mut cred = Values::default();
    cred.set(
        Key::Node,
        "node-2",
        Origin::Credential("airclass.node".into()),
    );
    let file = parse_doc(
        "node = \"node-1\"\ncluster_id = \"school\"\n",
        Origin::EspFile,
    )
    .unwrap();
    let (cmd, _) = from_cmdline("airclass.node=node-9 airclass.cluster=other airclass.mode=main");
    let m = Values::merge(&[cred, file, cmd]);
    let p = ready(&m);
    assert_eq!(p.node, "node-2");
    assert_eq!(p.cluster_id, "school");
    assert_eq!(p.mode, Mode::Main);
    assert_eq!(
        p.origins[&Key::Node],
        Origin::Credential("airclass.node".into())
    );
    assert_eq!(p.origins[&Key::ClusterId], Origin::EspFile);
    assert_eq!(p.origins[&Key::Mode], Origin::KernelCmdline);
}

#[test]
fn every_bad_value_is_reported_without_its_value() {
    let text = format!(
        "node = \"edge\"\nmode = \"master\"\ncluster_id = \"a b\"\nmain_url = \"ftp://x\"\nredis_url = \"redis://:pw@10.0.0.1:6379\"\n\
         [secrets]\nlivekit_api_key = \"A:B\"\nlivekit_api_secret = \"tooshort\"\ncluster_secret = \"has space {CLUSTER}\"\n\
         app_token = \"{SECRET}\"\napp_token_sha256 = \"{}\"\n\
         [access]\nssh_authorized_keys = [\"not a key\"]\nconsole_password_hash = \"plainpassword\"\n\
         [network]\naddress = \"10.0.0.300/24\"\ngateway = \"nope\"\ndns = [\"x\"]\ninterface = \"way-too-long-interface\"\n",
        "0".repeat(64)
    );
    let v = parse_doc(&text, Origin::UsbFile).unwrap();
    let e = errors(&v);
    let keys: Vec<Option<Key>> = e.iter().map(|x| x.key).collect();
    for k in [
        Key::Node,
        Key::Mode,
        Key::ClusterId,
        Key::MainUrl,
        Key::RedisUrl,
        Key::LivekitApiKey,
        Key::LivekitApiSecret,
        Key::ClusterSecret,
        Key::AppTokenSha256,
        Key::SshAuthorizedKeys,
        Key::ConsolePasswordHash,
        Key::Address,
        Key::Gateway,
        Key::Dns,
        Key::Interface,
    ] {
        assert!(keys.contains(&Some(k)), "no error for {k:?}: {e:#?}");
    }
    let all = e
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    for leaked in ["tooshort", "plainpassword", CLUSTER, SECRET, ":pw@"] {
        assert!(!all.contains(leaked), "{leaked} leaked into:\n{all}");
    }
    assert!(all.contains("USB stick"), "{all}");
}

#[test]
fn network_keys_need_an_address() {
    let (v, _) = from_cmdline("airclass.node=main airclass.gateway=10.0.0.1");
    let e = errors(&v);
    assert_eq!(e.len(), 1);
    assert!(e[0].problem.contains("without network.address"));
    let (v, _) = from_cmdline(
        "airclass.node=main airclass.address=10.0.0.10/24 airclass.dns=10.0.0.1,10.0.0.2",
    );
    let n = ready(&v).network.unwrap();
    assert_eq!(n.dns, ["10.0.0.1", "10.0.0.2"]);
}

#[test]
fn app_token_gives_its_hash() {
    let mut v = Values::default();
    v.set(Key::Node, "main", Origin::EspFile);
    v.set(Key::AppToken, SECRET, Origin::EspFile);
    let p = ready(&v);
    assert_eq!(
        p.secrets[&SecretFile::AppTokenSha256],
        crate::app_token::token_sha256_hex(SECRET)
    );
}

#[test]
fn main_with_external_redis_needs_its_password() {
    let (v, _) = from_cmdline("airclass.node=main airclass.redis=redis://10.0.0.5:6379");
    let Outcome::Needs { missing, .. } = plan(&v, &OnDisk::default()).unwrap() else {
        panic!("needs the password")
    };
    assert_eq!(missing[0].key, Key::RedisPassword);
}
