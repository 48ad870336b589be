//! Virtual-IP election (seed 003, SPEC.md §11): every VIP held by exactly one member of
//! a primary component, chosen by a pure function every agent computes alike, moved
//! release-before-acquire, and steered by the application (eligibility, preferences,
//! moves).
//!
//! - [`config`]: the file every node reads.
//! - [`msg`]: the agents' messages in their group's agreed order.
//! - [`assign`]: who should hold what (pure).
//! - [`table`]: the replicated table, changed only at places of the order.
//! - [`agent`]: the machine of one node: the table, its addresses (effects), health
//!   checks, hooks and the application's intents.

pub mod agent;
pub mod assign;
pub mod config;
pub mod msg;
pub mod node;
pub mod table;

#[cfg(test)]
mod tests;

pub use agent::{
    AGENT_CLIENT, Local, LocalChange, VipAgent, VipCommand, VipEffect, VipError, VipEvent, VipRow,
    VipStatus,
};
pub use config::{VipAddress, VipConfig, VipSpec};
pub use msg::{Place, VipMsg};
pub use node::{AgentLink, MemberList, VipNode};
pub use table::Table;
