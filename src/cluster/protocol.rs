//! Versioned wire messages of the main/sub cluster protocol (version [`PROTOCOL_VERSION`]),
//! plus their validation rules. Pure serde types: no I/O, no clocks. `docs/protocol.md` is the
//! prose description of the same contract; change both together.
//!
//! Requests (`*Request`) use `deny_unknown_fields`, so a malformed or misspelt body is refused
//! rather than half-understood. Responses do not, so a newer main may add fields without breaking
//! older subs.

use rand::RngCore;
use serde::{Deserialize, Serialize};

/// The protocol version spoken by this build. A main refuses a register whose
/// `node.protocol_version` differs (`unsupported_version`).
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest accepted node name: one DNS label, since mDNS publishes `airclass-<node>.local.`.
pub const MAX_NODE_NAME_LEN: usize = crate::names::MAX_NODE_NAME_LEN;
/// Longest accepted identity string.
pub const MAX_IDENTITY_LEN: usize = 64;
/// Longest accepted URL or version string.
pub const MAX_TEXT_LEN: usize = 512;
/// Longest accepted room name (bytes).
pub const MAX_ROOM_NAME_LEN: usize = 256;
/// Most room names one heartbeat may carry.
pub const MAX_ROOMS_PER_NODE: usize = 2048;

/// mDNS service type every node advertises.
pub const MDNS_SERVICE_TYPE: &str = "_airclass._tcp.local.";
/// TXT keys of the mDNS advertisement.
pub const TXT_CLUSTER: &str = "cluster";
pub const TXT_ROLE: &str = "role";
pub const TXT_NODE: &str = "node";
pub const TXT_API_PORT: &str = "api_port";
pub const TXT_PROTO: &str = "proto";

/// The per-instance mDNS host name, `airclass-<node>.local.` (never the machine's own host name,
/// so avahi on the same host sees no conflict).
pub fn mdns_host_name(node: &str) -> String {
    format!("airclass-{node}.local.")
}

/// How a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeMode {
    Standalone,
    Main,
    Sub,
}

/// LiveKit's health as the node's supervisor sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LivekitHealth {
    Healthy,
    Degraded,
    Down,
    Starting,
}

/// A node's state in main's membership table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Heartbeats arrive on time.
    Alive,
    /// At least one heartbeat missed: keeps its live rooms, gets new rooms only as a last resort.
    Suspect,
    /// `dead_after_missed` heartbeats missed: gets no rooms; forgotten after `forget_after`.
    Dead,
    /// Said goodbye (`/leave`): gets no rooms; forgotten after `forget_after`.
    Left,
}

impl NodeState {
    /// The state as on the wire (`alive`, …): also the journal's `FROM=` / `TO=` values.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Alive => "alive",
            NodeState::Suspect => "suspect",
            NodeState::Dead => "dead",
            NodeState::Left => "left",
        }
    }

    /// Alive or Suspect: the node is believed to be serving.
    pub fn is_live(self) -> bool {
        matches!(self, NodeState::Alive | NodeState::Suspect)
    }
}

/// Inclusive UDP port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

/// What a node is: sent at registration, fixed for the life of the process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeInfo {
    pub name: String,
    pub mode: NodeMode,
    pub protocol_version: u32,
    pub software_version: String,
    /// Control API base URL, e.g. `http://10.0.0.5:8001`.
    pub api_url: String,
    /// URL clients use for LiveKit, e.g. `ws://10.0.0.5:7890`.
    pub livekit_url: String,
    pub rtc_range: PortRange,
}

/// How a node is doing: sent at registration and in every heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeStats {
    pub cpu_percent: f64,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub load1: f64,
    /// `load1 / num_cpus`, LiveKit's definition.
    pub sysload: f64,
    pub num_cpus: u32,
    pub rooms: u32,
    pub participants: u32,
    pub livekit_health: LivekitHealth,
    /// Names of the LiveKit rooms live on this node (for sticky placement).
    #[serde(default)]
    pub room_names: Vec<String>,
    /// LiveKit's id of this node (`ND_…`, from its ready line; new on every LiveKit start):
    /// what LiveKit's `room_node_map` names. Absent until LiveKit is ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub livekit_node_id: Option<String>,
}

/// `POST /api/cluster/register`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub cluster_id: String,
    /// Random per-process instance id (see [`new_identity`]).
    pub identity: String,
    pub node: NodeInfo,
    pub stats: NodeStats,
}

/// `POST /api/cluster/heartbeat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    pub name: String,
    pub identity: String,
    pub stats: NodeStats,
}

/// `POST /api/cluster/leave`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaveRequest {
    pub name: String,
    pub identity: String,
}

/// Answer to a register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterResponse {
    pub accepted: bool,
    /// The interval the sub must heartbeat at.
    pub heartbeat_secs: u64,
    pub main_name: String,
    pub protocol_version: u32,
}

/// Answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    pub accepted: bool,
    pub heartbeat_secs: u64,
}

/// Answer to a leave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaveResponse {
    pub left: bool,
}

/// Machine-readable error codes carried in [`ErrorBody::error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    UnknownNode,
    BadSignature,
    Replay,
    Skew,
    TooLarge,
    Malformed,
    NameTaken,
    Unauthorized,
    UnsupportedVersion,
    WrongCluster,
    NoNode,
    Busy,
    TableFull,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 13] = [
        ErrorCode::UnknownNode,
        ErrorCode::BadSignature,
        ErrorCode::Replay,
        ErrorCode::Skew,
        ErrorCode::TooLarge,
        ErrorCode::Malformed,
        ErrorCode::NameTaken,
        ErrorCode::Unauthorized,
        ErrorCode::UnsupportedVersion,
        ErrorCode::WrongCluster,
        ErrorCode::NoNode,
        ErrorCode::Busy,
        ErrorCode::TableFull,
    ];

    /// The code as sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::UnknownNode => "unknown_node",
            ErrorCode::BadSignature => "bad_signature",
            ErrorCode::Replay => "replay",
            ErrorCode::Skew => "skew",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Malformed => "malformed",
            ErrorCode::NameTaken => "name_taken",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::WrongCluster => "wrong_cluster",
            ErrorCode::NoNode => "no_node",
            ErrorCode::Busy => "busy",
            ErrorCode::TableFull => "table_full",
        }
    }

    /// Parse a wire code; `None` for codes this build does not know.
    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The HTTP status a main answers with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::UnknownNode => 404,
            ErrorCode::BadSignature
            | ErrorCode::Replay
            | ErrorCode::Skew
            | ErrorCode::Unauthorized => 401,
            ErrorCode::TooLarge => 413,
            ErrorCode::Malformed | ErrorCode::UnsupportedVersion => 400,
            ErrorCode::NameTaken => 409,
            ErrorCode::WrongCluster => 403,
            ErrorCode::NoNode | ErrorCode::Busy | ErrorCode::TableFull => 503,
        }
    }
}

/// Body of every 4xx/5xx answer of the control API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine code, one of [`ErrorCode::as_str`] (unknown codes must be tolerated).
    pub error: String,
    /// Human explanation; never contains a secret.
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            error: code.as_str().to_owned(),
            message: message.into(),
        }
    }

    pub fn code(&self) -> Option<ErrorCode> {
        ErrorCode::parse(&self.error)
    }
}

/// Who joins a room; grants per role are configured on main.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Teacher,
    Student,
}

/// `POST /api/rooms/{room}/join`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    pub identity: String,
    /// Display name; defaults to empty.
    #[serde(default)]
    pub name: String,
    pub role: Role,
}

/// Answer to a join: where to connect and with what token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinResponse {
    pub room: String,
    pub node: String,
    pub livekit_url: String,
    pub token: String,
    /// Token expiry, unix seconds.
    pub expires_at: u64,
}

/// One row of `GET /api/cluster/nodes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    pub name: String,
    pub state: NodeState,
    pub info: NodeInfo,
    pub stats: NodeStats,
    /// Milliseconds since the last register or heartbeat.
    pub last_seen_ms: u64,
}

/// `GET /api/cluster/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub cluster_id: String,
    pub main_name: String,
    pub protocol_version: u32,
    pub heartbeat_secs: u64,
    pub sysload_limit: f64,
    pub nodes_alive: u32,
    pub nodes_suspect: u32,
    pub nodes_dead: u32,
    pub nodes_left: u32,
    pub rooms: u32,
    pub participants: u32,
    pub nodes: Vec<NodeView>,
}

/// One row of `GET /api/livekit/rooms` (cluster-wide, labelled by node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomView {
    pub name: String,
    pub node: String,
    pub num_participants: Option<u32>,
}

/// Why a request body is refused (`malformed`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("{field} is invalid: {reason}")]
    Field { field: &'static str, reason: String },
}

fn bad(field: &'static str, reason: impl Into<String>) -> ValidationError {
    ValidationError::Field {
        field,
        reason: reason.into(),
    }
}

/// A node name: [`crate::names`]' rule (the same function `check` uses).
pub fn validate_node_name(name: &str) -> Result<(), ValidationError> {
    match crate::names::node_name_problem(name) {
        Some(reason) => Err(bad("name", reason)),
        None => Ok(()),
    }
}

/// An identity: 1..=64 bytes of `[A-Za-z0-9_-]`.
pub fn validate_identity(identity: &str) -> Result<(), ValidationError> {
    let ok = !identity.is_empty()
        && identity.len() <= MAX_IDENTITY_LEN
        && identity
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(bad(
            "identity",
            format!("1..={MAX_IDENTITY_LEN} of [A-Za-z0-9_-]"),
        ))
    }
}

/// Is `c` refused in names people read and compare (join identities and display names, room
/// names)? Control characters (C0 such as LF and NUL, DEL, C1), bidirectional marks, embeddings,
/// overrides and isolates, zero-width and other invisible format characters (soft hyphen,
/// word joiner, BOM, invisible operators, Hangul fillers), line and paragraph separators and tag
/// characters. With them `math` and `\u{200b}math` would be two rooms that look alike, and a name
/// could forge a log line or reorder the text around it. Variation selectors (emoji) stay allowed.
pub fn is_forbidden_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{E0000}'..='\u{E007F}'
        )
}

/// The first refused character of `s` (see [`is_forbidden_char`]), for the error message.
fn forbidden_char_reason(s: &str) -> Option<String> {
    s.chars().find(|c| is_forbidden_char(*c)).map(|c| {
        format!(
            "contains U+{:04X}: control, bidirectional and invisible characters are not allowed",
            c as u32
        )
    })
}

/// A room name: 1..=256 bytes, no control, bidirectional or invisible character.
pub fn validate_room_name(room: &str) -> Result<(), ValidationError> {
    if room.is_empty() || room.len() > MAX_ROOM_NAME_LEN {
        return Err(bad(
            "room",
            format!("length must be 1..={MAX_ROOM_NAME_LEN} bytes"),
        ));
    }
    match forbidden_char_reason(room) {
        Some(reason) => Err(bad("room", reason)),
        None => Ok(()),
    }
}

fn validate_text(field: &'static str, s: &str) -> Result<(), ValidationError> {
    if s.len() > MAX_TEXT_LEN || s.chars().any(char::is_control) {
        return Err(bad(
            field,
            format!("at most {MAX_TEXT_LEN} bytes, no control characters"),
        ));
    }
    Ok(())
}

impl NodeInfo {
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_node_name(&self.name)?;
        validate_text("software_version", &self.software_version)?;
        validate_text("api_url", &self.api_url)?;
        validate_text("livekit_url", &self.livekit_url)?;
        if self.api_url.is_empty() || self.livekit_url.is_empty() {
            return Err(bad("api_url/livekit_url", "must not be empty"));
        }
        if self.rtc_range.start > self.rtc_range.end {
            return Err(bad("rtc_range", "start must not exceed end"));
        }
        Ok(())
    }
}

impl NodeStats {
    pub fn validate(&self) -> Result<(), ValidationError> {
        let finite_nonneg = |v: f64| v.is_finite() && v >= 0.0;
        if !finite_nonneg(self.cpu_percent) {
            return Err(bad("cpu_percent", "must be finite and >= 0"));
        }
        if !finite_nonneg(self.load1) || !finite_nonneg(self.sysload) {
            return Err(bad("load1/sysload", "must be finite and >= 0"));
        }
        if self.room_names.len() > MAX_ROOMS_PER_NODE {
            return Err(bad(
                "room_names",
                format!("at most {MAX_ROOMS_PER_NODE} rooms"),
            ));
        }
        if let Some(id) = &self.livekit_node_id {
            validate_livekit_node_id(id)?;
        }
        self.room_names
            .iter()
            .try_for_each(|r| validate_room_name(r))
    }
}

/// LiveKit node ids are `ND_` + letters and digits (at most 64 characters).
pub fn validate_livekit_node_id(id: &str) -> Result<(), ValidationError> {
    let ok = id.len() <= 64
        && id
            .strip_prefix("ND_")
            .is_some_and(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric()));
    if ok {
        Ok(())
    } else {
        Err(bad(
            "livekit_node_id",
            "must be ND_ followed by letters and digits",
        ))
    }
}

impl RegisterRequest {
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_text("cluster_id", &self.cluster_id)?;
        validate_identity(&self.identity)?;
        self.node.validate()?;
        self.stats.validate()
    }
}

impl HeartbeatRequest {
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_node_name(&self.name)?;
        validate_identity(&self.identity)?;
        self.stats.validate()
    }
}

impl LeaveRequest {
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_node_name(&self.name)?;
        validate_identity(&self.identity)
    }
}

impl JoinRequest {
    /// `identity`: 1..=512 bytes; `name`: at most 512 bytes; neither with a control,
    /// bidirectional or invisible character ([`is_forbidden_char`]).
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.identity.is_empty() || self.identity.len() > MAX_TEXT_LEN {
            return Err(bad(
                "identity",
                format!("length must be 1..={MAX_TEXT_LEN}"),
            ));
        }
        if let Some(reason) = forbidden_char_reason(&self.identity) {
            return Err(bad("identity", reason));
        }
        if self.name.len() > MAX_TEXT_LEN {
            return Err(bad("name", format!("at most {MAX_TEXT_LEN} bytes")));
        }
        match forbidden_char_reason(&self.name) {
            Some(reason) => Err(bad("name", reason)),
            None => Ok(()),
        }
    }
}

/// A fresh per-process node identity: 16 random bytes, lowercase hex (32 characters).
pub fn new_identity(rng: &mut impl RngCore) -> String {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests;
