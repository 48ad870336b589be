//! The agents' messages (SPEC.md §11.3): one line of text each, sent to the agents'
//! group on `groupd` in agreed order, so every agent applies them at one place.
//!
//! Lists of VIPs in a state name them by their index in the configuration (every agent
//! reads the same file; states carry its digest), so a state of the largest
//! configuration fits one group message (64 KiB).

use core::fmt;
use std::collections::BTreeMap;

use thiserror::Error;

use crate::membership::msg::valid_name;

/// Longest message accepted (a group message's payload limit).
pub const MAX_MSG: usize = 64 * 1024;

/// Stands for "no node" where a node is optional (`*` is never in a name; `-` can be).
const NO_NODE: &str = "*";

/// A place in the agents' group: a view of the daemons (`epoch`, `coordinator`) and a
/// number in its order. A membership change of the group opens a *generation* named by
/// its place; messages name the generation they were sent in and count only there.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Place {
    /// The daemons' view epoch.
    pub epoch: u64,
    /// The view's coordinator.
    pub coordinator: String,
    /// The number in the view's order (0: the view's start).
    pub seq: u64,
}

impl Place {
    /// A place.
    pub fn new(epoch: u64, coordinator: &str, seq: u64) -> Self {
        Place {
            epoch,
            coordinator: coordinator.to_string(),
            seq,
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.epoch, self.coordinator, self.seq)
    }
}

/// A node's own facts: what decides whether it may hold VIPs.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Facts {
    /// The application allows it to hold VIPs (`flotilla vip eligible on|off`).
    pub eligible: bool,
    /// Every health check passes.
    pub healthy: bool,
    /// It failed to remove an address and may still have it: it holds nothing new until
    /// a remove succeeds.
    pub fenced: bool,
    /// VIPs (by configuration index) it failed to add, not retried yet.
    pub failed: Vec<u16>,
}

/// A VIP's preferred node as set by the application, with the place it was set at (the
/// latest wins when components merge). `node` `None`: back to the configuration's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preference {
    /// The node, or none (the file's preference again).
    pub node: Option<String>,
    /// Where it was set.
    pub at: Place,
}

/// A message of the agents' group. The sender is the group message's sender (its
/// daemon names the node), never a field: an agent speaks only for its node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VipMsg {
    /// At the start of a generation: everything the sender knows that the others need.
    State {
        /// The generation.
        generation: Place,
        /// The sender's configuration digest.
        digest: u64,
        /// Its facts.
        facts: Facts,
        /// The VIPs whose addresses it has or may have (by index).
        holds: Vec<u16>,
        /// The preferences it knows (by VIP index).
        prefs: BTreeMap<u16, Preference>,
    },
    /// The sender's facts changed.
    Facts {
        /// The generation.
        generation: Place,
        /// Its facts.
        facts: Facts,
    },
    /// The sender removed the VIP's addresses.
    Released {
        /// The generation.
        generation: Place,
        /// The VIP.
        vip: String,
    },
    /// The sender added the VIP's addresses.
    Acquired {
        /// The generation.
        generation: Place,
        /// The VIP.
        vip: String,
    },
    /// The sender could not add the VIP's addresses (it removes them again).
    AddFailed {
        /// The generation.
        generation: Place,
        /// The VIP.
        vip: String,
    },
    /// The sender could not remove the VIP's addresses: it is fenced until it can.
    RemoveFailed {
        /// The generation.
        generation: Place,
        /// The VIP.
        vip: String,
    },
    /// The application sets (or clears) a VIP's preferred node.
    Prefer {
        /// The generation.
        generation: Place,
        /// The VIP.
        vip: String,
        /// The node, or none: the file's preference again.
        node: Option<String>,
    },
    /// The application moves a VIP to a node now.
    Move {
        /// The generation.
        generation: Place,
        /// The VIP.
        vip: String,
        /// The node.
        node: String,
        /// The sender's number for the request (its outcome names it).
        token: u64,
    },
}

/// Why a message was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum VipMsgError {
    /// Longer than [`MAX_MSG`].
    #[error("message of {0} bytes is longer than {MAX_MSG}")]
    TooLong(usize),
    /// Not UTF-8 or not one line.
    #[error("message is not one line of text")]
    NotText,
    /// An unknown kind.
    #[error("unknown message kind {0:?}")]
    UnknownKind(String),
    /// Too few or too many fields.
    #[error("{kind} takes {want} fields, found {found}")]
    Fields {
        /// The kind.
        kind: &'static str,
        /// Fields wanted.
        want: usize,
        /// Fields found.
        found: usize,
    },
    /// A field that does not parse.
    #[error("bad {field}: {value:?}")]
    Bad {
        /// The field.
        field: &'static str,
        /// What it held (cut to 64 bytes).
        value: String,
    },
}

impl VipMsg {
    /// The generation the message belongs to.
    pub fn generation(&self) -> &Place {
        match self {
            VipMsg::State { generation, .. }
            | VipMsg::Facts { generation, .. }
            | VipMsg::Released { generation, .. }
            | VipMsg::Acquired { generation, .. }
            | VipMsg::AddFailed { generation, .. }
            | VipMsg::RemoveFailed { generation, .. }
            | VipMsg::Prefer { generation, .. }
            | VipMsg::Move { generation, .. } => generation,
        }
    }

    /// The message as one line (without a line end).
    pub fn encode(&self) -> String {
        match self {
            VipMsg::State {
                generation,
                digest,
                facts,
                holds,
                prefs,
            } => {
                let prefs = if prefs.is_empty() {
                    "-".to_string()
                } else {
                    prefs
                        .iter()
                        .map(|(i, p)| {
                            format!("{i}={}@{}", p.node.as_deref().unwrap_or(NO_NODE), p.at)
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                };
                format!(
                    "state {generation} {digest:016x} {} {} {} {prefs}",
                    flags(facts),
                    list(&facts.failed),
                    list(holds)
                )
            }
            VipMsg::Facts { generation, facts } => {
                format!(
                    "facts {generation} {} {}",
                    flags(facts),
                    list(&facts.failed)
                )
            }
            VipMsg::Released { generation, vip } => format!("released {generation} {vip}"),
            VipMsg::Acquired { generation, vip } => format!("acquired {generation} {vip}"),
            VipMsg::AddFailed { generation, vip } => format!("add-failed {generation} {vip}"),
            VipMsg::RemoveFailed { generation, vip } => format!("remove-failed {generation} {vip}"),
            VipMsg::Prefer {
                generation,
                vip,
                node,
            } => {
                format!(
                    "prefer {generation} {vip} {}",
                    node.as_deref().unwrap_or(NO_NODE)
                )
            }
            VipMsg::Move {
                generation,
                vip,
                node,
                token,
            } => format!("move {generation} {vip} {node} {token}"),
        }
    }

    /// Reads a message.
    pub fn decode(bytes: &[u8]) -> Result<VipMsg, VipMsgError> {
        if bytes.len() > MAX_MSG {
            return Err(VipMsgError::TooLong(bytes.len()));
        }
        let text = core::str::from_utf8(bytes).map_err(|_| VipMsgError::NotText)?;
        if text.bytes().any(|b| b.is_ascii_control()) {
            return Err(VipMsgError::NotText);
        }
        let f: Vec<&str> = text.split(' ').collect();
        let kind = f[0];
        let want = |kind: &'static str, n: usize| {
            if f.len() == n {
                Ok(())
            } else {
                Err(VipMsgError::Fields {
                    kind,
                    want: n,
                    found: f.len(),
                })
            }
        };
        match kind {
            "state" => {
                want("state", 7)?;
                let digest = u64::from_str_radix(f[2], 16)
                    .ok()
                    .filter(|_| f[2].len() == 16)
                    .ok_or_else(|| bad("digest", f[2]))?;
                let mut facts = read_flags(f[3])?;
                facts.failed = read_list(f[4], "failed")?;
                Ok(VipMsg::State {
                    generation: read_place(f[1])?,
                    digest,
                    facts,
                    holds: read_list(f[5], "holds")?,
                    prefs: read_prefs(f[6])?,
                })
            }
            "facts" => {
                want("facts", 4)?;
                let mut facts = read_flags(f[2])?;
                facts.failed = read_list(f[3], "failed")?;
                Ok(VipMsg::Facts {
                    generation: read_place(f[1])?,
                    facts,
                })
            }
            "released" | "acquired" | "add-failed" | "remove-failed" => {
                want("an address report", 3)?;
                let generation = read_place(f[1])?;
                let vip = read_name(f[2], "vip")?;
                Ok(match kind {
                    "released" => VipMsg::Released { generation, vip },
                    "acquired" => VipMsg::Acquired { generation, vip },
                    "add-failed" => VipMsg::AddFailed { generation, vip },
                    _ => VipMsg::RemoveFailed { generation, vip },
                })
            }
            "prefer" => {
                want("prefer", 4)?;
                Ok(VipMsg::Prefer {
                    generation: read_place(f[1])?,
                    vip: read_name(f[2], "vip")?,
                    node: read_opt_name(f[3])?,
                })
            }
            "move" => {
                want("move", 5)?;
                Ok(VipMsg::Move {
                    generation: read_place(f[1])?,
                    vip: read_name(f[2], "vip")?,
                    node: read_name(f[3], "node")?,
                    token: f[4].parse().map_err(|_| bad("token", f[4]))?,
                })
            }
            other => Err(VipMsgError::UnknownKind(cut(other))),
        }
    }
}

fn cut(s: &str) -> String {
    s.chars().take(64).collect()
}

fn bad(field: &'static str, value: &str) -> VipMsgError {
    VipMsgError::Bad {
        field,
        value: cut(value),
    }
}

fn flags(f: &Facts) -> String {
    let mut s = String::new();
    if f.eligible {
        s.push('e');
    }
    if f.healthy {
        s.push('h');
    }
    if f.fenced {
        s.push('f');
    }
    if s.is_empty() {
        s.push('-');
    }
    s
}

fn read_flags(s: &str) -> Result<Facts, VipMsgError> {
    let mut f = Facts::default();
    if s == "-" {
        return Ok(f);
    }
    for c in s.chars() {
        let slot = match c {
            'e' => &mut f.eligible,
            'h' => &mut f.healthy,
            'f' => &mut f.fenced,
            _ => return Err(bad("flags", s)),
        };
        if *slot {
            return Err(bad("flags", s));
        }
        *slot = true;
    }
    if s.is_empty() {
        return Err(bad("flags", s));
    }
    Ok(f)
}

fn list(items: &[u16]) -> String {
    if items.is_empty() {
        "-".to_string()
    } else {
        items
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A list of VIP indices: increasing, each below 65,536 (the configuration bounds them
/// far lower; the table ignores indices it does not know).
fn read_list(s: &str, field: &'static str) -> Result<Vec<u16>, VipMsgError> {
    if s == "-" {
        return Ok(Vec::new());
    }
    let mut out: Vec<u16> = Vec::new();
    for part in s.split(',') {
        let i: u16 = part.parse().map_err(|_| bad(field, s))?;
        if out.last().is_some_and(|&l| l >= i) {
            return Err(bad(field, s));
        }
        out.push(i);
    }
    Ok(out)
}

fn read_name(s: &str, field: &'static str) -> Result<String, VipMsgError> {
    if valid_name(s) {
        Ok(s.to_string())
    } else {
        Err(bad(field, s))
    }
}

fn read_opt_name(s: &str) -> Result<Option<String>, VipMsgError> {
    if s == NO_NODE {
        Ok(None)
    } else {
        read_name(s, "node").map(Some)
    }
}

fn read_place(s: &str) -> Result<Place, VipMsgError> {
    let mut parts = s.split('/');
    let (Some(e), Some(c), Some(q), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("place", s));
    };
    Ok(Place {
        epoch: e.parse().map_err(|_| bad("place", s))?,
        coordinator: read_name(c, "place")?,
        seq: q.parse().map_err(|_| bad("place", s))?,
    })
}

fn read_prefs(s: &str) -> Result<BTreeMap<u16, Preference>, VipMsgError> {
    let mut out = BTreeMap::new();
    if s == "-" {
        return Ok(out);
    }
    for part in s.split(',') {
        let (i, rest) = part.split_once('=').ok_or_else(|| bad("prefs", part))?;
        let (node, at) = rest.split_once('@').ok_or_else(|| bad("prefs", part))?;
        let i: u16 = i.parse().map_err(|_| bad("prefs", part))?;
        let p = Preference {
            node: read_opt_name(node)?,
            at: read_place(at)?,
        };
        if out.insert(i, p).is_some() {
            return Err(bad("prefs", part));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn name() -> impl Strategy<Value = String> {
        "[a-z0-9._-]{1,12}"
    }

    fn place() -> impl Strategy<Value = Place> {
        (any::<u64>(), name(), any::<u64>()).prop_map(|(epoch, coordinator, seq)| Place {
            epoch,
            coordinator,
            seq,
        })
    }

    fn indices() -> impl Strategy<Value = Vec<u16>> {
        proptest::collection::btree_set(any::<u16>(), 0..8).prop_map(|s| s.into_iter().collect())
    }

    fn facts() -> impl Strategy<Value = Facts> {
        (any::<bool>(), any::<bool>(), any::<bool>(), indices()).prop_map(
            |(eligible, healthy, fenced, failed)| Facts {
                eligible,
                healthy,
                fenced,
                failed,
            },
        )
    }

    fn msg() -> impl Strategy<Value = VipMsg> {
        let pref =
            (proptest::option::of(name()), place()).prop_map(|(node, at)| Preference { node, at });
        prop_oneof![
            (
                place(),
                any::<u64>(),
                facts(),
                indices(),
                proptest::collection::btree_map(any::<u16>(), pref, 0..5)
            )
                .prop_map(|(generation, digest, facts, holds, prefs)| VipMsg::State {
                    generation,
                    digest,
                    facts,
                    holds,
                    prefs
                }),
            (place(), facts()).prop_map(|(generation, facts)| VipMsg::Facts { generation, facts }),
            (place(), name()).prop_map(|(generation, vip)| VipMsg::Released { generation, vip }),
            (place(), name()).prop_map(|(generation, vip)| VipMsg::Acquired { generation, vip }),
            (place(), name()).prop_map(|(generation, vip)| VipMsg::AddFailed { generation, vip }),
            (place(), name())
                .prop_map(|(generation, vip)| VipMsg::RemoveFailed { generation, vip }),
            (place(), name(), proptest::option::of(name())).prop_map(|(generation, vip, node)| {
                VipMsg::Prefer {
                    generation,
                    vip,
                    node,
                }
            }),
            (place(), name(), name(), any::<u64>()).prop_map(|(generation, vip, node, token)| {
                VipMsg::Move {
                    generation,
                    vip,
                    node,
                    token,
                }
            }),
        ]
    }

    proptest! {
        #[test]
        fn every_message_reads_back_as_written(m in msg()) {
            let text = m.encode();
            prop_assert!(!text.contains('\n'));
            prop_assert_eq!(VipMsg::decode(text.as_bytes()).unwrap(), m);
        }

        #[test]
        fn any_bytes_give_a_message_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = VipMsg::decode(&bytes);
        }
    }

    #[test]
    fn bad_messages_are_refused_with_a_reason() {
        let cases: [(&[u8], &str); 9] = [
            (b"hello", "unknown message kind"),
            (b"released 1/a/2", "takes 3 fields"),
            (b"released 1/a vip", "bad place"),
            (b"released 1/a/2 bad/name", "bad vip"),
            (b"facts 1/a/2 ex -", "bad flags"),
            (b"facts 1/a/2 ee -", "bad flags"),
            (b"facts 1/a/2 e 3,2", "bad failed"),
            (b"move 1/a/2 v n -1", "bad token"),
            (b"released 1/a/2 v\n", "not one line"),
        ];
        for (bytes, want) in cases {
            let e = VipMsg::decode(bytes).unwrap_err().to_string();
            assert!(
                e.contains(want),
                "{:?}: {e}",
                String::from_utf8_lossy(bytes)
            );
        }
        let long = vec![b'x'; MAX_MSG + 1];
        assert_eq!(
            VipMsg::decode(&long),
            Err(VipMsgError::TooLong(MAX_MSG + 1))
        );
        // At the limit a line is read (and refused for what it says, not its length).
        let edge = vec![b'x'; MAX_MSG];
        assert!(matches!(
            VipMsg::decode(&edge),
            Err(VipMsgError::UnknownKind(_))
        ));
        // A refusal quotes what it refused, at most 64 characters of it.
        assert_eq!(
            VipMsg::decode(b"bogus 1/a/2"),
            Err(VipMsgError::UnknownKind("bogus".into()))
        );
        assert_eq!(
            VipMsg::decode(&edge),
            Err(VipMsgError::UnknownKind("x".repeat(64)))
        );
    }

    #[test]
    fn the_largest_state_fits_one_message() {
        let long = "n".repeat(64);
        let at = Place::new(u64::MAX, &long, u64::MAX);
        let all: Vec<u16> = (0..crate::vip::config::MAX_VIPS as u16).collect();
        let m = VipMsg::State {
            generation: at.clone(),
            digest: u64::MAX,
            facts: Facts {
                eligible: true,
                healthy: true,
                fenced: true,
                failed: all.clone(),
            },
            holds: all.clone(),
            prefs: all
                .iter()
                .map(|&i| {
                    (
                        i,
                        Preference {
                            node: Some(long.clone()),
                            at: at.clone(),
                        },
                    )
                })
                .collect(),
        };
        let text = m.encode();
        assert!(text.len() <= MAX_MSG, "{} bytes", text.len());
        assert_eq!(VipMsg::decode(text.as_bytes()).unwrap(), m);
    }
}
