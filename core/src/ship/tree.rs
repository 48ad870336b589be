//! The configuration tree a mothership holds and every daughtership copies (SPEC.md §5.2).
//!
//! Nodes are named and nest; a node's path is its names joined by `/`; the root node has
//! the empty path and holds global parameters. Each node has parameters (text values) and
//! a host: none, static (from the file), or dynamic (claimed at run time by the first
//! process that asks for a matching node).
//!
//! ```text
//! (:param mode fast)                       ; a global parameter: path "mode"
//! (:node db (:host db1.example) (:param port 5432))
//! (:node render
//!   (:param port 7000)
//!   (:node r1 (:dynamic))                  ; path "render/r1", claimed at run time
//!   (:node r2 (:dynamic)))
//! ```

use std::collections::BTreeMap;

use thiserror::Error;

use crate::sexpr::{Node, SexprError, Value, parse_with_limit};
use crate::wire::{DecodeError, Reader, Writer};

/// Longest name, key or value accepted (they travel in reply lines).
pub const MAX_TEXT: usize = 1024;
/// Most nodes a tree may hold.
pub const MAX_NODES: usize = 100_000;
/// Most parameters a node may hold.
pub const MAX_PARAMS: usize = 10_000;
/// The largest configuration a hierarchy carries, in bytes of its encoded form (SPEC.md
/// §5.2): also the largest configuration file read. A `set` that would grow the tree past
/// it is refused.
pub const MAX_CONFIG_BYTES: usize = 64 << 20;

/// A node's host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    /// No host (a grouping node).
    None,
    /// Named in the file.
    Static(String),
    /// Claimed at run time; `None` until claimed.
    Dynamic(Option<String>),
}

/// One node of the tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEntry {
    /// Its host.
    pub host: Host,
    /// Its parameters.
    pub params: BTreeMap<String, String>,
}

/// One change to the tree. Changes are decided at the root, numbered by version, and
/// applied in order everywhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Set (or create) parameter `key` of node `node` (empty = root).
    Set {
        /// Node path.
        node: String,
        /// Parameter name.
        key: String,
        /// New value.
        value: String,
    },
    /// A dynamic node's host was claimed.
    Claim {
        /// Node path.
        node: String,
        /// The claimant's host.
        host: String,
    },
}

/// A request the tree cannot satisfy. State is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No node or parameter at that path.
    #[error("no such path {0}")]
    NoSuchPath(String),
    /// Hosts change only by claim (or in the file).
    #[error("{0}: host is set in the configuration file or by claim, not by set")]
    HostNotSettable(String),
    /// A name, key or value is malformed.
    #[error("invalid {what} '{text}': {why}")]
    Invalid {
        /// What was invalid.
        what: &'static str,
        /// The text.
        text: String,
        /// Why.
        why: &'static str,
    },
    /// Every dynamic node matching the pattern is claimed.
    #[error("no free dynamic node matches {0}")]
    NoFreeNode(String),
    /// A bound was reached.
    #[error("limit reached: {0}")]
    Limit(&'static str),
    /// The change would grow the configuration past its size limit.
    #[error("the configuration would grow to {size} bytes, past its limit of {limit} bytes")]
    TooLarge {
        /// Its size with the change.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

/// The configuration tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigTree {
    nodes: BTreeMap<String, NodeEntry>,
    /// The size of its encoded form, kept up to date by every change.
    bytes: usize,
}

impl Default for ConfigTree {
    fn default() -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            String::new(),
            NodeEntry {
                host: Host::None,
                params: BTreeMap::new(),
            },
        );
        let mut t = ConfigTree { nodes, bytes: 0 };
        t.bytes = t.measure();
        t
    }
}

/// Encoded size of a string: its length, then its bytes.
fn str_size(s: &str) -> usize {
    4 + s.len()
}

fn host_size(h: &Host) -> usize {
    1 + match h {
        Host::None | Host::Dynamic(None) => 0,
        Host::Static(h) | Host::Dynamic(Some(h)) => str_size(h),
    }
}

fn node_size(path: &str, n: &NodeEntry) -> usize {
    str_size(path)
        + host_size(&n.host)
        + 4
        + n.params
            .iter()
            .map(|(k, v)| str_size(k) + str_size(v))
            .sum::<usize>()
}

fn check_name(what: &'static str, s: &str) -> Result<(), ConfigError> {
    let bad = |why| {
        Err(ConfigError::Invalid {
            what,
            text: s.chars().take(64).collect(),
            why,
        })
    };
    if s.is_empty() {
        return bad("empty");
    }
    if s.len() > 128 {
        return bad("longer than 128 bytes");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
    {
        return bad("use letters, digits, '_', '-', '.', ':'");
    }
    Ok(())
}

fn check_value(s: &str) -> Result<(), ConfigError> {
    if s.len() > MAX_TEXT {
        return Err(ConfigError::Invalid {
            what: "value",
            text: s.chars().take(64).collect(),
            why: "too long",
        });
    }
    if s.chars().any(|c| c.is_control()) {
        return Err(ConfigError::Invalid {
            what: "value",
            text: s.chars().take(64).collect(),
            why: "control characters are not allowed",
        });
    }
    Ok(())
}

/// Glob match of a path against a pattern: `*` matches any run of characters, `?` one.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

impl ConfigTree {
    /// Reads a configuration file. An empty file is a valid, empty tree.
    pub fn parse(text: &str) -> Result<Self, SexprError> {
        let mut tree = ConfigTree::default();
        for form in parse_with_limit(text, MAX_CONFIG_BYTES)? {
            tree.read_form(&form, "")?;
        }
        tree.bytes = tree.measure();
        if tree.bytes > MAX_CONFIG_BYTES {
            let e = ConfigError::TooLarge {
                size: tree.bytes,
                limit: MAX_CONFIG_BYTES,
            };
            return Err(SexprError::new(
                crate::sexpr::Pos { line: 1, col: 1 },
                e.to_string(),
            ));
        }
        Ok(tree)
    }

    /// The size of the encoded tree, in bytes (what a snapshot carries).
    pub fn size(&self) -> usize {
        self.bytes
    }

    /// Recounts [`ConfigTree::size`] from scratch (for checks).
    pub fn measure(&self) -> usize {
        4 + self
            .nodes
            .iter()
            .map(|(p, n)| node_size(p, n))
            .sum::<usize>()
    }

    /// How many bytes `change` would add to the tree (negative when it shrinks it).
    pub fn growth(&self, change: &Change) -> isize {
        match change {
            Change::Set { node, key, value } => {
                match self.nodes.get(node).and_then(|n| n.params.get(key)) {
                    Some(old) => value.len() as isize - old.len() as isize,
                    None if self.nodes.contains_key(node) => {
                        (str_size(key) + str_size(value)) as isize
                    }
                    None => 0,
                }
            }
            Change::Claim { node, host } => match self.nodes.get(node).map(|n| &n.host) {
                Some(Host::Dynamic(None)) => str_size(host) as isize,
                _ => 0,
            },
        }
    }

    fn read_form(&mut self, form: &Node, parent: &str) -> Result<(), SexprError> {
        let err = |n: &Node, e: ConfigError| SexprError::new(n.pos, e.to_string());
        match form.head() {
            Some("param") => {
                let [k, v] = form.args() else {
                    return Err(SexprError::new(
                        form.pos,
                        "(:param KEY VALUE) takes two values",
                    ));
                };
                let key = k.text()?;
                check_name("parameter name", &key).map_err(|e| err(k, e))?;
                if key == "host" {
                    return Err(err(k, ConfigError::HostNotSettable(key)));
                }
                let value = v.text()?;
                check_value(&value).map_err(|e| err(v, e))?;
                let node = self.nodes.get_mut(parent).expect("parent node exists");
                if node.params.len() >= MAX_PARAMS {
                    return Err(err(form, ConfigError::Limit("parameters per node")));
                }
                node.params.insert(key, value);
                Ok(())
            }
            Some("node") => {
                let Some(name_node) = form.args().first() else {
                    return Err(SexprError::new(form.pos, "(:node NAME ...) needs a name"));
                };
                let name = name_node.text()?;
                check_name("node name", &name).map_err(|e| err(name_node, e))?;
                if name == "host" {
                    return Err(SexprError::new(name_node.pos, "'host' is reserved"));
                }
                let path = join(parent, &name);
                if self.nodes.contains_key(&path) {
                    return Err(SexprError::new(
                        name_node.pos,
                        format!("node {path} is defined twice"),
                    ));
                }
                if self.nodes.len() >= MAX_NODES {
                    return Err(err(form, ConfigError::Limit("nodes")));
                }
                self.nodes.insert(
                    path.clone(),
                    NodeEntry {
                        host: Host::None,
                        params: BTreeMap::new(),
                    },
                );
                for item in &form.args()[1..] {
                    match item.head() {
                        Some("host") => {
                            let [h] = item.args() else {
                                return Err(SexprError::new(
                                    item.pos,
                                    "(:host NAME) takes one value",
                                ));
                            };
                            let host = h.text()?;
                            check_value(&host).map_err(|e| err(h, e))?;
                            self.set_host(&path, Host::Static(host), item)?;
                        }
                        Some("dynamic") => {
                            if !item.args().is_empty() {
                                return Err(SexprError::new(
                                    item.pos,
                                    "(:dynamic) takes no values",
                                ));
                            }
                            self.set_host(&path, Host::Dynamic(None), item)?;
                        }
                        Some("param") | Some("node") => self.read_form(item, &path)?,
                        _ => {
                            return Err(SexprError::new(
                                item.pos,
                                format!(
                                    "unexpected {} in (:node {name} ...): expected (:host ...), (:dynamic), (:param ...) or (:node ...)",
                                    item.describe()
                                ),
                            ));
                        }
                    }
                }
                Ok(())
            }
            _ => Err(SexprError::new(
                form.pos,
                format!(
                    "expected (:param KEY VALUE) or (:node NAME ...), found {}",
                    match &form.value {
                        Value::List(_) => form.to_string().chars().take(40).collect::<String>(),
                        _ => form.describe().to_string(),
                    }
                ),
            )),
        }
    }

    fn set_host(&mut self, path: &str, host: Host, at: &Node) -> Result<(), SexprError> {
        let node = self.nodes.get_mut(path).expect("node just inserted");
        if node.host != Host::None {
            return Err(SexprError::new(
                at.pos,
                format!("node {path} has two hosts"),
            ));
        }
        node.host = host;
        Ok(())
    }

    /// Number of nodes, the root included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True if only the root exists and it has no parameters.
    pub fn is_empty(&self) -> bool {
        self.nodes.len() == 1 && self.nodes[""].params.is_empty()
    }

    /// A node by path.
    pub fn node(&self, path: &str) -> Option<&NodeEntry> {
        self.nodes.get(path)
    }

    /// All nodes in path order.
    pub fn nodes(&self) -> impl Iterator<Item = (&str, &NodeEntry)> {
        self.nodes.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Reads `PATH`: `NODE/…/KEY` gives a parameter, `NODE/…/host` a host (`-` while an
    /// unclaimed dynamic host), a node path gives a one-line summary, and a single word
    /// is a global parameter (or a top-level node).
    pub fn get(&self, path: &str) -> Result<String, ConfigError> {
        if let Some(n) = self.nodes.get(path).filter(|_| !path.is_empty()) {
            return Ok(summary(n));
        }
        let (node, key) = path.rsplit_once('/').unwrap_or(("", path));
        let entry = self
            .nodes
            .get(node)
            .ok_or_else(|| ConfigError::NoSuchPath(path.to_string()))?;
        if key == "host" && !node.is_empty() {
            return Ok(match &entry.host {
                Host::None => "-".to_string(),
                Host::Static(h) | Host::Dynamic(Some(h)) => h.clone(),
                Host::Dynamic(None) => "-".to_string(),
            });
        }
        entry
            .params
            .get(key)
            .cloned()
            .ok_or_else(|| ConfigError::NoSuchPath(path.to_string()))
    }

    /// Validates `set PATH VALUE` and returns the change the root would apply.
    pub fn prepare_set(&self, path: &str, value: &str) -> Result<Change, ConfigError> {
        let (node, key) = path.rsplit_once('/').unwrap_or(("", path));
        if !self.nodes.contains_key(node) {
            return Err(ConfigError::NoSuchPath(path.to_string()));
        }
        check_name("parameter name", key)?;
        if key == "host" {
            return Err(ConfigError::HostNotSettable(path.to_string()));
        }
        check_value(value)?;
        let entry = &self.nodes[node];
        if !entry.params.contains_key(key) && entry.params.len() >= MAX_PARAMS {
            return Err(ConfigError::Limit("parameters per node"));
        }
        Ok(Change::Set {
            node: node.to_string(),
            key: key.to_string(),
            value: value.to_string(),
        })
    }

    /// Picks the first unclaimed dynamic node (in path order) whose path matches
    /// `pattern` and returns the claim the root would apply.
    pub fn prepare_claim(&self, pattern: &str, host: &str) -> Result<Change, ConfigError> {
        self.prepare_claim_except(pattern, host, |_| false)
    }

    /// [`ConfigTree::prepare_claim`], passing over nodes for which `taken` is true (claims
    /// decided but not yet applied).
    pub fn prepare_claim_except(
        &self,
        pattern: &str,
        host: &str,
        taken: impl Fn(&str) -> bool,
    ) -> Result<Change, ConfigError> {
        check_value(host)?;
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(ConfigError::Invalid {
                what: "host",
                text: host.to_string(),
                why: "must be one non-empty word",
            });
        }
        self.nodes
            .iter()
            .find(|(p, n)| n.host == Host::Dynamic(None) && glob_match(pattern, p) && !taken(p))
            .map(|(p, _)| Change::Claim {
                node: p.clone(),
                host: host.to_string(),
            })
            .ok_or_else(|| ConfigError::NoFreeNode(pattern.to_string()))
    }

    /// Applies a change decided at the root. Changes that no longer fit (a node that
    /// vanished) are ignored: they were validated where they were decided, and every copy
    /// applies the same sequence, so copies cannot diverge.
    pub fn apply(&mut self, change: &Change) {
        let grown = self.growth(change);
        self.bytes = self.bytes.saturating_add_signed(grown);
        match change {
            Change::Set { node, key, value } => {
                if let Some(n) = self.nodes.get_mut(node) {
                    n.params.insert(key.clone(), value.clone());
                }
            }
            Change::Claim { node, host } => {
                if let Some(n) = self.nodes.get_mut(node) {
                    debug_assert_eq!(n.host, Host::Dynamic(None), "claim of a claimed node");
                    n.host = Host::Dynamic(Some(host.clone()));
                }
            }
        }
    }

    /// Encodes the whole tree (for a snapshot).
    pub fn encode(&self, w: &mut Writer) {
        w.count(self.nodes.len());
        for (path, n) in &self.nodes {
            w.str(path);
            match &n.host {
                Host::None => w.u8(0),
                Host::Static(h) => w.u8(1).str(h),
                Host::Dynamic(None) => w.u8(2),
                Host::Dynamic(Some(h)) => w.u8(3).str(h),
            };
            w.count(n.params.len());
            for (k, v) in &n.params {
                w.str(k).str(v);
            }
        }
    }

    /// Decodes a tree encoded by [`ConfigTree::encode`].
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let n = r.count("nodes", MAX_NODES, 5)?;
        let mut nodes = BTreeMap::new();
        for _ in 0..n {
            let path = r.str("node path", 8 * MAX_TEXT)?;
            let host = match r.u8()? {
                0 => Host::None,
                1 => Host::Static(r.str("host", MAX_TEXT)?),
                2 => Host::Dynamic(None),
                3 => Host::Dynamic(Some(r.str("host", MAX_TEXT)?)),
                v => {
                    return Err(DecodeError::InvalidValue {
                        field: "host kind",
                        value: u64::from(v),
                    });
                }
            };
            let np = r.count("params", MAX_PARAMS, 8)?;
            let mut params = BTreeMap::new();
            for _ in 0..np {
                let k = r.str("param key", MAX_TEXT)?;
                let v = r.str("param value", MAX_TEXT)?;
                params.insert(k, v);
            }
            nodes.insert(path, NodeEntry { host, params });
        }
        if !nodes.contains_key("") {
            return Err(DecodeError::InvalidValue {
                field: "root node",
                value: 0,
            });
        }
        let mut t = ConfigTree { nodes, bytes: 0 };
        t.bytes = t.measure();
        Ok(t)
    }
}

fn summary(n: &NodeEntry) -> String {
    let host = match &n.host {
        Host::None => "none".to_string(),
        Host::Static(h) => h.clone(),
        Host::Dynamic(Some(h)) => format!("{h} (claimed)"),
        Host::Dynamic(None) => "unclaimed".to_string(),
    };
    let mut s = format!("host={host}");
    for (k, v) in &n.params {
        s.push_str(&format!(" {k}={v}"));
    }
    s
}

impl Change {
    /// Its encoded size in bytes.
    pub fn size(&self) -> usize {
        1 + match self {
            Change::Set { node, key, value } => str_size(node) + str_size(key) + str_size(value),
            Change::Claim { node, host } => str_size(node) + str_size(host),
        }
    }

    /// Encodes one change.
    pub fn encode(&self, w: &mut Writer) {
        match self {
            Change::Set { node, key, value } => w.u8(1).str(node).str(key).str(value),
            Change::Claim { node, host } => w.u8(2).str(node).str(host),
        };
    }

    /// Decodes one change.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            1 => Ok(Change::Set {
                node: r.str("node path", 8 * MAX_TEXT)?,
                key: r.str("param key", MAX_TEXT)?,
                value: r.str("param value", MAX_TEXT)?,
            }),
            2 => Ok(Change::Claim {
                node: r.str("node path", 8 * MAX_TEXT)?,
                host: r.str("host", MAX_TEXT)?,
            }),
            v => Err(DecodeError::InvalidValue {
                field: "change kind",
                value: u64::from(v),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EXAMPLE: &str = "
        (:param mode fast)
        (:node db (:host db1.example) (:param port 5432))
        (:node render
          (:param port 7000)
          (:node r1 (:dynamic))
          (:node r2 (:dynamic)))";

    #[test]
    fn reads_paths_hosts_and_params() {
        let t = ConfigTree::parse(EXAMPLE).unwrap();
        assert_eq!(t.get("mode").unwrap(), "fast");
        assert_eq!(t.get("db/port").unwrap(), "5432");
        assert_eq!(t.get("db/host").unwrap(), "db1.example");
        assert_eq!(t.get("render/r1/host").unwrap(), "-");
        assert_eq!(t.get("db").unwrap(), "host=db1.example port=5432");
        assert_eq!(
            t.get("nope/x"),
            Err(ConfigError::NoSuchPath("nope/x".into()))
        );
        assert!(ConfigTree::parse("").unwrap().is_empty());
    }

    #[test]
    fn file_errors_have_positions() {
        let e = ConfigTree::parse("(:node a (:host x) (:dynamic))").unwrap_err();
        assert_eq!(e.to_string(), "1:20: node a has two hosts");
        let e = ConfigTree::parse("(:node a)\n(:node a)").unwrap_err();
        assert_eq!(e.to_string(), "2:8: node a is defined twice");
        let e = ConfigTree::parse("(:param a)").unwrap_err();
        assert!(e.to_string().starts_with("1:1: "));
        let e = ConfigTree::parse("(:node a/b)").unwrap_err();
        assert!(e.to_string().starts_with("1:8: invalid node name"));
    }

    #[test]
    fn claims_take_the_next_free_node() {
        let mut t = ConfigTree::parse(EXAMPLE).unwrap();
        let c1 = t.prepare_claim("render/*", "h1").unwrap();
        t.apply(&c1);
        let c2 = t.prepare_claim("render/*", "h2").unwrap();
        t.apply(&c2);
        assert_eq!(
            (c1, c2),
            (
                Change::Claim {
                    node: "render/r1".into(),
                    host: "h1".into()
                },
                Change::Claim {
                    node: "render/r2".into(),
                    host: "h2".into()
                }
            )
        );
        assert_eq!(
            t.prepare_claim("render/*", "h3"),
            Err(ConfigError::NoFreeNode("render/*".into()))
        );
        assert_eq!(t.get("render/r2/host").unwrap(), "h2");
    }

    #[test]
    fn set_validates() {
        let t = ConfigTree::parse(EXAMPLE).unwrap();
        assert!(t.prepare_set("db/port", "1").is_ok());
        assert!(t.prepare_set("newglobal", "1").is_ok());
        assert_eq!(
            t.prepare_set("db/host", "x"),
            Err(ConfigError::HostNotSettable("db/host".into()))
        );
        assert!(matches!(
            t.prepare_set("ghost/port", "1"),
            Err(ConfigError::NoSuchPath(_))
        ));
        assert!(t.prepare_set("db/port", "a\u{7}b").is_err());
    }

    #[test]
    fn globs() {
        assert!(glob_match("render/*", "render/r1"));
        assert!(glob_match("*", "anything/at/all"));
        assert!(glob_match("r?", "r1"));
        assert!(!glob_match("r?", "r12"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
    }

    proptest! {
        /// Any sequence of valid sets and claims gives the same tree whether applied
        /// directly or after a snapshot round trip, and claims never take a node twice.
        #[test]
        fn changes_and_snapshots_agree(ops in proptest::collection::vec((any::<bool>(), 0usize..4, "[a-z]{1,3}"), 0..30)) {
            let mut t = ConfigTree::parse(EXAMPLE).unwrap();
            let mut claimed = std::collections::BTreeSet::new();
            for (is_claim, which, word) in ops {
                let change = if is_claim {
                    match t.prepare_claim(["render/*", "*", "render/r2", "db"][which], &word) {
                        Ok(c) => c,
                        Err(ConfigError::NoFreeNode(_)) => continue,
                        Err(e) => panic!("{e}"),
                    }
                } else {
                    t.prepare_set(["mode", "db/port", "render/r1/x", "render/k"][which], &word).unwrap()
                };
                if let Change::Claim { node, .. } = &change {
                    prop_assert!(claimed.insert(node.clone()), "node claimed twice");
                }
                t.apply(&change);
                let mut w = Writer::new();
                change.encode(&mut w);
                let b = w.finish();
                prop_assert_eq!(Change::decode(&mut Reader::new(&b)).unwrap(), change);
            }
            let mut w = Writer::new();
            t.encode(&mut w);
            let b = w.finish();
            let back = ConfigTree::decode(&mut Reader::new(&b)).unwrap();
            prop_assert_eq!(back, t);
        }
    }
}
