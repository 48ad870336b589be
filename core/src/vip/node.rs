//! A node that runs its group daemon and its VIP agent in one machine
//! ([`VipNode`], SPEC.md §11.4): the simulator's `vip` plug-in, and a program that
//! embeds both. The link is the agent's group client inside the core: it joins the
//! agents' group as [`AGENT_CLIENT`], sends the agent's lines to it, and turns the
//! group's deliveries and membership changes into the agent's commands.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::agent::{AGENT_CLIENT, VipAgent, VipCommand, VipEvent};
use super::msg::Place;
use crate::compose::{Either, Link, Pair};
use crate::groups::front::{FrontCommand, FrontEvent};
use crate::groups::{GroupChange, GroupDaemon, GroupsCommand, GroupsEvent};
use crate::machine::{Input, Machine};
use crate::membership::MembershipEvent;
use crate::time::Instant;

/// A group daemon and its VIP agent.
pub type VipNode = Pair<GroupDaemon, VipAgent, AgentLink>;

/// The agents' group's members, kept from whole lists and single changes: a group
/// reports one member joining or leaving, the agent wants every member. `AgentLink`
/// keeps it from the groups machine, `flotilla vipd` from a group client's notices.
#[derive(Clone, Debug, Default)]
pub struct MemberList(BTreeSet<(String, String)>);

impl MemberList {
    /// Every member, as a whole list says.
    pub fn replace(&mut self, all: impl IntoIterator<Item = (String, String)>) {
        self.0 = all.into_iter().collect();
    }

    /// One member joined.
    pub fn joined(&mut self, m: (String, String)) {
        self.0.insert(m);
    }

    /// One member left.
    pub fn left(&mut self, m: &(String, String)) {
        self.0.remove(m);
    }

    /// No members (the connection to the group is gone).
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// The members, `(client, daemon)`, in order.
    pub fn iter(&self) -> impl Iterator<Item = &(String, String)> {
        self.0.iter()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The agent's command for a change of the group at `at`.
    pub fn view(&self, at: Place) -> VipCommand {
        VipCommand::GroupView {
            at,
            members: self.0.iter().cloned().collect(),
        }
    }
}

/// Carries the agent's group traffic across, keeping the group's member list (the
/// groups machine reports a change, the agent wants the whole list).
#[derive(Clone, Debug, Default)]
pub struct AgentLink {
    group: Option<String>,
    members: MemberList,
    /// Lines the groups machine refused (it had 1,024 items on their way): the agent's
    /// table would wait for them, so the count is watched by the simulator.
    pub refused: u64,
}

impl AgentLink {
    fn group_cmd(now: Instant, a: &mut GroupDaemon, cmd: GroupsCommand) -> bool {
        a.handle(now, Input::Command(Either::B(FrontCommand::Groups(cmd))))
            .is_ok()
    }
}

impl Link<GroupDaemon, VipAgent> for AgentLink {
    fn on_a_event(
        &mut self,
        now: Instant,
        event: Either<MembershipEvent, FrontEvent>,
        b: &mut VipAgent,
    ) -> Option<Either<MembershipEvent, FrontEvent>> {
        let Either::B(FrontEvent::Groups(g)) = &event else {
            return Some(event);
        };
        let Some(ours) = &self.group else {
            return Some(event);
        };
        let cmd = match g {
            GroupsEvent::GroupView {
                group,
                view,
                seq,
                change,
                ..
            } if group == ours => {
                match change {
                    GroupChange::Whole(list) => self.members.replace(list.iter().cloned()),
                    GroupChange::Joined(m) => self.members.joined(m.clone()),
                    GroupChange::Left(m) => self.members.left(m),
                }
                Some(
                    self.members
                        .view(Place::new(view.epoch, &view.coordinator, *seq)),
                )
            }
            GroupsEvent::Delivered {
                view,
                seq,
                id,
                group,
                sender,
                payload,
            } if group == ours => Some(VipCommand::GroupMessage {
                at: Place::new(view.epoch, &view.coordinator, *seq),
                client: sender.clone(),
                daemon: id.origin.clone(),
                payload: payload.clone(),
            }),
            _ => None,
        };
        if let Some(cmd) = cmd {
            // A line the agent cannot read is its error to report, not the daemon's.
            let _ = b.handle(now, Input::Command(cmd));
        }
        Some(event)
    }

    fn on_b_event(
        &mut self,
        now: Instant,
        event: VipEvent,
        a: &mut GroupDaemon,
    ) -> Option<VipEvent> {
        match &event {
            VipEvent::Join { group } => {
                self.group = Some(group.clone());
                let cmd = GroupsCommand::Join {
                    group: group.clone(),
                    client: AGENT_CLIENT.to_string(),
                };
                if !Self::group_cmd(now, a, cmd) {
                    self.refused += 1;
                }
                Some(event)
            }
            VipEvent::Send(line) => {
                let group = self.group.clone().unwrap_or_default();
                let cmd = GroupsCommand::Send {
                    group,
                    sender: AGENT_CLIENT.to_string(),
                    payload: Bytes::from(line.clone().into_bytes()),
                };
                if !Self::group_cmd(now, a, cmd) {
                    self.refused += 1;
                }
                None
            }
            _ => Some(event),
        }
    }
}
