//! protojson-like output for the livekit-server stand-in (TEST DOUBLE): snake_case names,
//! defaults included, unset messages `null`, int64 as strings, enums as names (CONTRACT §10).

use livekit_protocol::{participant_info, DisconnectReason, ParticipantInfo, Room};
use serde_json::{json, Value};

pub fn room(r: &Room) -> Value {
    json!({
        "sid": r.sid,
        "name": r.name,
        "empty_timeout": r.empty_timeout,
        "departure_timeout": r.departure_timeout,
        "max_participants": r.max_participants,
        "creation_time": r.creation_time.to_string(),
        "creation_time_ms": r.creation_time_ms.to_string(),
        "turn_password": r.turn_password,
        "enabled_codecs": r.enabled_codecs.iter()
            .map(|c| json!({"mime": c.mime, "fmtp_line": c.fmtp_line}))
            .collect::<Vec<_>>(),
        "metadata": r.metadata,
        "num_participants": r.num_participants,
        "num_publishers": r.num_publishers,
        "active_recording": r.active_recording,
        "version": r.version.as_ref().map(|v| json!({
            "unix_micro": v.unix_micro.to_string(),
            "ticks": v.ticks,
        })),
    })
}

pub fn participant(p: &ParticipantInfo) -> Value {
    let state = participant_info::State::try_from(p.state)
        .map(|s| s.as_str_name())
        .unwrap_or("JOINING");
    let kind = participant_info::Kind::try_from(p.kind)
        .map(|k| k.as_str_name())
        .unwrap_or("STANDARD");
    let reason = DisconnectReason::try_from(p.disconnect_reason)
        .map(|r| r.as_str_name())
        .unwrap_or("UNKNOWN_REASON");
    json!({
        "sid": p.sid,
        "identity": p.identity,
        "state": state,
        "tracks": [],
        "metadata": p.metadata,
        "joined_at": p.joined_at.to_string(),
        "joined_at_ms": p.joined_at_ms.to_string(),
        "name": p.name,
        "version": p.version,
        "permission": Value::Null,
        "region": p.region,
        "is_publisher": p.is_publisher,
        "kind": kind,
        "attributes": p.attributes,
        "disconnect_reason": reason,
        "kind_details": [],
        "data_tracks": [],
        "client_protocol": p.client_protocol,
        "capabilities": [],
    })
}
