//! Client groups on the daemons (seeds 001 and 004; SPEC.md §10): named groups that
//! clients of any daemon join and leave, messages delivered to every member in one agreed
//! order with virtual synchrony, and notices of who is in each group. Runs beside
//! membership in one node: [`MembershipLink`] hands every installed view to the groups
//! machine inside the core.

pub mod msg;

mod machine;

pub use machine::{
    Cause, Groups, GroupsCommand, GroupsError, GroupsEvent, GroupsSettings, GroupsStats, LOG_BYTES,
    MAX_PENDING, WINDOW,
};
pub use msg::{Fill, GroupMsg, Item, MsgId, Numbered, What};

use crate::compose::{Link, Pair};
use crate::machine::{Input, Machine};
use crate::membership::{Membership, MembershipEvent};
use crate::time::Instant;

/// Membership and client groups in one node.
pub type GroupDaemon = Pair<Membership, Groups, MembershipLink>;

/// Feeds every view membership installs to the groups machine (and still reports it).
#[derive(Clone, Copy, Debug, Default)]
pub struct MembershipLink;

impl Link<Membership, Groups> for MembershipLink {
    fn on_a_event(
        &mut self,
        now: Instant,
        event: MembershipEvent,
        b: &mut Groups,
    ) -> Option<MembershipEvent> {
        if let MembershipEvent::ViewInstalled { view, .. } = &event {
            // A view is always accepted (an older one is ignored inside).
            let _ = b.handle(now, Input::Command(GroupsCommand::View(view.clone())));
        }
        Some(event)
    }
}

#[cfg(test)]
mod tests;
