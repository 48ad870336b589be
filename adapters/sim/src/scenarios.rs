//! The built-in named scenarios, shipped as `.scn` text in `adapters/sim/scenarios/` and
//! embedded at build time so `flotilla sim NAME` needs no files.

/// `(name, one-line description, text)` of every built-in scenario.
pub const BUILTIN: &[(&str, &str, &str)] = &[
    (
        "heartbeat-partition",
        "3 nodes; {n1} | {n2 n3} at 5s, healed at 15s: detection and recovery under jitter, loss, duplication",
        include_str!("../scenarios/heartbeat-partition.scn"),
    ),
    (
        "heartbeat-canary",
        "a heartbeat with a planted bug (a repeated beat keeps a peer up); some seeds must fail",
        include_str!("../scenarios/heartbeat-canary.scn"),
    ),
    (
        "daughtership-hang",
        "seed 000's hang and its fix side by side: the seed's ships hang (a check fails, by design), flotilla's match",
        include_str!("../scenarios/daughtership-hang.scn"),
    ),
    (
        "daughtership-hang-fixed",
        "the fix alone: accept and connect on sibling daughterships meet at the mothership",
        include_str!("../scenarios/daughtership-hang-fixed.scn"),
    ),
    (
        "broker-random",
        "depth-3 tree, 50 pairs in random places and order, lonely connects, sets, claims; lossy network",
        include_str!("../scenarios/broker-random.scn"),
    ),
    (
        "broker-chaos",
        "the same tree with loss, a partition between levels, ship crashes and restarts",
        include_str!("../scenarios/broker-chaos.scn"),
    ),
    (
        "broker-slow-store",
        "a durable mothership on a slow disk that fails and hangs, with crashes: nothing acknowledged is lost",
        include_str!("../scenarios/broker-slow-store.scn"),
    ),
    (
        "broker-swarm",
        "the depth-3 tree under faults drawn per seed (loss, bursts, delays, partitions, crashes, pauses)",
        include_str!("../scenarios/broker-swarm.scn"),
    ),
    (
        "ship-canary",
        "ships with a planted bug (a connection id handed out twice); some seeds must fail",
        include_str!("../scenarios/ship-canary.scn"),
    ),
    (
        "pair-heartbeat-ship",
        "two machines in one node: a heartbeat and a ship side by side on every node, through a partition",
        include_str!("../scenarios/pair-heartbeat-ship.scn"),
    ),
    (
        "ship-large-tree",
        "a 3 MB configuration (three frames' worth) reaches every ship in pieces under loss, with restarts mid-transfer",
        include_str!("../scenarios/ship-large-tree.scn"),
    ),
    (
        "ship-parent-return",
        "production timings: the mothership is gone 10 s; every daughtership is back within 1 s of its return",
        include_str!("../scenarios/ship-parent-return.scn"),
    ),
    (
        "flood-50",
        "50 sites, connectivity 3, tree flooding under 1% loss: every update exported exactly once everywhere",
        include_str!("../scenarios/flood-50.scn"),
    ),
    (
        "flood-failures",
        "50 sites, connectivity 3: two fail for good; every update still reaches every running site",
        include_str!("../scenarios/flood-failures.scn"),
    ),
    (
        "flood-partition",
        "12 sites split in two for 5 s while both sides flood: gaps reported after the heal, and recovered",
        include_str!("../scenarios/flood-partition.scn"),
    ),
    (
        "flood-storage",
        "storage for about twenty updates and failing, hanging exports: the bound holds, drops are reported",
        include_str!("../scenarios/flood-storage.scn"),
    ),
    (
        "flood-master-restart",
        "the master crashes and restarts from its file: join requests rebuild the group",
        include_str!("../scenarios/flood-master-restart.scn"),
    ),
    (
        "flood-restart",
        "a site down 10 s restarts while the others flood: it gets, or reports lost, everything flooded after it rejoined",
        include_str!("../scenarios/flood-restart.scn"),
    ),
    (
        "flood-export-faults",
        "export commands that fail and hang: retried with backoff, nothing exported twice",
        include_str!("../scenarios/flood-export-faults.scn"),
    ),
    (
        "flood-plain",
        "flood-50 with the seed's plain flooding, for comparison",
        include_str!("../scenarios/flood-plain.scn"),
    ),
    (
        "flood-canary",
        "sites with a planted bug (a pulled duplicate exported again); some seeds must fail",
        include_str!("../scenarios/flood-canary.scn"),
    ),
    (
        "membership-crash",
        "5 daemons: one crashes and restarts, then the coordinator, then a majority; survivors agree each time",
        include_str!("../scenarios/membership-crash.scn"),
    ),
    (
        "membership-partition",
        "7 daemons split in two, healed, split in three, healed: one view per side, one primary, merged",
        include_str!("../scenarios/membership-partition.scn"),
    ),
    (
        "membership-heal",
        "5 daemons split 2|3 and healed three times: one merged view within 1.5 s of every heal",
        include_str!("../scenarios/membership-heal.scn"),
    ),
    (
        "membership-loss",
        "10 daemons, one frame in ten lost for a minute: nobody reachable is ever excluded",
        include_str!("../scenarios/membership-loss.scn"),
    ),
    (
        "membership-bursty",
        "10 daemons under bursty loss (one frame in ten on average): nobody reachable is ever excluded",
        include_str!("../scenarios/membership-bursty.scn"),
    ),
    (
        "membership-join-storm",
        "100 daemons start at once and join through one: one agreed view of all hundred",
        include_str!("../scenarios/membership-join-storm.scn"),
    ),
    (
        "membership-reload",
        "6 listed daemons: a reload removes one and changes timings, another lists it again; a leave",
        include_str!("../scenarios/membership-reload.scn"),
    ),
    (
        "membership-swarm",
        "7 daemons under faults drawn per seed (loss, bursts, partitions, crashes, pauses), then agreed",
        include_str!("../scenarios/membership-swarm.scn"),
    ),
    (
        "membership-canary",
        "daemons with a planted bug (a proposal installed early, one member short); some seeds must fail",
        include_str!("../scenarios/membership-canary.scn"),
    ),
    (
        "groups-loss",
        "client groups on 5 daemons, 10% loss, 300 messages: delivered once everywhere, in one order",
        include_str!("../scenarios/groups-loss.scn"),
    ),
    (
        "groups-crash",
        "client groups while a daemon and then the sequencer crash and restart: order and virtual synchrony",
        include_str!("../scenarios/groups-crash.scn"),
    ),
    (
        "groups-partition",
        "client groups on 6 daemons split in two and three and healed while messages flow",
        include_str!("../scenarios/groups-partition.scn"),
    ),
    (
        "groups-swarm",
        "client groups under faults drawn per seed (loss, bursts, partitions, crashes, pauses)",
        include_str!("../scenarios/groups-swarm.scn"),
    ),
    (
        "groups-heavy",
        "client groups on 7 daemons under harsh faults (15% loss, long bursts, partitions, crashes)",
        include_str!("../scenarios/groups-heavy.scn"),
    ),
    (
        "groups-canary",
        "client groups with a planted bug (delivery past a gap); some seeds must fail",
        include_str!("../scenarios/groups-canary.scn"),
    ),
    (
        "groups-fifo",
        "client groups with half the messages in FIFO mode while daemons crash, the sequencer crashes and a partition heals",
        include_str!("../scenarios/groups-fifo.scn"),
    ),
    (
        "groups-fifo-loss",
        "client groups on 5 daemons, 10% loss, 300 FIFO-mode messages: delivered once everywhere, in each sender's order",
        include_str!("../scenarios/groups-fifo-loss.scn"),
    ),
    (
        "groups-fifo-canary",
        "FIFO-mode messages with a planted bug (delivery past a gap); some seeds must fail",
        include_str!("../scenarios/groups-fifo-canary.scn"),
    ),
    (
        "groups-join-storm",
        "900 clients join one group on three busy daemons over TCP lanes: the control lane goes first, nobody is excluded",
        include_str!("../scenarios/groups-join-storm.scn"),
    ),
    (
        "groups-join-storm-fifo",
        "the same storm served in arrival order, as drivers did before lanes: daemons fall out of the view (fails by design)",
        include_str!("../scenarios/groups-join-storm-fifo.scn"),
    ),
    (
        "groups-stream-loss",
        "5 daemons over TCP streams with 10 % loss, 4,000 messages: paced repeats, at most 1.5 resends per message",
        include_str!("../scenarios/groups-stream-loss.scn"),
    ),
    (
        "groups-cut-flush",
        "5 daemons over TCP streams with 20 % loss, one cut off for 3.3 s and then 2.5 s: every flush within 2 s",
        include_str!("../scenarios/groups-cut-flush.scn"),
    ),
    (
        "services-partition",
        "service groups bound on both sides of a partition: one port table after the heal, every barrier finished",
        include_str!("../scenarios/services-partition.scn"),
    ),
    (
        "services-heal",
        "ports handed out on both sides of a partition, more services than ports: after the heal only losers move, once; port-less services get freed ports",
        include_str!("../scenarios/services-heal.scn"),
    ),
    (
        "services-swarm",
        "service groups and messages under faults drawn per seed, agents binding and disconnecting",
        include_str!("../scenarios/services-swarm.scn"),
    ),
    (
        "services-canary",
        "service groups with a planted bug (a port kept by two services after a heal); some seeds must fail",
        include_str!("../scenarios/services-canary.scn"),
    ),
    (
        "broker-1000",
        "1,000 clients across a depth-3 tree",
        include_str!("../scenarios/broker-1000.scn"),
    ),
    (
        "vip-failover",
        "the holder of one VIP crashes: its address is up on a survivor within a second, with default timings",
        include_str!("../scenarios/vip-failover.scn"),
    ),
    (
        "vip-crash",
        "VIP election on 3 nodes: holders crash and restart; one holder per VIP against the addresses nodes really have",
        include_str!("../scenarios/vip-crash.scn"),
    ),
    (
        "vip-partition",
        "VIP election on 5 nodes split 2|3 and 1|4: only the majority holds, the minority drops its VIPs",
        include_str!("../scenarios/vip-partition.scn"),
    ),
    (
        "vip-witness",
        "two nodes and a witness: either node's crash moves every VIP to the other, never to the witness",
        include_str!("../scenarios/vip-witness.scn"),
    ),
    (
        "vip-moves",
        "the application moves VIPs, prefers and turns a node ineligible while address changes are slow or fail",
        include_str!("../scenarios/vip-moves.scn"),
    ),
    (
        "vip-canary",
        "vip-moves with a planted bug (acquire before the release is in the order); the one-holder check must fail",
        include_str!("../scenarios/vip-canary.scn"),
    ),
    (
        "vip-loss",
        "no move without cause: 10% loss and 2,000 client messages, no address changes once placed",
        include_str!("../scenarios/vip-loss.scn"),
    ),
    (
        "vip-swarm",
        "VIP election under faults drawn per seed: loss, partitions, crashes, pauses, failing address changes",
        include_str!("../scenarios/vip-swarm.scn"),
    ),
];

/// The text of the built-in scenario `name`.
pub fn builtin(name: &str) -> Option<&'static str> {
    BUILTIN
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, _, text)| *text)
}
