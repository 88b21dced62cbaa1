//! Applying a [`Plan`]: the files under a [`Layout`] root (atomic writes, modes and groups set
//! before the rename), then the few system calls behind the [`System`] seam (host name, root's
//! password hash, systemctl) so tests can record them instead.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::plan::{Mode, Plan, Redis, SecretFile};
use super::render;
use super::ProvisionError;

/// Where provisioning writes (a prefix: `/` on a machine, a temporary folder in tests).
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

pub const SECRETS: &str = "/etc/airclass/secrets";
pub const NODES: &str = "/etc/airclass/nodes";
pub const STATE: &str = "/etc/airclass/appliance.toml";
pub const REDIS_CONF: &str = "/etc/airclass/redis/redis.conf";
/// Under /run: rewritten at every boot from the identity file (NixOS manages /etc/systemd/network).
pub const NETWORK: &str = "/run/systemd/network/10-airclass-static.network";
pub const ISSUE: &str = "/etc/issue.d/50-airclass.issue";
pub const HOSTNAME: &str = "/etc/hostname";
pub const AUTHORIZED_KEYS: &str = "/root/.ssh/authorized_keys";

impl Layout {
    pub fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }
    pub fn secret(&self, f: SecretFile) -> PathBuf {
        self.path(SECRETS).join(f.file_name())
    }
}

/// The calls that change the running system.
pub trait System {
    fn set_hostname(&mut self, name: &str) -> Result<(), ProvisionError>;
    /// Set root's password to a crypt(3) hash (`chpasswd -e`, hash on stdin).
    fn set_root_password_hash(&mut self, hash: &str) -> Result<(), ProvisionError>;
    fn systemctl(&mut self, args: &[&str]) -> Result<(), ProvisionError>;
    /// Numeric id of a group, if it exists.
    fn group_id(&self, name: &str) -> Option<u32>;
}

/// The real system.
#[derive(Debug, Default)]
pub struct Host;

fn run(cmd: &mut Command, stdin: Option<&str>) -> Result<(), ProvisionError> {
    let shown = format!("{cmd:?}").replace('"', "");
    let fail = |detail: String| ProvisionError::Command {
        command: shown.clone(),
        detail,
    };
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| fail(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(fail(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

impl System for Host {
    fn set_hostname(&mut self, name: &str) -> Result<(), ProvisionError> {
        nix::unistd::sethostname(name).map_err(|e| ProvisionError::Command {
            command: format!("sethostname {name}"),
            detail: e.to_string(),
        })
    }
    fn set_root_password_hash(&mut self, hash: &str) -> Result<(), ProvisionError> {
        run(
            Command::new("chpasswd").arg("-e"),
            Some(&format!("root:{hash}\n")),
        )
    }
    fn systemctl(&mut self, args: &[&str]) -> Result<(), ProvisionError> {
        run(Command::new("systemctl").args(args), None)
    }
    fn group_id(&self, name: &str) -> Option<u32> {
        nix::unistd::Group::from_name(name)
            .ok()
            .flatten()
            .map(|g| g.gid.as_raw())
    }
}

/// Write `content` atomically with `mode` (and group `gid`); false when it was already so.
pub fn write_file(
    path: &Path,
    content: &[u8],
    mode: u32,
    gid: Option<u32>,
) -> Result<bool, ProvisionError> {
    let same = std::fs::read(path).is_ok_and(|old| old == content)
        && std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o7777 == mode);
    if same {
        return Ok(false);
    }
    let err = |e| ProvisionError::write(path, e);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("provision-tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(err)?;
    if let Some(g) = gid {
        nix::unistd::fchown(&f, None, Some(nix::unistd::Gid::from_raw(g)))
            .map_err(|e| err(e.into()))?;
    }
    f.write_all(content)
        .and_then(|()| f.sync_all())
        .map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    Ok(true)
}

/// Remove a file; true when it existed.
pub fn remove_file(path: &Path) -> Result<bool, ProvisionError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(ProvisionError::write(path, e)),
    }
}

/// The secret files given now, then (main, standalone) the missing ones generated.
fn secrets(
    p: &Plan,
    l: &Layout,
    sys: &dyn System,
    changed: &mut Vec<String>,
) -> Result<(), ProvisionError> {
    let dir = l.path(SECRETS);
    let gid = sys.group_id("airclass");
    std::fs::create_dir_all(&dir).map_err(|e| ProvisionError::write(&dir, e))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750))
        .map_err(|e| ProvisionError::write(&dir, e))?;
    if let Some(g) = gid {
        nix::unistd::chown(&dir, None, Some(nix::unistd::Gid::from_raw(g)))
            .map_err(|e| ProvisionError::write(&dir, e.into()))?;
    }
    for (file, value) in &p.secrets {
        let (mode, group) = match file {
            SecretFile::AppToken => (0o600, None),
            _ => (0o640, gid),
        };
        if write_file(
            &l.secret(*file),
            format!("{value}\n").as_bytes(),
            mode,
            group,
        )? {
            changed.push(l.secret(*file).display().to_string());
        }
    }
    // a new hash without its token: an old plain token no longer matches
    if p.secrets.contains_key(&SecretFile::AppTokenSha256)
        && !p.secrets.contains_key(&SecretFile::AppToken)
    {
        let token = std::fs::read_to_string(l.secret(SecretFile::AppToken)).unwrap_or_default();
        let hash = p
            .secrets
            .get(&SecretFile::AppTokenSha256)
            .map(|h| h.to_ascii_lowercase());
        if !token.trim().is_empty()
            && Some(crate::app_token::token_sha256_hex(token.trim())) != hash
        {
            remove_file(&l.secret(SecretFile::AppToken))?;
        }
    }
    if p.mode != Mode::Sub {
        let made = crate::config::keygen::init_dir(&dir, "airclass").map_err(|error| {
            ProvisionError::Generate {
                dir: dir.display().to_string(),
                error,
            }
        })?;
        changed.extend(made.into_iter().map(|n| dir.join(n).display().to_string()));
    }
    // The unit loads app-token.sha256 as a credential on every node (LoadCredential= fails the
    // start with 243/CREDENTIALS when the file is missing), but a sub serves no joins: give it the
    // hash of a token nobody knows.
    let hash = l.secret(SecretFile::AppTokenSha256);
    if p.mode == Mode::Sub && !hash.exists() {
        let unknown = crate::app_token::token_sha256_hex(&crate::config::keygen::random_base62(43));
        write_file(&hash, format!("{unknown}\n").as_bytes(), 0o640, gid)?;
        changed.push(hash.display().to_string());
    }
    let rp = l.secret(SecretFile::RedisPassword);
    if p.redis == Redis::Local && !rp.exists() {
        let pw = crate::config::keygen::random_base62(43);
        write_file(&rp, format!("{pw}\n").as_bytes(), 0o640, gid)?;
        changed.push(rp.display().to_string());
    }
    Ok(())
}

/// Write `text` to `abs`, noting it in `changed` when it changed.
fn put(
    abs: PathBuf,
    text: &str,
    mode: u32,
    changed: &mut Vec<String>,
) -> Result<(), ProvisionError> {
    if write_file(&abs, text.as_bytes(), mode, None)? {
        changed.push(abs.display().to_string());
    }
    Ok(())
}

/// Remove `abs`, noting it in `changed` when it existed.
fn drop_file(abs: PathBuf, changed: &mut Vec<String>) -> Result<(), ProvisionError> {
    if remove_file(&abs)? {
        changed.push(format!("{} (removed)", abs.display()));
    }
    Ok(())
}

/// Node file, Redis config, network, host name, identity file.
fn config(
    p: &Plan,
    l: &Layout,
    redis_url_given: Option<&str>,
    changed: &mut Vec<String>,
) -> Result<(), ProvisionError> {
    put(
        l.path(NODES).join(format!("{}.toml", p.node)),
        &render::node_toml(p),
        0o644,
        changed,
    )?;
    if p.redis == Redis::Local {
        let rp = l.secret(SecretFile::RedisPassword);
        let pw = std::fs::read_to_string(&rp).map_err(|e| ProvisionError::read(&rp, e))?;
        put(
            l.path(REDIS_CONF),
            &render::redis_conf(pw.trim()),
            0o600,
            changed,
        )?;
    } else {
        drop_file(l.path(REDIS_CONF), changed)?;
    }
    match &p.network {
        Some(n) => put(l.path(NETWORK), &render::network_file(n), 0o644, changed)?,
        None => drop_file(l.path(NETWORK), changed)?,
    }
    put(
        l.path(HOSTNAME),
        &format!("{}\n", p.hostname()),
        0o644,
        changed,
    )?;
    put(
        l.path(STATE),
        &render::state_toml(p, redis_url_given),
        0o644,
        changed,
    )?;
    Ok(())
}

/// SSH keys (added when absent; existing lines kept) and the console password hash.
pub fn access(p: &Plan, l: &Layout, sys: &mut dyn System) -> Result<Vec<String>, ProvisionError> {
    let mut done = Vec::new();
    if !p.ssh_keys.is_empty() {
        let path = l.path(AUTHORIZED_KEYS);
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        let mut text = old.clone();
        for key in &p.ssh_keys {
            if !old.lines().any(|l| l.trim() == key) {
                if !text.is_empty() && !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str(key);
                text.push('\n');
            }
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| ProvisionError::write(dir, e))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| ProvisionError::write(dir, e))?;
        }
        if write_file(&path, text.as_bytes(), 0o600, None)? {
            done.push(format!("SSH keys for root ({} given)", p.ssh_keys.len()));
        }
    }
    if let Some(h) = &p.console_password_hash {
        sys.set_root_password_hash(h)?;
        done.push("console password of root".into());
    }
    Ok(done)
}

/// Everything for a ready plan; returns the files that changed.
pub fn apply(
    p: &Plan,
    l: &Layout,
    sys: &mut dyn System,
    redis_url_given: Option<&str>,
) -> Result<Vec<String>, ProvisionError> {
    let mut changed = Vec::new();
    secrets(p, l, sys, &mut changed)?;
    config(p, l, redis_url_given, &mut changed)?;
    changed.extend(access(p, l, sys)?);
    sys.set_hostname(&p.hostname())?;
    Ok(changed)
}

/// Start (or, after a change, restart) the node and, on main, its Redis; stop a node of an
/// earlier provisioning under another name. `--no-block`: this runs during boot.
pub fn start(
    p: &Plan,
    sys: &mut dyn System,
    earlier: Option<&str>,
    changed: bool,
) -> Result<(), ProvisionError> {
    if let Some(old) = earlier.filter(|o| *o != p.node) {
        sys.systemctl(&[
            "stop",
            "--no-block",
            &format!("airclass-node@{old}.service"),
        ])?;
    }
    let verb = if changed { "restart" } else { "start" };
    if p.redis == Redis::Local {
        sys.systemctl(&[verb, "--no-block", "airclass-redis.service"])?;
    }
    sys.systemctl(&[verb, "--no-block", &p.unit()])
}

/// Write the console banner.
pub fn issue(l: &Layout, text: &str) -> Result<(), ProvisionError> {
    write_file(&l.path(ISSUE), text.as_bytes(), 0o644, None).map(|_| ())
}
