//! `airclass-node provision`: read every source, plan, apply, report. The reading and the
//! USB stick's mount live here; [`run`] takes the sources already read, so tests drive the whole
//! flow against a temporary root with a recording [`System`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::apply::{self, Layout, System};
use super::keys::{Key, Origin, Values};
use super::plan::{plan, OnDisk, Outcome, Plan, SecretFile};
use super::{render, scrub, sources, Invalid};
use crate::exit;

/// First-boot provisioning of the appliance (airclass-provision.service runs it at every boot).
#[derive(Debug, clap::Args)]
pub struct ProvisionArgs {
    /// Only validate this provision.toml and print what it would do; writes nothing.
    #[arg(long, value_name = "FILE")]
    pub check: Option<PathBuf>,
    /// On main: print a complete provision.toml for the new sub NODE (node-1 … node-15), with the
    /// cluster's secrets, for a USB stick or that node's EFI partition; writes nothing.
    #[arg(long, value_name = "NODE", conflicts_with = "check")]
    pub print_for: Option<String>,
    /// main's address in the printed file [default: its first IPv4 address].
    #[arg(long, value_name = "IP", requires = "print_for")]
    pub main_address: Option<std::net::IpAddr>,
    /// Prefix of every file written (tests, image builds).
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// Credentials folder [default: $CREDENTIALS_DIRECTORY, else /run/credentials/@system].
    #[arg(long, value_name = "DIR")]
    pub credentials: Option<PathBuf>,
    /// The kernel command line.
    #[arg(long, value_name = "FILE", default_value = "/proc/cmdline")]
    pub cmdline: PathBuf,
    /// Where the EFI system partition is mounted (airclass/provision.toml on it is read).
    #[arg(long, value_name = "DIR", default_value = "/boot/efi")]
    pub esp: PathBuf,
    /// File system label of a provisioning USB stick ("" = do not look for one).
    #[arg(long, default_value = "AIRCLASS")]
    pub usb_label: String,
    /// Neither start nor stop units, nor set the running host name.
    #[arg(long)]
    pub no_start: bool,
}

/// The sources, read.
#[derive(Debug, Default)]
pub struct Inputs {
    pub credentials: BTreeMap<String, String>,
    /// (path, text) of airclass/provision.toml on a USB stick.
    pub usb_file: Option<(PathBuf, String)>,
    /// (path, text) of airclass/provision.toml on the ESP.
    pub esp_file: Option<(PathBuf, String)>,
    pub cmdline: String,
    pub read_errors: Vec<Invalid>,
}

const FILE: &str = "airclass/provision.toml";

fn read_credentials(dir: &Path, errors: &mut Vec<Invalid>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.starts_with("airclass.") {
            continue;
        }
        match std::fs::read(e.path()).map(String::from_utf8) {
            Ok(Ok(text)) => {
                out.insert(name, text);
            }
            _ => errors.push(Invalid {
                key: None,
                origin: Origin::Credential(name),
                problem: "cannot be read as UTF-8 text".into(),
                fix: "give text (io.systemd.credential.binary: takes base64 of the text)".into(),
            }),
        }
    }
    out
}

fn read_file(
    path: PathBuf,
    origin: Origin,
    errors: &mut Vec<Invalid>,
) -> Option<(PathBuf, String)> {
    match std::fs::read(&path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(t) => Some((path, t)),
            Err(_) => {
                errors.push(Invalid {
                    key: None,
                    origin,
                    problem: "is not UTF-8 text".into(),
                    fix: "save it as UTF-8 text".into(),
                });
                None
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            errors.push(Invalid {
                key: None,
                origin,
                problem: format!("cannot be read: {e}"),
                fix: "check the medium".into(),
            });
            None
        }
    }
}

impl Inputs {
    pub fn read(a: &ProvisionArgs, usb_dir: Option<&Path>) -> Inputs {
        let mut errors = Vec::new();
        let creds_dir = a
            .credentials
            .clone()
            .or_else(|| std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("/run/credentials/@system"));
        Inputs {
            credentials: read_credentials(&creds_dir, &mut errors),
            usb_file: usb_dir.and_then(|d| read_file(d.join(FILE), Origin::UsbFile, &mut errors)),
            esp_file: read_file(a.esp.join(FILE), Origin::EspFile, &mut errors),
            cmdline: std::fs::read_to_string(&a.cmdline).unwrap_or_default(),
            read_errors: errors,
        }
    }
}

/// A USB stick labelled `label`, mounted under /run for as long as this value lives.
struct UsbStick {
    dir: PathBuf,
}

impl UsbStick {
    fn mount(label: &str, errors: &mut Vec<Invalid>) -> Option<UsbStick> {
        if label.is_empty() {
            return None;
        }
        let dev = PathBuf::from("/dev/disk/by-label").join(label);
        if !dev.exists() {
            // devices may still be appearing this early in boot
            let _ = Command::new("udevadm")
                .args(["settle", "--timeout=10"])
                .status();
        }
        if !dev.exists() {
            return None;
        }
        let dir = PathBuf::from("/run/airclass-provision/usb");
        let _ = std::fs::create_dir_all(&dir);
        let ok = Command::new("mount")
            .args(["-o", "nosuid,nodev,noexec"])
            .arg(&dev)
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            println!(
                "airclass-provision: reading the USB stick {} (label {label})",
                dev.display()
            );
            Some(UsbStick { dir })
        } else {
            errors.push(Invalid {
                key: None,
                origin: Origin::UsbFile,
                problem: format!("{} (label {label}) cannot be mounted", dev.display()),
                fix: "format the stick FAT32 (or ext4) with that label".into(),
            });
            None
        }
    }
}

impl Drop for UsbStick {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

/// Stands in for [`apply::Host`] with `--no-start`: files only.
struct FilesOnly(apply::Host);

impl System for FilesOnly {
    fn set_hostname(&mut self, _: &str) -> Result<(), super::ProvisionError> {
        Ok(())
    }
    fn set_root_password_hash(&mut self, hash: &str) -> Result<(), super::ProvisionError> {
        self.0.set_root_password_hash(hash)
    }
    fn systemctl(&mut self, _: &[&str]) -> Result<(), super::ProvisionError> {
        Ok(())
    }
    fn group_id(&self, name: &str) -> Option<u32> {
        self.0.group_id(name)
    }
}

/// The command.
pub fn command(a: &ProvisionArgs) -> u8 {
    if let Some(f) = &a.check {
        return check(f);
    }
    if let Some(node) = &a.print_for {
        return match super::template::sub_file(
            &Layout {
                root: a.root.clone(),
            },
            node,
            a.main_address,
        ) {
            Ok(text) => {
                print!("{text}");
                exit::OK
            }
            Err(e) => {
                eprintln!("error: {e}");
                exit::CONFIG
            }
        };
    }
    let mut errors = Vec::new();
    let usb = UsbStick::mount(&a.usb_label, &mut errors);
    let mut inputs = Inputs::read(a, usb.as_ref().map(|u| u.dir.as_path()));
    inputs.read_errors.extend(errors);
    let layout = Layout {
        root: a.root.clone(),
    };
    let code = if a.no_start {
        run(&inputs, &layout, &mut FilesOnly(apply::Host))
    } else {
        run(&inputs, &layout, &mut apply::Host)
    };
    drop(usb);
    code
}

fn check(path: &Path) -> u8 {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", path.display());
            return exit::USAGE;
        }
    };
    let outcome = sources::parse_doc(&text, Origin::File(path.display().to_string()))
        .map_err(|e| vec![e])
        .and_then(|v| plan(&v, &OnDisk::default()));
    match outcome {
        Err(errors) => {
            print_invalid(&errors);
            exit::CONFIG
        }
        Ok(Outcome::Needs { missing, .. }) => {
            println!("incomplete: this file alone leaves out:");
            for m in &missing {
                println!("  - {}: {}", m.key, m.what);
            }
            exit::FAILURE
        }
        Ok(Outcome::Ready(p)) => {
            println!("ok: {}", describe(&p));
            exit::OK
        }
    }
}

fn print_invalid(errors: &[Invalid]) {
    for e in errors {
        eprintln!("error: {e}");
    }
    eprintln!(
        "{} problem{} in the provisioning data",
        errors.len(),
        if errors.len() == 1 { "" } else { "s" }
    );
}

fn describe(p: &Plan) -> String {
    let redis = match &p.redis {
        super::plan::Redis::None => "none".to_string(),
        super::plan::Redis::Local => "its own, on the LAN with a password".to_string(),
        super::plan::Redis::Remote(u) => u.clone(),
    };
    let main = match (&p.main_url, p.mode) {
        (_, m) if m != super::plan::Mode::Sub => String::new(),
        (Some(u), _) => format!(", main at {u}"),
        (None, _) => ", main found over mDNS".into(),
    };
    format!(
        "node {} ({}, cluster {}{main}), Redis {redis}, host name {}{}",
        p.node,
        p.mode.as_str(),
        p.cluster_id,
        p.hostname(),
        match &p.network {
            Some(n) => format!(", address {}", n.address),
            None => ", DHCP".into(),
        }
    )
}

fn parse_file(f: &Option<(PathBuf, String)>, origin: Origin, errors: &mut Vec<Invalid>) -> Values {
    let Some((_, text)) = f else {
        return Values::default();
    };
    sources::parse_doc(text, origin).unwrap_or_else(|e| {
        errors.push(e);
        Values::default()
    })
}

/// Provision from `inputs` into `l`; the exit code: 0 provisioned or waiting for data, 78 the
/// data given is invalid, 1 applying failed.
pub fn run(inputs: &Inputs, l: &Layout, sys: &mut dyn System) -> u8 {
    let mut errors = inputs.read_errors.clone();
    let (single, doc, e) = sources::from_credentials(&inputs.credentials);
    errors.extend(e);
    let usb = parse_file(&inputs.usb_file, Origin::UsbFile, &mut errors);
    let esp = parse_file(&inputs.esp_file, Origin::EspFile, &mut errors);
    let (cmdline, e) = sources::from_cmdline(&inputs.cmdline);
    errors.extend(e);
    let state_path = l.path(apply::STATE);
    let earlier_file = std::fs::read_to_string(&state_path)
        .ok()
        .map(|t| (state_path, t));
    let earlier = parse_file(&earlier_file, Origin::Earlier, &mut errors);
    let earlier_node = earlier.get(Key::Node).map(str::to_string);
    let merged = Values::merge(&[single, doc, usb, esp, cmdline, earlier]);
    let disk = OnDisk {
        secrets: SecretFile::ALL
            .into_iter()
            .filter(|f| l.secret(*f).exists())
            .collect(),
    };
    let outcome = if errors.is_empty() {
        plan(&merged, &disk)
    } else {
        Err(errors)
    };
    match outcome {
        Err(errors) => rejected(&errors, l, sys, earlier_node.as_deref()),
        Ok(Outcome::Needs { missing, access }) => waiting(&missing, &access, l, sys),
        Ok(Outcome::Ready(p)) => ready(&p, inputs, &merged, l, sys, earlier_node.as_deref()),
    }
}

fn rejected(errors: &[Invalid], l: &Layout, sys: &mut dyn System, earlier: Option<&str>) -> u8 {
    print_invalid(errors);
    let _ = apply::issue(l, &render::issue_invalid(errors, earlier));
    if let Some(n) = earlier {
        println!("airclass-provision: starting airclass-node@{n} as provisioned earlier");
        if let Err(e) =
            sys.systemctl(&["start", "--no-block", &format!("airclass-node@{n}.service")])
        {
            eprintln!("error: {e}");
        }
    }
    exit::CONFIG
}

fn waiting(
    missing: &[super::plan::Missing],
    access: &Plan,
    l: &Layout,
    sys: &mut dyn System,
) -> u8 {
    println!("airclass-provision: this node needs provisioning; missing:");
    for m in missing {
        println!("  - {}: {}", m.key, m.what);
    }
    println!("  give them as credentials airclass.NAME, in airclass/provision.toml (EFI partition or a USB stick labelled AIRCLASS) or as airclass.NAME= on the kernel command line; see docs/appliance.md");
    match apply::access(access, l, sys) {
        Ok(done) if !done.is_empty() => {
            println!("airclass-provision: applied: {}", done.join(", "))
        }
        Ok(_) => {}
        Err(e) => eprintln!("error: {e}"),
    }
    match apply::issue(l, &render::issue_needs(missing)) {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: {e}");
            exit::FAILURE
        }
    }
}

fn ready(
    p: &Plan,
    inputs: &Inputs,
    merged: &Values,
    l: &Layout,
    sys: &mut dyn System,
    earlier: Option<&str>,
) -> u8 {
    println!("airclass-provision: {}", describe(p));
    let from: Vec<String> = p
        .origins
        .iter()
        .map(|(k, o)| format!("{k} ({o})"))
        .collect();
    println!("  from: {}", from.join(", "));
    for w in &p.warnings {
        println!("  warning: {w}");
    }
    let redis_url_given = merged.0.get(&Key::RedisUrl).map(|v| v.text.as_str());
    let changed = match apply::apply(p, l, sys, redis_url_given) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: provisioning failed: {e}");
            return exit::FAILURE;
        }
    };
    if !changed.is_empty() {
        println!("  changed: {}", changed.join(", "));
    }
    for (path, _) in [&inputs.usb_file, &inputs.esp_file].into_iter().flatten() {
        consumed(path, p);
    }
    let code = match apply::issue(l, &render::issue_ready(p))
        .and_then(|()| apply::start(p, sys, earlier, !changed.is_empty()))
    {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: {e}");
            exit::FAILURE
        }
    };
    println!(
        "airclass-provision: {} {}",
        if code == exit::OK {
            "starting"
        } else {
            "could not start"
        },
        p.unit()
    );
    code
}

/// A used provision.toml: zeros over it, deleted, a note left in its place.
fn consumed(path: &Path, p: &Plan) {
    match scrub::scrub_file(path) {
        Ok(n) => {
            println!(
                "  {}: applied, overwritten with zeros ({n} bytes) and deleted",
                path.display()
            );
            let note = format!(
                "The provision.toml that was here provisioned {} (airclass-node@{}).\r\n\
                 It was overwritten with zeros and deleted; see `journalctl -u airclass-provision` on that node.\r\n",
                p.hostname(),
                p.node
            );
            let _ = std::fs::write(path.with_file_name("provisioned.txt"), note);
        }
        Err(e) => eprintln!(
            "error: could not remove {} from its medium: {e}",
            path.display()
        ),
    }
}

#[cfg(test)]
mod tests;
