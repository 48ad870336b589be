//! Two machines in one node (SPEC.md §1.3), as the simulator runs them: every node hosts
//! a heartbeat and a ship side by side in one [`Pair`]. The heartbeat's frames (family
//! 0x01) and the ship's (0x02) share each node's address; client streams go to the ship;
//! events come out wrapped; the node's deadline is the earlier of the two. The simulator
//! checks the pair's own invariants (both parts') after every step.
//!
//! `n1` is the mothership, every other node its daughtership. Predicates: `heartbeats-up`
//! (every live node's heartbeat sees every other live, reachable node up), `synced`
//! (every live ship holds the root's version), and `both` (the two together).
//! Registered as protocol `heartbeat+ship`.

use core::time::Duration;

use flotilla_core::compose::Pair;
use flotilla_core::heartbeat::{Heartbeat, HeartbeatConfig};
use flotilla_core::ship::tree::ConfigTree;
use flotilla_core::ship::{Ship, ShipConfig};
use flotilla_core::{Instant, Rng};

use crate::protocol::{NodeSpec, Protocol};
use crate::world::World;

/// A heartbeat and a ship in one node.
pub type HeartbeatShip = Pair<Heartbeat, Ship>;

/// The plug-in.
#[derive(Clone, Debug, Default)]
pub struct PairProtocol;

impl Protocol for PairProtocol {
    type Machine = HeartbeatShip;

    fn name(&self) -> &'static str {
        "heartbeat+ship"
    }

    fn predicates(&self) -> &'static [&'static str] {
        &["heartbeats-up", "synced", "both"]
    }

    fn build(&mut self, node: &NodeSpec<'_>, rng: Rng, now: Instant) -> HeartbeatShip {
        let mut hb = HeartbeatConfig::lan(node.addr, node.addrs.to_vec());
        hb.interval = Duration::from_millis(100);
        hb.timeout = Duration::from_millis(500);
        let mut ship = if node.index == 0 {
            ShipConfig::mothership(
                node.addr,
                ConfigTree::parse("(:param mode fast)").expect("valid"),
            )
        } else {
            ShipConfig::daughtership(node.addr, node.addrs[0])
        };
        ship.timings.keepalive = Duration::from_millis(100);
        ship.timings.parent_timeout = Duration::from_millis(500);
        ship.timings.child_timeout = Duration::from_millis(700);
        ship.timings.backoff_max = Duration::from_millis(500);
        // Each part gets its own stream of the node's randomness.
        let heartbeat = Heartbeat::new(hb, now, rng.fork(1)).expect("valid settings");
        let ship = Ship::new(ship, now, rng.fork(2)).expect("valid settings");
        Pair::new(heartbeat, ship)
    }

    fn predicate(&self, name: &str, world: &World<HeartbeatShip>) -> bool {
        let heartbeats_up = || {
            world.nodes().iter().enumerate().all(|(i, node)| {
                let Some(m) = node.machine().filter(|_| node.is_live()) else {
                    return true;
                };
                (0..world.len()).filter(|&j| j != i).all(|j| {
                    let truth = world.node(j).is_live() && world.network().passes(j, i);
                    m.a().is_up(world.addrs()[j]) == truth
                })
            })
        };
        let synced = || {
            let live: Vec<&Ship> = world
                .nodes()
                .iter()
                .filter(|n| n.is_live())
                .filter_map(|n| n.machine().map(Pair::b))
                .collect();
            live.iter().find(|s| s.is_root()).is_some_and(|root| {
                live.iter()
                    .all(|s| s.epoch() == root.epoch() && s.version() == root.version())
            })
        };
        match name {
            "heartbeats-up" => heartbeats_up(),
            "synced" => synced(),
            "both" => heartbeats_up() && synced(),
            _ => false,
        }
    }
}
