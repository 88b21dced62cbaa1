//! Node names: the one rule shared by `check` (`config::validate`) and the cluster protocol
//! (`cluster::protocol::validate_node_name`), so a name `check` accepts is never refused by main.
//!
//! 1–54 bytes of `[a-z0-9-]`, neither first nor last `-`: 54 so that the mDNS host name
//! `airclass-<node>.local.` fits one 63-byte DNS label.

/// Longest accepted node name.
pub const MAX_NODE_NAME_LEN: usize = 54;

/// The rule in words, for fixes and docs.
pub const NODE_NAME_RULE: &str =
    "1-54 characters of a-z, 0-9 and '-', not starting or ending with '-'";

/// Why `name` is not a valid node name (`None`: it is).
pub fn node_name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > MAX_NODE_NAME_LEN {
        return Some(format!(
            "length must be 1..={MAX_NODE_NAME_LEN} (is {})",
            name.len()
        ));
    }
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok_chars {
        return Some("use lowercase letters, digits and '-' only".into());
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Some("must not start or end with '-'".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule() {
        for ok in ["main", "node-1", "a", "n0-de", &"a".repeat(54)] {
            assert_eq!(node_name_problem(ok), None, "{ok:?}");
        }
        let long = "a".repeat(55);
        for bad in [
            "", "node-", "-node", "Node", "node_1", "nöde", "node\n1", &long,
        ] {
            assert!(node_name_problem(bad).is_some(), "{bad:?}");
        }
    }
}
