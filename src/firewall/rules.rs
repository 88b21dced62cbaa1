//! Pure construction of the per-instance nftables batches (open and close). Owns the table,
//! chain and rule layout; runs nothing and touches no socket, so it is unit-tested here.

use std::borrow::Cow;

use nftables::batch::Batch;
use nftables::expr::{Expression, NamedExpression, Payload, PayloadField, Range, SetItem};
use nftables::schema::{Chain, NfListObject, Nftables, Rule, Table};
use nftables::stmt::{Accept, Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::FirewallSpec;

/// Name of the base chain inside each instance's table.
pub const CHAIN: &str = "input";
/// `filter - 1`: evaluated just before a host table at the standard `filter` priority (0).
pub const PRIORITY: i32 = -1;

/// One normalised element of a port match: a single port or an inclusive range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PortItem {
    /// One port.
    Port(u16),
    /// An inclusive range `start..=end` with `start < end`.
    Range(u16, u16),
}

/// Sorts, de-duplicates and merges ports and ranges so that the anonymous interval set nft
/// builds from them never holds overlapping elements (nft refuses those).
pub fn normalise(ports: &[u16], ranges: &[(u16, u16)]) -> Vec<PortItem> {
    let mut spans: Vec<(u16, u16)> = ranges.iter().map(|&(a, b)| (a.min(b), a.max(b))).collect();
    spans.extend(ports.iter().map(|&p| (p, p)));
    spans.sort_unstable();
    let mut merged: Vec<(u16, u16)> = Vec::with_capacity(spans.len());
    for (start, end) in spans {
        match merged.last_mut() {
            // Overlapping: extend the previous span (adjacent spans stay apart, as written).
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
        .into_iter()
        .map(|(a, b)| {
            if a == b {
                PortItem::Port(a)
            } else {
                PortItem::Range(a, b)
            }
        })
        .collect()
}

fn table<'a>(name: &str) -> NfListObject<'a> {
    NfListObject::Table(Table {
        family: NfFamily::INet,
        name: Cow::Owned(name.to_owned()),
        handle: None,
    })
}

fn dport_accept<'a>(
    table: &str,
    proto: &'static str,
    items: &[PortItem],
    comment: String,
) -> Rule<'a> {
    let elements: Vec<SetItem<'a>> = items
        .iter()
        .map(|item| match *item {
            PortItem::Port(p) => SetItem::Element(Expression::Number(u32::from(p))),
            PortItem::Range(a, b) => SetItem::Element(Expression::Range(Box::new(Range {
                range: [
                    Expression::Number(u32::from(a)),
                    Expression::Number(u32::from(b)),
                ],
            }))),
        })
        .collect();
    Rule {
        family: NfFamily::INet,
        table: Cow::Owned(table.to_owned()),
        chain: Cow::Borrowed(CHAIN),
        expr: Cow::Owned(vec![
            Statement::Match(Match {
                left: Expression::Named(NamedExpression::Payload(Payload::PayloadField(
                    PayloadField {
                        protocol: Cow::Borrowed(proto),
                        field: Cow::Borrowed("dport"),
                    },
                ))),
                right: Expression::Named(NamedExpression::Set(elements)),
                op: Operator::EQ,
            }),
            Statement::Accept(Some(Accept {})),
        ]),
        handle: None,
        index: None,
        comment: Some(Cow::Owned(comment)),
    }
}

/// The idempotent "open" transaction for one instance, applied by `nft -j -f -` as ONE batch:
/// `add table` (so the delete cannot fail), `delete table` (drops any older rules), then the
/// table, its `input` base chain (hook input, priority filter - 1, policy accept) and one
/// accept rule per protocol that has ports.
pub fn open_batch(spec: &FirewallSpec) -> Nftables<'static> {
    let name = super::table_name(&spec.instance);
    let mut batch = Batch::new();
    batch.add(table(&name));
    batch.delete(table(&name));
    batch.add(table(&name));
    batch.add(NfListObject::Chain(Chain {
        family: NfFamily::INet,
        table: Cow::Owned(name.clone()),
        name: Cow::Borrowed(CHAIN),
        newname: None,
        handle: None,
        _type: Some(NfChainType::Filter),
        hook: Some(NfHook::Input),
        prio: Some(PRIORITY),
        dev: None,
        policy: Some(NfChainPolicy::Accept),
    }));
    let tcp = normalise(&spec.tcp_ports, &[]);
    if !tcp.is_empty() {
        let comment = format!(
            "airclass-node {}: tcp (livekit, rtc tcp, control api)",
            spec.instance
        );
        batch.add(NfListObject::Rule(dport_accept(
            &name, "tcp", &tcp, comment,
        )));
    }
    let udp = normalise(&spec.udp_ports, &spec.udp_ranges);
    if !udp.is_empty() {
        let comment = format!("airclass-node {}: udp (rtc media, mdns)", spec.instance);
        batch.add(NfListObject::Rule(dport_accept(
            &name, "udp", &udp, comment,
        )));
    }
    batch.to_nftables()
}

/// The "close" transaction: `add table` + `delete table`, which succeeds whether or not the
/// table existed and touches no other table.
pub fn close_batch(instance: &str) -> Nftables<'static> {
    let name = super::table_name(instance);
    let mut batch = Batch::new();
    batch.add(table(&name));
    batch.delete(table(&name));
    batch.to_nftables()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use nftables::schema::{NfCmd, NfObject};
    use serde_json::{json, Value};

    fn spec() -> FirewallSpec {
        FirewallSpec {
            instance: "node-1".into(),
            tcp_ports: vec![7890, 7891, 8001],
            udp_ports: vec![5353],
            udp_ranges: vec![(51000, 51020)],
        }
    }

    fn cmds(n: &Nftables<'_>) -> Vec<(&'static str, String)> {
        n.objects
            .iter()
            .map(|o| match o {
                NfObject::CmdObject(NfCmd::Add(obj)) => ("add", kind(obj)),
                NfObject::CmdObject(NfCmd::Delete(obj)) => ("delete", kind(obj)),
                other => ("other", format!("{other:?}")),
            })
            .collect()
    }

    fn kind(obj: &NfListObject<'_>) -> String {
        match obj {
            NfListObject::Table(t) => format!("table {}", t.name),
            NfListObject::Chain(c) => format!("chain {} {}", c.table, c.name),
            NfListObject::Rule(r) => format!("rule {} {}", r.table, r.chain),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn open_is_add_delete_add_then_chain_and_rules() {
        let got = cmds(&open_batch(&spec()));
        let t = "airclass_node_1";
        let want: Vec<(&str, String)> = vec![
            ("add", format!("table {t}")),
            ("delete", format!("table {t}")),
            ("add", format!("table {t}")),
            ("add", format!("chain {t} input")),
            ("add", format!("rule {t} input")),
            ("add", format!("rule {t} input")),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn open_json_has_base_chain_and_exact_ports() {
        let v: Value = serde_json::to_value(open_batch(&spec())).unwrap();
        let objs = v["nftables"].as_array().unwrap();
        assert_eq!(
            objs[3]["add"]["chain"],
            json!({"family":"inet","table":"airclass_node_1","name":"input",
                   "type":"filter","hook":"input","prio":-1,"policy":"accept"})
        );
        let tcp = &objs[4]["add"]["rule"]["expr"];
        assert_eq!(
            tcp[0]["match"]["left"],
            json!({"payload":{"protocol":"tcp","field":"dport"}})
        );
        assert_eq!(tcp[0]["match"]["right"], json!({"set":[7890,7891,8001]}));
        assert_eq!(tcp[0]["match"]["op"], json!("=="));
        assert_eq!(tcp[1], json!({"accept": {}}));
        let udp = &objs[5]["add"]["rule"]["expr"];
        assert_eq!(
            udp[0]["match"]["left"],
            json!({"payload":{"protocol":"udp","field":"dport"}})
        );
        assert_eq!(
            udp[0]["match"]["right"],
            json!({"set":[5353,{"range":[51000,51020]}]})
        );
    }

    #[test]
    fn empty_protocols_get_no_rule() {
        let s = FirewallSpec {
            tcp_ports: vec![],
            ..spec()
        };
        let got = cmds(&open_batch(&s));
        assert_eq!(got.len(), 5);
        let s = FirewallSpec {
            udp_ports: vec![],
            udp_ranges: vec![],
            ..spec()
        };
        let v: Value = serde_json::to_value(open_batch(&s)).unwrap();
        let objs = v["nftables"].as_array().unwrap();
        assert_eq!(objs.len(), 5);
        assert_eq!(
            objs[4]["add"]["rule"]["expr"][0]["match"]["left"]["payload"]["protocol"],
            "tcp"
        );
    }

    #[test]
    fn close_only_touches_own_table() {
        let v: Value = serde_json::to_value(close_batch("main")).unwrap();
        assert_eq!(
            v,
            json!({"nftables":[
                {"add":{"table":{"family":"inet","name":"airclass_main"}}},
                {"delete":{"table":{"family":"inet","name":"airclass_main"}}}
            ]})
        );
    }

    #[test]
    fn normalise_merges_and_dedupes() {
        assert_eq!(
            normalise(&[8000, 7880, 8000], &[]),
            vec![PortItem::Port(7880), PortItem::Port(8000)]
        );
        // A port inside a range is absorbed, overlapping ranges merge, a reversed range is fixed,
        // an adjacent port stays a separate element.
        assert_eq!(
            normalise(
                &[50005, 50021, 5353],
                &[(50020, 50000), (50030, 50040), (50035, 50050)]
            ),
            vec![
                PortItem::Port(5353),
                PortItem::Range(50000, 50020),
                PortItem::Port(50021),
                PortItem::Range(50030, 50050)
            ]
        );
        assert_eq!(normalise(&[], &[(9, 9)]), vec![PortItem::Port(9)]);
        assert_eq!(
            normalise(&[65535, 65534], &[(65530, 65534)]),
            vec![PortItem::Range(65530, 65534), PortItem::Port(65535)]
        );
        assert!(normalise(&[], &[]).is_empty());
    }
}
