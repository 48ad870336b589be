//! Daemon-to-daemon messages of the membership protocol (family 0x04; SPEC.md §9.5).

use core::net::SocketAddr;
use core::time::Duration;

use super::view::{Member, View, ViewId};
use crate::wire::{DecodeError, Frame, Kind, Reader, Writer};

/// Protocol family byte of membership frames.
pub const FAMILY: u8 = 0x04;

const fn kind(n: u8) -> Kind {
    Kind((FAMILY as u16) << 8 | n as u16)
}

const HEARTBEAT: Kind = kind(0x01);
const REPORT: Kind = kind(0x02);
const REPORT_ACK: Kind = kind(0x03);
const PROBE: Kind = kind(0x04);
const PROBE_ACK: Kind = kind(0x05);
const GATHER: Kind = kind(0x06);
const HERE: Kind = kind(0x07);
const ELECT: Kind = kind(0x08);
const PROPOSE: Kind = kind(0x09);
const ACK: Kind = kind(0x0a);
const NACK: Kind = kind(0x0b);
const COMMIT: Kind = kind(0x0c);
const JOIN: Kind = kind(0x0d);
const REFUSE: Kind = kind(0x0e);
const LEAVE: Kind = kind(0x0f);
const HELLO: Kind = kind(0x10);
const VIEW_REQ: Kind = kind(0x11);
const VIEW_STATE: Kind = kind(0x12);
const RELOAD: Kind = kind(0x13);
const PROBE_FOR: Kind = kind(0x14);

/// Longest daemon name.
pub const MAX_NAME: usize = 64;
/// Most members a view may hold (and a configuration may list).
pub const MAX_MEMBERS: usize = 4096;
/// Longest reason in a refusal.
pub const MAX_REASON: usize = 512;

/// The timings every member runs with (SPEC.md §9.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How often a daemon sends heartbeats to its ring neighbours.
    pub heartbeat: Duration,
    /// A neighbour unheard of this long is suspected.
    pub suspect_after: Duration,
    /// How long a coordinator tries to reach a suspected member before it excludes it.
    pub verify_for: Duration,
    /// How often a message that wants an answer is sent again.
    pub retry: Duration,
    /// How long a coordinator waits for acknowledgements of a proposal.
    pub ack_timeout: Duration,
    /// How long a member waits for the commit of a proposal it acknowledged.
    pub commit_timeout: Duration,
    /// How often a daemon greets configured or known daemons that are not in its view
    /// (how partitions heal and listed daemons are found).
    pub hello: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            heartbeat: Duration::from_millis(100),
            suspect_after: Duration::from_millis(400),
            verify_for: Duration::from_millis(500),
            retry: Duration::from_millis(50),
            ack_timeout: Duration::from_millis(300),
            commit_timeout: Duration::from_millis(1000),
            hello: Duration::from_millis(1000),
        }
    }
}

/// A cluster's configuration as members agree on it: the daemons it lists (empty: the
/// cluster is formed by joins alone), the timings, and daemons a reload removed (their
/// joins are refused until a configuration lists them again).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ClusterConfig {
    /// Grows with every reload the cluster applies.
    pub version: u64,
    /// Listed daemons: name and address.
    pub daemons: Vec<(String, SocketAddr)>,
    /// Timings.
    pub timing: Timing,
    /// Daemons removed by a reload.
    pub removed: Vec<String>,
}

/// Every membership message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberMsg {
    /// To ring neighbours, every heartbeat period.
    Heartbeat {
        /// The sender's installed view.
        view: ViewId,
        /// The sender.
        from: Member,
    },
    /// To the coordinator: neighbours the sender suspects.
    Report {
        /// The sender's view.
        view: ViewId,
        /// Suspected names.
        suspects: Vec<String>,
    },
    /// The coordinator heard the report.
    ReportAck {
        /// Its view.
        view: ViewId,
    },
    /// Are you there?
    Probe {
        /// Echoed.
        nonce: u64,
    },
    /// Probe `target` for me, and pass its answer on (a path around a bad link).
    ProbeFor {
        /// The probe's nonce, echoed back to the asker.
        nonce: u64,
        /// Whom to probe.
        target: Member,
    },
    /// Yes.
    ProbeAck {
        /// The probe's.
        nonce: u64,
        /// Who answers.
        from: Member,
    },
    /// Who can hear me? (The coordinator is unreachable.)
    Gather {
        /// Echoed.
        nonce: u64,
        /// The sender's view.
        view: ViewId,
    },
    /// I can.
    Here {
        /// The gather's.
        nonce: u64,
        /// Who answers.
        from: Member,
        /// Its view.
        view: ViewId,
    },
    /// To the least name a gather reached: propose these members.
    Elect {
        /// Who answered.
        members: Vec<Member>,
        /// The highest epoch the gatherer knows of (the proposal must exceed it).
        epoch: u64,
    },
    /// Phase one: the coordinator proposes a view (its `primary` and `basis` are decided
    /// at the commit).
    Propose {
        /// The proposed view.
        view: View,
        /// The configuration it comes with, when it changes one.
        config: Option<ClusterConfig>,
    },
    /// A member takes the proposal, and says what it knows of primaries.
    Ack {
        /// The proposal's identifier.
        id: ViewId,
        /// The member.
        from: Member,
        /// Its last primary view, and that view's basis.
        last_primary: ViewId,
        /// The basis.
        basis: Vec<String>,
    },
    /// A member has taken a higher proposal.
    Nack {
        /// The proposal refused.
        id: ViewId,
        /// The higher one.
        higher: ViewId,
    },
    /// Phase two: install this view.
    Commit {
        /// The view, with its primary flag and basis.
        view: View,
        /// Its configuration, when it changed.
        config: Option<ClusterConfig>,
    },
    /// A daemon asks to join.
    Join {
        /// The daemon.
        member: Member,
    },
    /// A join (or a name) is refused; the daemon stops.
    Refuse {
        /// Why.
        reason: String,
    },
    /// A daemon leaves on purpose.
    Leave {
        /// The daemon.
        member: Member,
    },
    /// To a listed or earlier member outside the sender's view: here is my view.
    Hello {
        /// The sender's view.
        view: ViewId,
        /// The sender.
        from: Member,
        /// Members in its view.
        size: u32,
    },
    /// Send me your view (I missed a commit).
    ViewReq {
        /// Who asks.
        from: Member,
    },
    /// An installed view, in answer.
    ViewState {
        /// The view.
        view: View,
        /// Its configuration.
        config: ClusterConfig,
    },
    /// A configuration to apply, on its way to the coordinator.
    Reload {
        /// The configuration (its version is set by the coordinator).
        config: ClusterConfig,
    },
}

/// Whether `name` is a daemon name: 1 to 64 letters, digits, `.`, `_` or `-` (names end
/// up in client reply lines and logs, so nothing else gets in from the wire either).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub(crate) fn get_name(r: &mut Reader<'_>) -> Result<String, DecodeError> {
    let s = r.str("name", MAX_NAME)?;
    if !valid_name(&s) {
        return Err(DecodeError::InvalidValue {
            field: "name",
            value: s.len() as u64,
        });
    }
    Ok(s)
}

fn put_member(w: &mut Writer, m: &Member) {
    w.str(&m.name).u64(m.incarnation).addr(m.addr);
}

fn get_member(r: &mut Reader<'_>) -> Result<Member, DecodeError> {
    Ok(Member {
        name: get_name(r)?,
        incarnation: r.u64()?,
        addr: r.addr()?,
    })
}

fn put_members(w: &mut Writer, ms: &[Member]) {
    w.count(ms.len());
    for m in ms {
        put_member(w, m);
    }
}

fn get_members(r: &mut Reader<'_>) -> Result<Vec<Member>, DecodeError> {
    let n = r.count("members", MAX_MEMBERS, 20)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(get_member(r)?);
    }
    // Sorted by name, one each: what every view holds.
    if out.windows(2).any(|w| w[0].name >= w[1].name) {
        return Err(DecodeError::InvalidValue {
            field: "member order",
            value: n as u64,
        });
    }
    Ok(out)
}

fn put_names(w: &mut Writer, names: &[String]) {
    w.count(names.len());
    for n in names {
        w.str(n);
    }
}

fn get_names(r: &mut Reader<'_>) -> Result<Vec<String>, DecodeError> {
    let n = r.count("names", MAX_MEMBERS, 5)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(get_name(r)?);
    }
    Ok(out)
}

pub(crate) fn put_id(w: &mut Writer, id: &ViewId) {
    w.u64(id.epoch).str(&id.coordinator).u64(id.incarnation);
}

pub(crate) fn get_id(r: &mut Reader<'_>) -> Result<ViewId, DecodeError> {
    // An empty coordinator is the "no view" id (a daemon never in a primary view says
    // so in its acknowledgements).
    Ok(ViewId {
        epoch: r.u64()?,
        coordinator: {
            // Empty in "no view yet" (`ViewId::default()`), a daemon name otherwise.
            let c = r.str("coordinator", MAX_NAME)?;
            if !c.is_empty() && !valid_name(&c) {
                return Err(DecodeError::InvalidValue {
                    field: "coordinator",
                    value: c.len() as u64,
                });
            }
            c
        },
        incarnation: r.u64()?,
    })
}

fn put_view(w: &mut Writer, v: &View) {
    put_id(w, &v.id);
    put_members(w, &v.members);
    w.bool(v.primary);
    put_names(w, &v.basis);
    w.u64(v.config_version);
}

fn get_view(r: &mut Reader<'_>) -> Result<View, DecodeError> {
    let v = View {
        id: get_id(r)?,
        members: get_members(r)?,
        primary: r.bool("primary")?,
        basis: get_names(r)?,
        config_version: r.u64()?,
    };
    // Views are looked up by binary search: a sender's list must be sorted, each name
    // once.
    if !super::view::is_sorted(&v) {
        return Err(DecodeError::InvalidValue {
            field: "members",
            value: v.members.len() as u64,
        });
    }
    Ok(v)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn get_duration(r: &mut Reader<'_>, field: &'static str) -> Result<Duration, DecodeError> {
    let us = r.u64()?;
    // A timing of zero, or past a day, is nothing a sender means.
    if us == 0 || us > 86_400_000_000 {
        return Err(DecodeError::InvalidValue { field, value: us });
    }
    Ok(Duration::from_micros(us))
}

fn put_config(w: &mut Writer, c: &ClusterConfig) {
    w.u64(c.version).count(c.daemons.len());
    for (n, a) in &c.daemons {
        w.str(n).addr(*a);
    }
    let t = &c.timing;
    for d in [
        t.heartbeat,
        t.suspect_after,
        t.verify_for,
        t.retry,
        t.ack_timeout,
        t.commit_timeout,
        t.hello,
    ] {
        w.u64(micros(d));
    }
    put_names(w, &c.removed);
}

fn get_config(r: &mut Reader<'_>) -> Result<ClusterConfig, DecodeError> {
    let version = r.u64()?;
    let n = r.count("daemons", MAX_MEMBERS, 12)?;
    let mut daemons = Vec::with_capacity(n);
    for _ in 0..n {
        daemons.push((get_name(r)?, r.addr()?));
    }
    let timing = Timing {
        heartbeat: get_duration(r, "heartbeat")?,
        suspect_after: get_duration(r, "suspect-after")?,
        verify_for: get_duration(r, "verify-for")?,
        retry: get_duration(r, "retry")?,
        ack_timeout: get_duration(r, "ack-timeout")?,
        commit_timeout: get_duration(r, "commit-timeout")?,
        hello: get_duration(r, "hello")?,
    };
    // Timings a configuration file could not set are refused from the wire too.
    if super::config_file::check_timing(&timing).is_err() {
        return Err(DecodeError::InvalidValue {
            field: "timing",
            value: micros(timing.heartbeat),
        });
    }
    Ok(ClusterConfig {
        version,
        daemons,
        timing,
        removed: get_names(r)?,
    })
}

fn put_opt_config(w: &mut Writer, c: &Option<ClusterConfig>) {
    match c {
        Some(c) => {
            w.bool(true);
            put_config(w, c);
        }
        None => {
            w.bool(false);
        }
    }
}

fn get_opt_config(r: &mut Reader<'_>) -> Result<Option<ClusterConfig>, DecodeError> {
    Ok(if r.bool("config")? {
        Some(get_config(r)?)
    } else {
        None
    })
}

impl MemberMsg {
    /// The highest epoch this message tells of (0 if it carries none): every epoch a
    /// daemon hears raises what its next proposal must exceed (SPEC.md §9.2).
    pub fn epoch_heard(&self) -> u64 {
        match self {
            MemberMsg::Heartbeat { view, .. }
            | MemberMsg::Report { view, .. }
            | MemberMsg::ReportAck { view }
            | MemberMsg::Gather { view, .. }
            | MemberMsg::Here { view, .. }
            | MemberMsg::Hello { view, .. } => view.epoch,
            MemberMsg::Elect { epoch, .. } => *epoch,
            MemberMsg::Propose { view, .. }
            | MemberMsg::Commit { view, .. }
            | MemberMsg::ViewState { view, .. } => view.id.epoch,
            MemberMsg::Ack {
                id, last_primary, ..
            } => id.epoch.max(last_primary.epoch),
            MemberMsg::Nack { id, higher } => id.epoch.max(higher.epoch),
            MemberMsg::Probe { .. }
            | MemberMsg::ProbeFor { .. }
            | MemberMsg::ProbeAck { .. }
            | MemberMsg::Join { .. }
            | MemberMsg::Refuse { .. }
            | MemberMsg::Leave { .. }
            | MemberMsg::ViewReq { .. }
            | MemberMsg::Reload { .. } => 0,
        }
    }

    /// Encodes into a frame.
    pub fn to_frame(&self) -> Frame {
        let mut w = Writer::new();
        let k = match self {
            MemberMsg::Heartbeat { view, from } => {
                put_id(&mut w, view);
                put_member(&mut w, from);
                HEARTBEAT
            }
            MemberMsg::Report { view, suspects } => {
                put_id(&mut w, view);
                put_names(&mut w, suspects);
                REPORT
            }
            MemberMsg::ReportAck { view } => {
                put_id(&mut w, view);
                REPORT_ACK
            }
            MemberMsg::Probe { nonce } => {
                w.u64(*nonce);
                PROBE
            }
            MemberMsg::ProbeFor { nonce, target } => {
                w.u64(*nonce);
                put_member(&mut w, target);
                PROBE_FOR
            }
            MemberMsg::ProbeAck { nonce, from } => {
                w.u64(*nonce);
                put_member(&mut w, from);
                PROBE_ACK
            }
            MemberMsg::Gather { nonce, view } => {
                w.u64(*nonce);
                put_id(&mut w, view);
                GATHER
            }
            MemberMsg::Here { nonce, from, view } => {
                w.u64(*nonce);
                put_member(&mut w, from);
                put_id(&mut w, view);
                HERE
            }
            MemberMsg::Elect { members, epoch } => {
                put_members(&mut w, members);
                w.u64(*epoch);
                ELECT
            }
            MemberMsg::Propose { view, config } => {
                put_view(&mut w, view);
                put_opt_config(&mut w, config);
                PROPOSE
            }
            MemberMsg::Ack {
                id,
                from,
                last_primary,
                basis,
            } => {
                put_id(&mut w, id);
                put_member(&mut w, from);
                put_id(&mut w, last_primary);
                put_names(&mut w, basis);
                ACK
            }
            MemberMsg::Nack { id, higher } => {
                put_id(&mut w, id);
                put_id(&mut w, higher);
                NACK
            }
            MemberMsg::Commit { view, config } => {
                put_view(&mut w, view);
                put_opt_config(&mut w, config);
                COMMIT
            }
            MemberMsg::Join { member } => {
                put_member(&mut w, member);
                JOIN
            }
            MemberMsg::Refuse { reason } => {
                w.str(reason);
                REFUSE
            }
            MemberMsg::Leave { member } => {
                put_member(&mut w, member);
                LEAVE
            }
            MemberMsg::Hello { view, from, size } => {
                put_id(&mut w, view);
                put_member(&mut w, from);
                w.u32(*size);
                HELLO
            }
            MemberMsg::ViewReq { from } => {
                put_member(&mut w, from);
                VIEW_REQ
            }
            MemberMsg::ViewState { view, config } => {
                put_view(&mut w, view);
                put_config(&mut w, config);
                VIEW_STATE
            }
            MemberMsg::Reload { config } => {
                put_config(&mut w, config);
                RELOAD
            }
        };
        Frame::new(k, w.finish())
    }

    /// Decodes a frame of this family.
    pub fn decode(frame: &Frame) -> Result<Self, DecodeError> {
        let mut r = Reader::new(&frame.payload);
        let r = &mut r;
        let msg = match frame.kind {
            HEARTBEAT => MemberMsg::Heartbeat {
                view: get_id(r)?,
                from: get_member(r)?,
            },
            REPORT => MemberMsg::Report {
                view: get_id(r)?,
                suspects: get_names(r)?,
            },
            REPORT_ACK => MemberMsg::ReportAck { view: get_id(r)? },
            PROBE => MemberMsg::Probe { nonce: r.u64()? },
            PROBE_FOR => MemberMsg::ProbeFor {
                nonce: r.u64()?,
                target: get_member(r)?,
            },
            PROBE_ACK => MemberMsg::ProbeAck {
                nonce: r.u64()?,
                from: get_member(r)?,
            },
            GATHER => MemberMsg::Gather {
                nonce: r.u64()?,
                view: get_id(r)?,
            },
            HERE => MemberMsg::Here {
                nonce: r.u64()?,
                from: get_member(r)?,
                view: get_id(r)?,
            },
            ELECT => MemberMsg::Elect {
                members: get_members(r)?,
                epoch: r.u64()?,
            },
            PROPOSE => MemberMsg::Propose {
                view: get_view(r)?,
                config: get_opt_config(r)?,
            },
            ACK => MemberMsg::Ack {
                id: get_id(r)?,
                from: get_member(r)?,
                last_primary: get_id(r)?,
                basis: get_names(r)?,
            },
            NACK => MemberMsg::Nack {
                id: get_id(r)?,
                higher: get_id(r)?,
            },
            COMMIT => MemberMsg::Commit {
                view: get_view(r)?,
                config: get_opt_config(r)?,
            },
            JOIN => MemberMsg::Join {
                member: get_member(r)?,
            },
            REFUSE => MemberMsg::Refuse {
                reason: r.str("reason", MAX_REASON)?,
            },
            LEAVE => MemberMsg::Leave {
                member: get_member(r)?,
            },
            HELLO => MemberMsg::Hello {
                view: get_id(r)?,
                from: get_member(r)?,
                size: r.u32()?,
            },
            VIEW_REQ => MemberMsg::ViewReq {
                from: get_member(r)?,
            },
            VIEW_STATE => MemberMsg::ViewState {
                view: get_view(r)?,
                config: get_config(r)?,
            },
            RELOAD => MemberMsg::Reload {
                config: get_config(r)?,
            },
            other => return Err(DecodeError::UnknownKind(other)),
        };
        match r.remaining() {
            0 => Ok(msg),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn name() -> impl Strategy<Value = String> {
        "[a-z0-9-]{1,10}"
    }

    fn member() -> impl Strategy<Value = Member> {
        (name(), any::<u64>(), any::<[u8; 4]>(), any::<u16>()).prop_map(|(name, inc, ip, port)| {
            Member {
                name,
                incarnation: inc,
                addr: SocketAddr::from((ip, port)),
            }
        })
    }

    fn members() -> impl Strategy<Value = Vec<Member>> {
        proptest::collection::vec(member(), 0..6).prop_map(|mut v| {
            super::super::view::normalise(&mut v);
            v
        })
    }

    fn id() -> impl Strategy<Value = ViewId> {
        (any::<u64>(), name(), any::<u64>()).prop_map(|(epoch, coordinator, incarnation)| ViewId {
            epoch,
            coordinator,
            incarnation,
        })
    }

    fn view() -> impl Strategy<Value = View> {
        (
            id(),
            members(),
            any::<bool>(),
            proptest::collection::vec(name(), 0..4),
            any::<u64>(),
        )
            .prop_map(|(id, members, primary, basis, config_version)| View {
                id,
                members,
                primary,
                basis,
                config_version,
            })
    }

    fn config() -> impl Strategy<Value = ClusterConfig> {
        (
            any::<u64>(),
            proptest::collection::vec((name(), any::<[u8; 4]>(), any::<u16>()), 0..4),
            1u64..=200_000,
            proptest::collection::vec(name(), 0..3),
        )
            .prop_map(|(version, d, us, removed)| ClusterConfig {
                version,
                daemons: d
                    .into_iter()
                    .map(|(n, ip, p)| (n, SocketAddr::from((ip, p))))
                    .collect(),
                timing: Timing {
                    heartbeat: Duration::from_micros(us),
                    ..Timing::default()
                },
                removed,
            })
    }

    fn msg() -> impl Strategy<Value = MemberMsg> {
        prop_oneof![
            (id(), member()).prop_map(|(view, from)| MemberMsg::Heartbeat { view, from }),
            (id(), proptest::collection::vec(name(), 0..4))
                .prop_map(|(view, suspects)| MemberMsg::Report { view, suspects }),
            id().prop_map(|view| MemberMsg::ReportAck { view }),
            any::<u64>().prop_map(|nonce| MemberMsg::Probe { nonce }),
            (any::<u64>(), member()).prop_map(|(nonce, from)| MemberMsg::ProbeAck { nonce, from }),
            (any::<u64>(), member())
                .prop_map(|(nonce, target)| MemberMsg::ProbeFor { nonce, target }),
            (any::<u64>(), id()).prop_map(|(nonce, view)| MemberMsg::Gather { nonce, view }),
            (any::<u64>(), member(), id()).prop_map(|(nonce, from, view)| MemberMsg::Here {
                nonce,
                from,
                view
            }),
            (members(), any::<u64>())
                .prop_map(|(members, epoch)| MemberMsg::Elect { members, epoch }),
            (view(), proptest::option::of(config()))
                .prop_map(|(view, config)| MemberMsg::Propose { view, config }),
            (
                id(),
                member(),
                id(),
                proptest::collection::vec(name(), 0..4)
            )
                .prop_map(|(id, from, last_primary, basis)| MemberMsg::Ack {
                    id,
                    from,
                    last_primary,
                    basis
                }),
            (id(), id()).prop_map(|(id, higher)| MemberMsg::Nack { id, higher }),
            (view(), proptest::option::of(config()))
                .prop_map(|(view, config)| MemberMsg::Commit { view, config }),
            member().prop_map(|member| MemberMsg::Join { member }),
            "[ -~]{0,40}".prop_map(|reason| MemberMsg::Refuse { reason }),
            member().prop_map(|member| MemberMsg::Leave { member }),
            (id(), member(), any::<u32>()).prop_map(|(view, from, size)| MemberMsg::Hello {
                view,
                from,
                size
            }),
            member().prop_map(|from| MemberMsg::ViewReq { from }),
            (view(), config()).prop_map(|(view, config)| MemberMsg::ViewState { view, config }),
            config().prop_map(|config| MemberMsg::Reload { config }),
        ]
    }

    proptest! {
        #[test]
        fn every_message_round_trips(m in msg()) {
            prop_assert_eq!(MemberMsg::decode(&m.to_frame()), Ok(m));
        }

        #[test]
        fn arbitrary_payloads_never_panic(k in 0u8..32, p in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = MemberMsg::decode(&Frame::new(kind(k), Bytes::from(p)));
        }
    }

    #[test]
    fn members_out_of_order_are_refused() {
        let a = |n: &str| Member {
            name: n.into(),
            incarnation: 1,
            addr: SocketAddr::from(([127, 0, 0, 1], 1)),
        };
        let m = MemberMsg::Elect {
            members: vec![a("b"), a("a")],
            epoch: 1,
        };
        assert!(MemberMsg::decode(&m.to_frame()).is_err());
    }
}
