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
];

/// The text of the built-in scenario `name`.
pub fn builtin(name: &str) -> Option<&'static str> {
    BUILTIN
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, _, text)| *text)
}
