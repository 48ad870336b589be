//! Daemon membership (seeds 001 and 004; SPEC.md §9): daemons that keep one agreed view
//! of which of them are up, that anyone can join by naming a running member, and whose
//! configuration can be reloaded at the cost of one view change.

pub mod config_file;
pub mod msg;
pub mod view;

mod machine;

pub use machine::{
    Membership, MembershipCommand, MembershipError, MembershipEvent, MembershipSettings,
    MembershipStats, check_config,
};
pub use msg::{ClusterConfig, MemberMsg, Timing};
pub use view::{Member, View, ViewId};
