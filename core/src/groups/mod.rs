//! Client groups on the daemons (seeds 001 and 004; SPEC.md §10): named groups that
//! clients of any daemon join and leave, messages delivered to every member in one agreed
//! order with virtual synchrony (or, cheaper, in FIFO order per sender), and notices of
//! who is in each group. Runs beside
//! membership in one node: [`MembershipLink`] hands every installed view to the groups
//! machine inside the core.

pub mod front;
pub mod msg;

mod machine;

pub use machine::{
    Cause, FIFO_LOG_BYTES, FIFO_WINDOW, GroupChange, Groups, GroupsCommand, GroupsError,
    GroupsEvent, GroupsSettings, GroupsStats, LOG_BYTES, MAX_PENDING, WINDOW,
};
pub use msg::{FifoFill, FifoState, Fill, GroupMsg, Item, MsgId, Numbered, What};

use crate::compose::{Link, Pair};
use crate::machine::{Input, Machine};
use crate::membership::{Membership, MembershipEvent};
use crate::time::Instant;
use front::{Forward, FrontCommand, FrontEvent, GroupsFront};

/// Membership, client groups and service groups in one node: every client stream goes
/// to the groups front, which forwards the daemon's own lines to membership.
pub type GroupDaemon = Pair<Membership, GroupsFront, MembershipLink>;

/// Feeds every view membership installs to the groups front (and still reports it), and
/// the lines clients send for the daemon itself to membership.
#[derive(Clone, Copy, Debug, Default)]
pub struct MembershipLink;

impl Link<Membership, GroupsFront> for MembershipLink {
    fn on_a_event(
        &mut self,
        now: Instant,
        event: MembershipEvent,
        b: &mut GroupsFront,
    ) -> Option<MembershipEvent> {
        if let MembershipEvent::ViewInstalled { view, .. } = &event {
            // A view is always accepted (an older one is ignored inside).
            let _ = b.handle(now, Input::Command(FrontCommand::View(view.clone())));
        }
        Some(event)
    }

    fn on_b_event(
        &mut self,
        now: Instant,
        event: FrontEvent,
        a: &mut Membership,
    ) -> Option<FrontEvent> {
        let FrontEvent::Forward { client, what } = event else {
            return Some(event);
        };
        // Membership answers into its own outputs, which the pair takes before any
        // later output of the front: the client's replies stay in order.
        let input = match what {
            Forward::Open(origin) => Input::ClientOpened { client, origin },
            Forward::Line(b) => Input::ClientData(client, b),
            Forward::Close => Input::ClientClosed(client),
        };
        let _ = a.handle(now, input);
        None
    }
}

#[cfg(test)]
mod tests;
