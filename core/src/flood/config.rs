//! The flood daemon's configuration file (seed 002): the sites that exist, the groups they
//! flood in, and how this site stores and exports what reaches it.
//!
//! ```text
//! ; a comment runs to the end of the line
//! (:site-define (:site-name master) (:hostname valhalla) (:client-port 2000) (:data-port 2001))
//! (:site-define (:site-name inferno) (:inet-address 10.0.0.7) (:client-port 2000) (:data-port 2001)
//!               (:latitude 43.7) (:longitude -79.4))
//! (:group-define (:group-name mirror-1) (:site master) (:site inferno) (:master-site master)
//!                (:ping-period 15.0) (:update-period 2m) (:flooding tree))
//! (:local (:export-command /homes/dante/mirrord/inferno/bin/filer) (:site-purge-period 600))
//! ```
//!
//! Three kinds of top-level form, in any order and any number, except `(:local …)`, of
//! which there is at most one. A parameter is `(:name value)`; a site or group name is 1
//! to [`MAX_NAME`] letters, digits, `_`, `.` or `-`; periods are seconds (`15.0`, `120`,
//! `0.25`) or a number with a unit (`250ms`, `2m`), more than zero and at most a day.
//! A shell command is one string (`"cat >> /tmp/out"`) or atoms joined with single
//! spaces (`/bin/filer -v`).
//!
//! | form | parameter | default |
//! |---|---|---|
//! | site | `site-name`, `client-port`, `data-port`; `hostname` and/or `inet-address` | required |
//! | site | `latitude` (or the seed's `lattitude`), `longitude` | none |
//! | group | `group-name`, `site` (repeated, at least once), `master-site` | required |
//! | group | `connectivity` | 2 |
//! | group | `ping-period`, `bandwidth-period`, `estimates-period`, `join-period`, `update-period` | 15 s, 60 s, 30 s, 30 s, 120 s |
//! | group | `topology-generator` | none |
//! | group | `flooding` (`tree` or `plain`), `digest-period` | tree, 0.5 s |
//! | local | `data-storage-max` | 16 MiB |
//! | local | `export-command` | none (data is dropped) |
//! | local | `log-purge-period`, `site-purge-period` | 3600 s, 3600 s |
//! | local | `export-directory`, `export-timeout`, `export-bundle-max`, `export-format` | `/`, 60 s, 1 MiB, framed |
//!
//! `flooding`, `digest-period` and the `export-…` parameters other than `export-command`
//! are flotilla's; the rest are the seed's, spelled as it spells them.
//!
//! Every error is a [`SexprError`]: a line and column and what is wrong there. A form is
//! read whole before the next, and references to sites are checked once every form has
//! been read, since a group may name a site defined further down the file.

use core::net::IpAddr;
use core::str::FromStr;
use core::time::Duration;
use std::collections::BTreeMap;

use crate::sexpr::{self, Node, Pos, SexprError, Value};

/// The largest configuration file read, in bytes.
pub const MAX_CONFIG_FILE_BYTES: usize = 4 << 20;
/// The most sites (`(:site-define …)` forms) a file may define.
pub const MAX_SITES: usize = 4096;
/// The most groups (`(:group-define …)` forms) a file may define.
pub const MAX_GROUPS: usize = 256;
/// The longest site or group name, in characters (names are ASCII).
pub const MAX_NAME: usize = 64;

/// Host names longer than this cannot be resolved (RFC 1035's limit).
const MAX_HOSTNAME: usize = 253;
/// A period longer than a day is almost certainly milliseconds written where seconds were
/// meant, and would leave a daemon that practically never pings, joins or purges.
const MAX_PERIOD: Duration = Duration::from_secs(86_400);
const MAX_DATA_STORAGE: i64 = 1 << 40;
const MAX_EXPORT_BUNDLE: i64 = 1 << 32;
/// The most connectivity a topology is asked for: every unit adds links at every site,
/// and sixteen disjoint paths already outlast any plausible set of failures.
const MAX_CONNECTIVITY: i64 = 16;
/// How much of a value written in the file an error message repeats: a hostile file may
/// hold a megabyte-long name.
const SHOWN: usize = 64;

const DEFAULT_CONNECTIVITY: u32 = 2;
const DEFAULT_PING_PERIOD: Duration = Duration::from_secs(15);
const DEFAULT_BANDWIDTH_PERIOD: Duration = Duration::from_secs(60);
const DEFAULT_ESTIMATES_PERIOD: Duration = Duration::from_secs(30);
const DEFAULT_JOIN_PERIOD: Duration = Duration::from_secs(30);
const DEFAULT_UPDATE_PERIOD: Duration = Duration::from_secs(120);
const DEFAULT_DIGEST_PERIOD: Duration = Duration::from_millis(500);
const DEFAULT_DATA_STORAGE_MAX: u64 = 16 << 20;
const DEFAULT_PURGE_PERIOD: Duration = Duration::from_secs(3600);
const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_EXPORT_BUNDLE_MAX: u64 = 1 << 20;

/// A whole configuration file.
#[derive(Clone, Debug, PartialEq)]
pub struct FloodConfig {
    /// Every `(:site-define …)`, in file order.
    pub sites: Vec<SiteDef>,
    /// Every `(:group-define …)`, in file order.
    pub groups: Vec<GroupDef>,
    /// The `(:local …)` form, or every default when the file has none.
    pub local: LocalDef,
}

/// One `(:site-define …)`: a flood daemon somewhere.
#[derive(Clone, Debug, PartialEq)]
pub struct SiteDef {
    /// `site-name`, unique in the file.
    pub name: String,
    /// `hostname`: not always fully qualified, nor resolvable everywhere (hence
    /// `inet_address`). At least one of the two is set.
    pub hostname: Option<String>,
    /// `inet-address`.
    pub inet_address: Option<IpAddr>,
    /// `client-port`: where clients reach this site's command line interface.
    pub client_port: u16,
    /// `data-port`: where other daemons reach this site.
    pub data_port: u16,
    /// `latitude` (or `lattitude`), degrees in -90..=90.
    pub latitude: Option<f64>,
    /// `longitude`, degrees in -180..=180.
    pub longitude: Option<f64>,
    /// Where the form starts in the file.
    pub pos: Pos,
}

/// How a group's updates travel (a flotilla extension).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum FloodMode {
    /// `tree`: each update once along a spanning tree of the topology, digests on the
    /// other links.
    #[default]
    Tree,
    /// `plain`: each update on every link of the topology, as the seed's floodd did.
    Plain,
}

/// How bundled updates are handed to the export command (a flotilla extension).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum ExportFormat {
    /// `framed`: each update, and each report of updates that will not arrive, is
    /// introduced by a header line (see `flood::bundle`).
    #[default]
    Framed,
    /// `raw`: the updates' bytes back to back, as the seed's floodd exported them.
    Raw,
}

/// One `(:group-define …)`: sites that flood to each other over a computed topology.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDef {
    /// `group-name`, unique in the file.
    pub name: String,
    /// Each `(:site …)` in file order, then `master` if no `(:site …)` named it. Every
    /// one is a defined site; none repeats.
    pub sites: Vec<String>,
    /// `master-site`: the site that computes and distributes the topology.
    pub master: String,
    /// `connectivity` of the computed topology, 1..=16 (default 2).
    pub connectivity: u32,
    /// `ping-period`: how often to ping a random site for round-trip time (default 15 s).
    pub ping_period: Duration,
    /// `bandwidth-period`: how often to estimate bandwidth to a random site (default 60 s).
    pub bandwidth_period: Duration,
    /// `estimates-period`: how often to distribute this site's estimates (default 30 s).
    pub estimates_period: Duration,
    /// `join-period`: how often to send a join request (default 30 s).
    pub join_period: Duration,
    /// `update-period`: how often the master recomputes the topology (default 120 s).
    pub update_period: Duration,
    /// `topology-generator`: a shell command that computes the topology instead of the
    /// built-in generator.
    pub topology_generator: Option<String>,
    /// `flooding` (default [`FloodMode::Tree`]).
    pub flooding: FloodMode,
    /// `digest-period`: how often digests of recent updates go out on non-tree links
    /// (default 0.5 s).
    pub digest_period: Duration,
    /// Where the form starts in the file.
    pub pos: Pos,
}

/// The `(:local …)` form: this site's own storage and export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalDef {
    /// `data-storage-max`: bytes held for data in transit, 1..=2^40 (default 16 MiB).
    pub data_storage_max: u64,
    /// `export-command`: a shell command that reads exported updates on its standard
    /// input; without one, data is dropped.
    pub export_command: Option<String>,
    /// `log-purge-period`: how often logs of received data are purged (default 3600 s).
    pub log_purge_period: Duration,
    /// `site-purge-period`: a site not heard from for this long is forgotten (default
    /// 3600 s).
    pub site_purge_period: Duration,
    /// `export-directory`: an absolute path, the export command's working directory
    /// (default `/`).
    pub export_directory: String,
    /// `export-timeout`: how long one export command may run (default 60 s).
    pub export_timeout: Duration,
    /// `export-bundle-max`: the most bytes bundled into one export, 1..=2^32 (default 1 MiB).
    pub export_bundle_max: u64,
    /// `export-format` (default [`ExportFormat::Framed`]).
    pub export_format: ExportFormat,
}

impl Default for LocalDef {
    /// Every default: what a file without `(:local …)` means.
    fn default() -> Self {
        LocalDef {
            data_storage_max: DEFAULT_DATA_STORAGE_MAX,
            export_command: None,
            log_purge_period: DEFAULT_PURGE_PERIOD,
            site_purge_period: DEFAULT_PURGE_PERIOD,
            export_directory: "/".to_string(),
            export_timeout: DEFAULT_EXPORT_TIMEOUT,
            export_bundle_max: DEFAULT_EXPORT_BUNDLE_MAX,
            export_format: ExportFormat::default(),
        }
    }
}

impl FloodConfig {
    /// Reads a configuration file of at most [`MAX_CONFIG_FILE_BYTES`].
    pub fn parse(text: &str) -> Result<Self, SexprError> {
        let forms = sexpr::parse_with_limit(text, MAX_CONFIG_FILE_BYTES)?;
        let mut sites: Vec<SiteDef> = Vec::new();
        // Name → index in `sites`: duplicate and reference checks stay O(log n) however
        // many sites and references a file holds.
        let mut site_index: BTreeMap<String, usize> = BTreeMap::new();
        let mut drafts: Vec<GroupDraft> = Vec::new();
        let mut group_index: BTreeMap<String, usize> = BTreeMap::new();
        let mut local: Option<(LocalDef, Pos)> = None;
        for form in &forms {
            match form.head() {
                Some("site-define") => {
                    if sites.len() >= MAX_SITES {
                        return Err(SexprError::new(
                            form.pos,
                            format!("too many sites: a file defines at most {MAX_SITES}"),
                        ));
                    }
                    let (site, name_pos) = read_site(form)?;
                    if let Some(&first) = site_index.get(&site.name) {
                        return Err(SexprError::new(
                            name_pos,
                            format!(
                                "site {} is defined twice (first at {})",
                                site.name, sites[first].pos
                            ),
                        ));
                    }
                    site_index.insert(site.name.clone(), sites.len());
                    sites.push(site);
                }
                Some("group-define") => {
                    if drafts.len() >= MAX_GROUPS {
                        return Err(SexprError::new(
                            form.pos,
                            format!("too many groups: a file defines at most {MAX_GROUPS}"),
                        ));
                    }
                    let (draft, name_pos) = read_group(form)?;
                    if let Some(&first) = group_index.get(&draft.group.name) {
                        return Err(SexprError::new(
                            name_pos,
                            format!(
                                "group {} is defined twice (first at {})",
                                draft.group.name, drafts[first].group.pos
                            ),
                        ));
                    }
                    group_index.insert(draft.group.name.clone(), drafts.len());
                    drafts.push(draft);
                }
                Some("local") => {
                    if let Some((_, first)) = &local {
                        return Err(SexprError::new(
                            form.pos,
                            format!(
                                "a second (:local ...) form (the first is at {first}): give every local parameter in one"
                            ),
                        ));
                    }
                    local = Some((read_local(form)?, form.pos));
                }
                Some(other) => {
                    return Err(SexprError::new(
                        form.pos,
                        format!("unknown form (:{} ...): {TOP_LEVEL}", shown(other)),
                    ));
                }
                None => {
                    return Err(SexprError::new(
                        form.pos,
                        format!("{TOP_LEVEL}, found {}", form.describe()),
                    ));
                }
            }
        }
        let mut groups = Vec::with_capacity(drafts.len());
        for draft in drafts {
            groups.push(draft.resolve(&site_index)?);
        }
        Ok(FloodConfig {
            sites,
            groups,
            local: local.map(|(l, _)| l).unwrap_or_default(),
        })
    }

    /// Reads a configuration file from its bytes: text that is not UTF-8 is an error at
    /// the first bad byte's line and column.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, SexprError> {
        Self::parse(sexpr::file_text(bytes, MAX_CONFIG_FILE_BYTES)?)
    }

    /// The site named `name`.
    pub fn site(&self, name: &str) -> Option<&SiteDef> {
        self.sites.iter().find(|s| s.name == name)
    }

    /// The group named `name`.
    pub fn group(&self, name: &str) -> Option<&GroupDef> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// The site whose `hostname` equals `host` (case-insensitive, also matching when one is
    /// the other's first label, e.g. "inferno" vs "inferno.example.org"); None if none or
    /// ambiguous.
    ///
    /// An exact match wins over a first-label one, so sites `inferno` and
    /// `inferno.example.org` are both found by their full names. A trailing root dot
    /// (`inferno.example.org.`) is ignored on either side.
    pub fn site_for_host(&self, host: &str) -> Option<&SiteDef> {
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.is_empty() {
            return None;
        }
        let named = || {
            self.sites.iter().filter_map(|s| {
                let h = s.hostname.as_deref()?;
                Some((s, h.strip_suffix('.').unwrap_or(h)))
            })
        };
        match only(named().filter(|(_, h)| h.eq_ignore_ascii_case(host))) {
            Only::One((s, _)) => Some(s),
            Only::Many => None,
            Only::None => match only(named().filter(|(_, h)| {
                first_label(h).eq_ignore_ascii_case(host)
                    || first_label(host).eq_ignore_ascii_case(h)
            })) {
                Only::One((s, _)) => Some(s),
                Only::None | Only::Many => None,
            },
        }
    }

    /// Groups the named site belongs to.
    pub fn groups_of<'a>(&'a self, site: &'a str) -> impl Iterator<Item = &'a GroupDef> + 'a {
        self.groups
            .iter()
            .filter(move |g| g.sites.iter().any(|s| s == site))
    }
}

const TOP_LEVEL: &str = "expected (:site-define ...), (:group-define ...) or (:local ...)";

enum Only<T> {
    None,
    One(T),
    Many,
}

fn only<T>(mut it: impl Iterator<Item = T>) -> Only<T> {
    match (it.next(), it.next()) {
        (None, _) => Only::None,
        (Some(x), None) => Only::One(x),
        (Some(_), Some(_)) => Only::Many,
    }
}

fn first_label(host: &str) -> &str {
    host.split('.').next().unwrap_or(host)
}

/// At most [`SHOWN`] characters of `s`, marked when cut.
fn shown(s: &str) -> String {
    match s.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

/// The parameters one kind of top-level form accepts.
struct Kind {
    head: &'static str,
    params: &'static [&'static str],
    /// Other spellings of a parameter: the seed's manual writes `lattitude`, and files
    /// written from it should still be read.
    aliases: &'static [(&'static str, &'static str)],
    /// Parameters that may be given more than once.
    repeatable: &'static [&'static str],
}

const SITE: Kind = Kind {
    head: "site-define",
    params: &[
        "site-name",
        "hostname",
        "inet-address",
        "client-port",
        "data-port",
        "latitude",
        "longitude",
    ],
    aliases: &[("lattitude", "latitude")],
    repeatable: &[],
};

const GROUP: Kind = Kind {
    head: "group-define",
    params: &[
        "group-name",
        "site",
        "master-site",
        "connectivity",
        "ping-period",
        "bandwidth-period",
        "estimates-period",
        "join-period",
        "update-period",
        "topology-generator",
        "flooding",
        "digest-period",
    ],
    aliases: &[],
    repeatable: &["site"],
};

const LOCAL: Kind = Kind {
    head: "local",
    params: &[
        "data-storage-max",
        "export-command",
        "log-purge-period",
        "site-purge-period",
        "export-directory",
        "export-timeout",
        "export-bundle-max",
        "export-format",
    ],
    aliases: &[],
    repeatable: &[],
};

impl Kind {
    fn canonical(&self, written: &str) -> Option<&'static str> {
        self.params
            .iter()
            .copied()
            .find(|p| *p == written)
            .or_else(|| {
                self.aliases
                    .iter()
                    .find(|(alias, _)| *alias == written)
                    .map(|(_, p)| *p)
            })
    }

    /// The accepted names, for the message about an unknown one.
    fn accepted(&self) -> String {
        let names: Vec<String> = self
            .params
            .iter()
            .map(|p| {
                let also: Vec<&str> = self
                    .aliases
                    .iter()
                    .filter(|(_, c)| c == p)
                    .map(|(a, _)| *a)
                    .collect();
                if also.is_empty() {
                    p.to_string()
                } else {
                    format!("{p} (or {})", also.join(", "))
                }
            })
            .collect();
        names.join(", ")
    }

    fn missing(&self, form: &Node, name: Option<&str>, param: &str) -> SexprError {
        let what = match (self.head, name) {
            ("site-define", Some(n)) => format!("(:site-define ...) for site {n}"),
            ("group-define", Some(n)) => format!("(:group-define ...) for group {n}"),
            (head, _) => format!("(:{head} ...)"),
        };
        SexprError::new(
            form.pos,
            format!("{what} is missing required parameter {param}"),
        )
    }
}

/// One `(:name value…)` inside a top-level form.
struct Param<'a> {
    /// The name as the parameter table spells it.
    name: &'static str,
    /// The name as the file spells it, which is what messages repeat.
    written: &'a str,
    node: &'a Node,
}

/// Calls `f` with each parameter of `form` in file order, after refusing an item that is
/// not a parameter, an unknown parameter, or one given twice.
fn each_param<'a>(
    form: &'a Node,
    kind: &Kind,
    mut f: impl FnMut(Param<'a>) -> Result<(), SexprError>,
) -> Result<(), SexprError> {
    let mut seen: Vec<(&'static str, Pos)> = Vec::new();
    for item in form.args() {
        let Some(written) = item.head() else {
            return Err(SexprError::new(
                item.pos,
                format!(
                    "expected a parameter such as (:{} ...) in (:{} ...), found {}",
                    kind.params[0],
                    kind.head,
                    item.describe()
                ),
            ));
        };
        let Some(name) = kind.canonical(written) else {
            return Err(SexprError::new(
                item.pos,
                format!(
                    "unknown parameter :{} in (:{} ...): accepted are {}",
                    shown(written),
                    kind.head,
                    kind.accepted()
                ),
            ));
        };
        if !kind.repeatable.contains(&name) {
            if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
                let label = if written == name {
                    name.to_string()
                } else {
                    format!("{written} (that is, {name})")
                };
                return Err(SexprError::new(
                    item.pos,
                    format!(
                        "parameter {label} is given twice in (:{} ...) (first at {first})",
                        kind.head
                    ),
                ));
            }
            seen.push((name, item.pos));
        }
        f(Param {
            name,
            written,
            node: item,
        })?;
    }
    Ok(())
}

impl<'a> Param<'a> {
    fn err(&self, at: Pos, message: impl core::fmt::Display) -> SexprError {
        SexprError::new(at, format!("{}: {message}", self.written))
    }

    /// Puts the parameter's name in front of an error from the reader's value helpers.
    fn wrap(&self, e: SexprError) -> SexprError {
        self.err(e.pos, e.message)
    }

    /// The only value.
    fn one(&self) -> Result<&'a Node, SexprError> {
        match self.node.args() {
            [v] => Ok(v),
            [] => Err(SexprError::new(
                self.node.pos,
                format!("(:{}) needs a value", self.written),
            )),
            [_, extra, ..] => Err(self.err(
                extra.pos,
                format!("takes one value, found {}", self.node.args().len()),
            )),
        }
    }

    fn text(&self) -> Result<(String, &'a Node), SexprError> {
        let v = self.one()?;
        Ok((v.text().map_err(|e| self.wrap(e))?, v))
    }

    /// A site or group name.
    fn name(&self) -> Result<(String, Pos), SexprError> {
        let (s, v) = self.text()?;
        check_name(&s).map_err(|why| self.err(v.pos, why))?;
        Ok((s, v.pos))
    }

    fn int(&self, lo: i64, hi: i64) -> Result<i64, SexprError> {
        self.one()?.int_in(lo, hi).map_err(|e| self.wrap(e))
    }

    fn float_in(&self, lo: f64, hi: f64) -> Result<f64, SexprError> {
        let v = self.one()?;
        let x = match v.value {
            Value::Int(i) => i as f64,
            Value::Float(f) => f,
            _ => {
                return Err(self.err(v.pos, format!("expected a number, found {}", v.describe())));
            }
        };
        // NaN is not a number a file can spell, but `1e999` reads as infinity: both fail
        // the range test.
        if !(lo..=hi).contains(&x) {
            return Err(self.err(
                v.pos,
                format!("{} is out of range {lo}..={hi}", shown(&v.to_string())),
            ));
        }
        Ok(x)
    }

    fn period(&self) -> Result<Duration, SexprError> {
        let v = self.one()?;
        let out_of_range = || {
            self.err(
                v.pos,
                format!(
                    "{} is out of range: more than 0 and at most {} seconds",
                    shown(&v.to_string()),
                    MAX_PERIOD.as_secs()
                ),
            )
        };
        // The reader's own complaint about a negative number ("duration out of range")
        // does not say what the range is.
        if let Value::Int(_) | Value::Float(_) = v.value {
            let secs = v.number().map_err(|_| out_of_range())?;
            if secs <= 0.0 || secs > MAX_PERIOD.as_secs_f64() {
                return Err(out_of_range());
            }
        }
        let d = v.duration().map_err(|e| self.wrap(e))?;
        // Checked again as a Duration: `1e-12` is more than zero but rounds to nothing,
        // and `25h` passes the numeric test above as a symbol.
        if d.is_zero() || d > MAX_PERIOD {
            return Err(out_of_range());
        }
        Ok(d)
    }

    /// A shell command: one string, or atoms joined with single spaces.
    fn command(&self) -> Result<String, SexprError> {
        let values = self.node.args();
        let Some(first) = values.first() else {
            return Err(SexprError::new(
                self.node.pos,
                format!("(:{}) needs a shell command", self.written),
            ));
        };
        let mut parts = Vec::with_capacity(values.len());
        for v in values {
            parts.push(match &v.value {
                // `-x :y` is a plausible argument list; a keyword is kept as written.
                Value::Keyword(k) => format!(":{k}"),
                Value::List(_) => {
                    return Err(self.err(
                        v.pos,
                        "a shell command is atoms or a string, found a list: write it as a string if it needs parentheses",
                    ));
                }
                _ => v.text().map_err(|e| self.wrap(e))?,
            });
        }
        let command = parts.join(" ");
        if command.trim().is_empty() {
            return Err(self.err(first.pos, "the shell command is empty"));
        }
        // A NUL cannot reach exec, and would otherwise fail only when the first export runs.
        if command.contains('\0') {
            return Err(self.err(first.pos, "a shell command cannot contain a NUL character"));
        }
        Ok(command)
    }

    fn choice<T: Copy>(&self, choices: &[(&str, T)]) -> Result<T, SexprError> {
        let (s, v) = self.text()?;
        choices
            .iter()
            .find(|(c, _)| *c == s)
            .map(|(_, t)| *t)
            .ok_or_else(|| {
                let names: Vec<&str> = choices.iter().map(|(c, _)| *c).collect();
                self.err(
                    v.pos,
                    format!("expected {}, found '{}'", names.join(" or "), shown(&s)),
                )
            })
    }
}

fn check_name(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("a name cannot be empty".to_string());
    }
    if let Some(c) = s
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "_.-".contains(c)))
    {
        return Err(format!(
            "'{}' is not a valid name: {c:?} is not allowed (use letters, digits, '_', '.' and '-')",
            shown(s)
        ));
    }
    if s.len() > MAX_NAME {
        return Err(format!(
            "'{}' is {} characters long: a name has at most {MAX_NAME}",
            shown(s),
            s.len()
        ));
    }
    Ok(())
}

fn check_hostname(s: &str) -> Result<(), String> {
    if s.len() > MAX_HOSTNAME {
        return Err(format!(
            "'{}' is {} characters long: a host name has at most {MAX_HOSTNAME}",
            shown(s),
            s.len()
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "_.-".contains(c)))
    {
        return Err(format!(
            "'{}' is not a valid host name: {c:?} is not allowed (use letters, digits, '_', '.' and '-')",
            shown(s)
        ));
    }
    // One trailing dot is the DNS root, and is allowed; any other empty label is a typo.
    let labels = s.strip_suffix('.').unwrap_or(s);
    if labels.is_empty() || labels.split('.').any(str::is_empty) {
        return Err(format!(
            "'{}' is not a valid host name: it has an empty label",
            shown(s)
        ));
    }
    Ok(())
}

fn read_site(form: &Node) -> Result<(SiteDef, Pos), SexprError> {
    let mut name: Option<(String, Pos)> = None;
    let mut hostname = None;
    let mut inet_address = None;
    let mut client_port = None;
    let mut data_port = None;
    let mut latitude = None;
    let mut longitude = None;
    each_param(form, &SITE, |p| {
        match p.name {
            "site-name" => name = Some(p.name()?),
            "hostname" => {
                let (h, v) = p.text()?;
                check_hostname(&h).map_err(|why| p.err(v.pos, why))?;
                hostname = Some(h);
            }
            "inet-address" => {
                let v = p.one()?;
                let text = match &v.value {
                    // The reader takes `::1` for the keyword named `:1`: put the colon back.
                    Value::Keyword(k) => format!(":{k}"),
                    _ => v.text().map_err(|e| p.wrap(e))?,
                };
                let addr = IpAddr::from_str(&text).map_err(|_| {
                    p.err(
                        v.pos,
                        format!("'{}' is not an IPv4 or IPv6 address", shown(&text)),
                    )
                })?;
                inet_address = Some(addr);
            }
            "client-port" => client_port = Some(p.int(1, 65535)? as u16),
            "data-port" => data_port = Some(p.int(1, 65535)? as u16),
            "latitude" => latitude = Some(p.float_in(-90.0, 90.0)?),
            "longitude" => longitude = Some(p.float_in(-180.0, 180.0)?),
            _ => return Err(unhandled(&p)),
        }
        Ok(())
    })?;
    let Some((name, name_pos)) = name else {
        return Err(SITE.missing(form, None, "site-name"));
    };
    let n = Some(name.as_str());
    let client_port = client_port.ok_or_else(|| SITE.missing(form, n, "client-port"))?;
    let data_port = data_port.ok_or_else(|| SITE.missing(form, n, "data-port"))?;
    if hostname.is_none() && inet_address.is_none() {
        return Err(SexprError::new(
            form.pos,
            format!(
                "(:site-define ...) for site {name} needs hostname or inet-address (or both), to be reachable"
            ),
        ));
    }
    Ok((
        SiteDef {
            name,
            hostname,
            inet_address,
            client_port,
            data_port,
            latitude,
            longitude,
            pos: form.pos,
        },
        name_pos,
    ))
}

/// A parameter the table accepts but the reader has no arm for: a bug here, reported as
/// an unknown parameter rather than a panic.
fn unhandled(p: &Param<'_>) -> SexprError {
    SexprError::new(p.node.pos, format!("unknown parameter :{}", p.written))
}

/// A group as read, its site references not yet checked against the whole file.
struct GroupDraft {
    group: GroupDef,
    /// Every site named, `(:site …)` and `master-site` alike, in file order, so that the
    /// first bad reference in the file is the one reported.
    refs: Vec<(String, Pos, &'static str)>,
}

impl GroupDraft {
    fn resolve(mut self, sites: &BTreeMap<String, usize>) -> Result<GroupDef, SexprError> {
        for (name, pos, param) in &self.refs {
            if !sites.contains_key(name) {
                return Err(SexprError::new(
                    *pos,
                    format!(
                        "{param}: group {} names site {name}, which no (:site-define ...) defines",
                        self.group.name
                    ),
                ));
            }
        }
        if !self.group.sites.contains(&self.group.master) {
            self.group.sites.push(self.group.master.clone());
        }
        Ok(self.group)
    }
}

fn read_group(form: &Node) -> Result<(GroupDraft, Pos), SexprError> {
    let mut name: Option<(String, Pos)> = None;
    let mut sites: Vec<String> = Vec::new();
    let mut listed: BTreeMap<String, Pos> = BTreeMap::new();
    let mut refs = Vec::new();
    let mut master = None;
    let mut connectivity = DEFAULT_CONNECTIVITY;
    let mut ping_period = DEFAULT_PING_PERIOD;
    let mut bandwidth_period = DEFAULT_BANDWIDTH_PERIOD;
    let mut estimates_period = DEFAULT_ESTIMATES_PERIOD;
    let mut join_period = DEFAULT_JOIN_PERIOD;
    let mut update_period = DEFAULT_UPDATE_PERIOD;
    let mut topology_generator = None;
    let mut flooding = FloodMode::default();
    let mut digest_period = DEFAULT_DIGEST_PERIOD;
    each_param(form, &GROUP, |p| {
        match p.name {
            "group-name" => name = Some(p.name()?),
            "site" => {
                let (site, pos) = p.name()?;
                if let Some(first) = listed.get(&site) {
                    return Err(p.err(
                        pos,
                        format!("site {site} is listed twice (first at {first})"),
                    ));
                }
                listed.insert(site.clone(), pos);
                refs.push((site.clone(), pos, "site"));
                sites.push(site);
            }
            "master-site" => {
                let (site, pos) = p.name()?;
                refs.push((site.clone(), pos, "master-site"));
                master = Some(site);
            }
            "connectivity" => connectivity = p.int(1, MAX_CONNECTIVITY)? as u32,
            "ping-period" => ping_period = p.period()?,
            "bandwidth-period" => bandwidth_period = p.period()?,
            "estimates-period" => estimates_period = p.period()?,
            "join-period" => join_period = p.period()?,
            "update-period" => update_period = p.period()?,
            "topology-generator" => topology_generator = Some(p.command()?),
            "flooding" => {
                flooding = p.choice(&[("tree", FloodMode::Tree), ("plain", FloodMode::Plain)])?;
            }
            "digest-period" => digest_period = p.period()?,
            _ => return Err(unhandled(&p)),
        }
        Ok(())
    })?;
    let Some((name, name_pos)) = name else {
        return Err(GROUP.missing(form, None, "group-name"));
    };
    if sites.is_empty() {
        return Err(GROUP.missing(form, Some(&name), "site"));
    }
    let Some(master) = master else {
        return Err(GROUP.missing(form, Some(&name), "master-site"));
    };
    let group = GroupDef {
        name,
        sites,
        master,
        connectivity,
        ping_period,
        bandwidth_period,
        estimates_period,
        join_period,
        update_period,
        topology_generator,
        flooding,
        digest_period,
        pos: form.pos,
    };
    Ok((GroupDraft { group, refs }, name_pos))
}

fn read_local(form: &Node) -> Result<LocalDef, SexprError> {
    let mut local = LocalDef::default();
    each_param(form, &LOCAL, |p| {
        match p.name {
            "data-storage-max" => local.data_storage_max = p.int(1, MAX_DATA_STORAGE)? as u64,
            "export-command" => local.export_command = Some(p.command()?),
            "log-purge-period" => local.log_purge_period = p.period()?,
            "site-purge-period" => local.site_purge_period = p.period()?,
            "export-directory" => {
                let (dir, v) = p.text()?;
                // The daemon may be started from anywhere: a relative directory would
                // mean a different place each time.
                if !dir.starts_with('/') {
                    return Err(p.err(v.pos, format!("'{}' is not an absolute path", shown(&dir))));
                }
                if dir.contains('\0') {
                    return Err(p.err(v.pos, "a path cannot contain a NUL character"));
                }
                local.export_directory = dir;
            }
            "export-timeout" => local.export_timeout = p.period()?,
            "export-bundle-max" => local.export_bundle_max = p.int(1, MAX_EXPORT_BUNDLE)? as u64,
            "export-format" => {
                local.export_format =
                    p.choice(&[("framed", ExportFormat::Framed), ("raw", ExportFormat::Raw)])?;
            }
            _ => return Err(unhandled(&p)),
        }
        Ok(())
    })?;
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use proptest::prelude::*;

    /// Seed 002's example configuration, line breaks restored (the seed text lost them),
    /// otherwise exactly as the seed gives it.
    const SEED_EXAMPLE: &str = r";;; This file contains a minimal configuration for a non master site
;;; replica. A non master site must know who it is, and who the master
;;; site or at least one other site that it send it join request to.
;;;
;;; # The master site.
;;; At minimum we need the site-name, the hostname, and the client and
;;; data ports.
(:site-define (:site-name master)
              (:hostname valhalla)
              (:client-port 2000)
              (:data-port 2001))
; The second site.
(:site-define (:site-name inferno)
              (:hostname inferno)
              (:client-port 2000)
              (:data-port 2001))
;;; Initially the group contains the `master' site and one other site.
;;; At minimum we need a group name and a site.
;;;
(:group-define (:group-name mirror-1)
               (:site master)
               (:site inferno)
               (:ping-period 15.0)
               (:bandwidth-period 60.0)
               (:estimates-period 30.0)
               (:update-period 120)
               (:master-site master))
;;; Set some parameters for the local site.
;;; At minimum, we need to export the data.
(:local (:export-command /homes/dante/mirrord/inferno/bin/filer)
        (:site-purge-period 600))
";

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// The error a text gives, as a person reads it: `line:col: message`.
    fn err(text: &str) -> String {
        FloodConfig::parse(text).unwrap_err().to_string()
    }

    const SITES: &str =
        "(:site-define (:site-name a) (:hostname a) (:client-port 1) (:data-port 2))
(:site-define (:site-name b) (:hostname b) (:client-port 1) (:data-port 2))
";

    fn with_sites(rest: &str) -> String {
        format!("{SITES}{rest}")
    }

    #[test]
    fn reads_the_seed_example() {
        let c = FloodConfig::parse(SEED_EXAMPLE).unwrap();
        assert_eq!(
            c.sites,
            [
                SiteDef {
                    name: "master".into(),
                    hostname: Some("valhalla".into()),
                    inet_address: None,
                    client_port: 2000,
                    data_port: 2001,
                    latitude: None,
                    longitude: None,
                    pos: Pos { line: 8, col: 1 },
                },
                SiteDef {
                    name: "inferno".into(),
                    hostname: Some("inferno".into()),
                    inet_address: None,
                    client_port: 2000,
                    data_port: 2001,
                    latitude: None,
                    longitude: None,
                    pos: Pos { line: 13, col: 1 },
                },
            ]
        );
        assert_eq!(
            c.groups,
            [GroupDef {
                name: "mirror-1".into(),
                sites: vec!["master".into(), "inferno".into()],
                master: "master".into(),
                connectivity: 2,
                ping_period: secs(15),
                bandwidth_period: secs(60),
                estimates_period: secs(30),
                join_period: secs(30),
                update_period: secs(120),
                topology_generator: None,
                flooding: FloodMode::Tree,
                digest_period: Duration::from_millis(500),
                pos: Pos { line: 20, col: 1 },
            }]
        );
        assert_eq!(
            c.local,
            LocalDef {
                data_storage_max: 16 * 1024 * 1024,
                export_command: Some("/homes/dante/mirrord/inferno/bin/filer".into()),
                log_purge_period: secs(3600),
                site_purge_period: secs(600),
                export_directory: "/".into(),
                export_timeout: secs(60),
                export_bundle_max: 1024 * 1024,
                export_format: ExportFormat::Framed,
            }
        );
        assert_eq!(
            c.site("inferno").unwrap().hostname.as_deref(),
            Some("inferno")
        );
        assert_eq!(c.group("mirror-1").unwrap().master, "master");
        assert!(c.site("nowhere").is_none() && c.group("mirror-2").is_none());
        let of: Vec<&str> = c.groups_of("inferno").map(|g| g.name.as_str()).collect();
        assert_eq!(of, ["mirror-1"]);
        assert_eq!(
            c.groups_of("valhalla").count(),
            0,
            "a host name is not a site name"
        );
        assert_eq!(FloodConfig::parse_bytes(SEED_EXAMPLE.as_bytes()), Ok(c));
    }

    #[test]
    fn defaults() {
        let c = FloodConfig::parse(&with_sites(
            "(:group-define (:group-name g) (:site b) (:master-site a))",
        ))
        .unwrap();
        let g = &c.groups[0];
        assert_eq!(
            g.sites,
            ["b", "a"],
            "the master joins the sites it was not listed in"
        );
        assert_eq!(g.connectivity, 2);
        assert_eq!(
            [
                g.ping_period,
                g.bandwidth_period,
                g.estimates_period,
                g.join_period,
                g.update_period
            ],
            [secs(15), secs(60), secs(30), secs(30), secs(120)]
        );
        assert_eq!(
            (g.topology_generator.as_deref(), g.flooding),
            (None, FloodMode::Tree)
        );
        assert_eq!(g.digest_period, Duration::from_millis(500));
        assert_eq!(c.local, LocalDef::default());
        assert_eq!(c.local.data_storage_max, 16777216);
        assert_eq!(c.local.export_command, None);
        assert_eq!(
            (c.local.log_purge_period, c.local.site_purge_period),
            (secs(3600), secs(3600))
        );
        assert_eq!(c.local.export_directory, "/");
        assert_eq!(c.local.export_timeout, secs(60));
        assert_eq!(c.local.export_bundle_max, 1048576);
        assert_eq!(c.local.export_format, ExportFormat::Framed);
        let empty = FloodConfig::parse("; nothing but a comment\n").unwrap();
        assert!(empty.sites.is_empty() && empty.groups.is_empty());
        assert_eq!(
            FloodConfig::parse("(:local)").unwrap().local,
            LocalDef::default()
        );
    }

    #[test]
    fn every_parameter_set() {
        let c = FloodConfig::parse(&with_sites(
            "(:site-define (:site-name far) (:inet-address 10.0.0.7) (:client-port 65535)
                (:data-port 1) (:latitude -43.5) (:longitude 172))
             (:site-define (:site-name v6) (:inet-address ::1) (:hostname v6.example.org.)
                (:client-port 9) (:data-port 10))
             (:group-define (:group-name g) (:site a) (:site far) (:master-site far)
                (:connectivity 16) (:ping-period 0.25) (:bandwidth-period 250ms)
                (:estimates-period 2m) (:join-period 1h) (:update-period 86400)
                (:topology-generator \"topo --k 3\") (:flooding plain) (:digest-period 1e-3))
             (:local (:data-storage-max 1099511627776) (:export-command cat)
                (:log-purge-period 1.5) (:site-purge-period 30s)
                (:export-directory \"/var/spool/flood d\") (:export-timeout 5)
                (:export-bundle-max 4294967296) (:export-format raw))",
        ))
        .unwrap();
        let far = c.site("far").unwrap();
        assert_eq!(far.inet_address, Some("10.0.0.7".parse().unwrap()));
        assert_eq!(
            (far.hostname.as_deref(), far.client_port, far.data_port),
            (None, 65535, 1)
        );
        assert_eq!((far.latitude, far.longitude), (Some(-43.5), Some(172.0)));
        let v6 = c.site("v6").unwrap();
        assert_eq!(v6.inet_address, Some("::1".parse().unwrap()));
        assert_eq!(v6.hostname.as_deref(), Some("v6.example.org."));
        let g = c.group("g").unwrap();
        assert_eq!(g.sites, ["a", "far"]);
        assert_eq!(g.connectivity, 16);
        assert_eq!(
            [
                g.ping_period,
                g.bandwidth_period,
                g.estimates_period,
                g.join_period,
                g.update_period
            ],
            [
                Duration::from_millis(250),
                Duration::from_millis(250),
                secs(120),
                secs(3600),
                secs(86400)
            ]
        );
        assert_eq!(g.topology_generator.as_deref(), Some("topo --k 3"));
        assert_eq!(g.flooding, FloodMode::Plain);
        assert_eq!(g.digest_period, Duration::from_millis(1));
        assert_eq!(
            c.local,
            LocalDef {
                data_storage_max: 1 << 40,
                export_command: Some("cat".into()),
                log_purge_period: Duration::from_millis(1500),
                site_purge_period: secs(30),
                export_directory: "/var/spool/flood d".into(),
                export_timeout: secs(5),
                export_bundle_max: 1 << 32,
                export_format: ExportFormat::Raw,
            }
        );
        let of: Vec<&str> = c.groups_of("far").map(|g| g.name.as_str()).collect();
        assert_eq!(of, ["g"]);
        assert_eq!(c.groups_of("b").count(), 0);
    }

    #[test]
    fn fractional_periods() {
        let period = |v: &str| {
            FloodConfig::parse(&with_sites(&format!(
                "(:group-define (:group-name g) (:site a) (:master-site a) (:ping-period {v}))"
            )))
            .map(|c| c.groups[0].ping_period)
        };
        assert_eq!(period("15.0"), Ok(secs(15)));
        assert_eq!(period("120"), Ok(secs(120)));
        assert_eq!(period("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(period("1.5e1"), Ok(secs(15)));
        assert_eq!(period("0.000001"), Ok(Duration::from_micros(1)));
        assert_eq!(period("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(period("1.5m"), Ok(secs(90)));
        assert_eq!(period("24h"), Ok(secs(86400)));
        assert_eq!(period("86400.0"), Ok(secs(86400)));
    }

    #[test]
    fn shell_commands() {
        let command = |v: &str| {
            FloodConfig::parse(&format!("(:local (:export-command {v}))"))
                .map(|c| c.local.export_command.unwrap())
                .map_err(|e| e.to_string())
        };
        // A symbol with slashes, as the seed writes it.
        assert_eq!(
            command("/homes/dante/mirrord/inferno/bin/filer").unwrap(),
            "/homes/dante/mirrord/inferno/bin/filer"
        );
        // A string carries what the reader would split or refuse: `>>`, `;`, parentheses.
        assert_eq!(command(r#""cat >> /tmp/out""#).unwrap(), "cat >> /tmp/out");
        assert_eq!(command(r#""a; (b) \"c\"""#).unwrap(), r#"a; (b) "c""#);
        // Several atoms are joined with single spaces, numbers and keywords as written.
        assert_eq!(command("/bin/filer -v").unwrap(), "/bin/filer -v");
        assert_eq!(
            command("/bin/filer\n   -v   2.50 :x 10.0.0.1 \"a b\"").unwrap(),
            "/bin/filer -v 2.50 :x 10.0.0.1 a b"
        );
        assert_eq!(command("cat >> /tmp/out").unwrap(), "cat >> /tmp/out");
        assert_eq!(
            command("/bin/filer (x)").unwrap_err(),
            "1:37: export-command: a shell command is atoms or a string, found a list: write it as a string if it needs parentheses"
        );
        assert_eq!(
            command(r#"" ""#).unwrap_err(),
            "1:26: export-command: the shell command is empty"
        );
        assert_eq!(
            command("/bin/x \"a\0b\"").unwrap_err(),
            "1:26: export-command: a shell command cannot contain a NUL character"
        );
        let topo = FloodConfig::parse(&with_sites(
            "(:group-define (:group-name g) (:site a) (:master-site a) (:topology-generator /usr/lib/flood/mst --k 2))",
        ))
        .unwrap();
        assert_eq!(
            topo.groups[0].topology_generator.as_deref(),
            Some("/usr/lib/flood/mst --k 2")
        );
        assert_eq!(
            err("(:local (:export-command))"),
            "1:9: (:export-command) needs a shell command"
        );
    }

    #[test]
    fn lattitude_is_latitude() {
        let c = FloodConfig::parse(
            "(:site-define (:site-name s) (:hostname s) (:client-port 1) (:data-port 2)
               (:lattitude 43.66) (:longitude -79.39))",
        )
        .unwrap();
        assert_eq!(
            (c.sites[0].latitude, c.sites[0].longitude),
            (Some(43.66), Some(-79.39))
        );
        assert_eq!(
            err("(:site-define (:latitude 1) (:lattitude 2))"),
            "1:29: parameter lattitude (that is, latitude) is given twice in (:site-define ...) (first at 1:15)"
        );
    }

    #[test]
    fn site_for_host() {
        let site = |name: &str, host: &str| {
            format!(
                "(:site-define (:site-name {name}) (:hostname {host}) (:client-port 1) (:data-port 2))\n"
            )
        };
        let text = [
            site("a", "inferno"),
            site("b", "valhalla.example.org"),
            site("c", "odin.example.org."),
            "(:site-define (:site-name d) (:inet-address 10.1.2.3) (:client-port 1) (:data-port 2))\n".into(),
            site("e", "twin.example.org"),
            site("f", "twin.example.net"),
            site("g", "loki"),
            site("h", "loki.example.org"),
        ]
        .concat();
        let c = FloodConfig::parse(&text).unwrap();
        let found = |host: &str| c.site_for_host(host).map(|s| s.name.as_str());
        assert_eq!(found("inferno"), Some("a"));
        assert_eq!(found("INFERNO"), Some("a"));
        assert_eq!(found("inferno.example.org"), Some("a"));
        assert_eq!(found("valhalla"), Some("b"));
        assert_eq!(found("Valhalla.Example.Org"), Some("b"));
        assert_eq!(found("valhalla.example.org."), Some("b"));
        assert_eq!(
            found("valhalla.other.org"),
            None,
            "neither is the other's first label"
        );
        assert_eq!(found("odin"), Some("c"));
        assert_eq!(found("odin.example.org"), Some("c"));
        assert_eq!(found("10.1.2.3"), None, "an address is not a host name");
        assert_eq!(found("twin"), None, "two sites match: ambiguous");
        assert_eq!(found("twin.example.org"), Some("e"));
        assert_eq!(found("loki"), Some("g"), "an exact match wins");
        assert_eq!(found("loki.example.org"), Some("h"), "an exact match wins");
        assert_eq!(found("loki.example.com"), Some("g"));
        assert_eq!(found("nowhere"), None);
        assert_eq!(found(""), None);
        assert_eq!(found("."), None);
        let same = [site("x", "dup"), site("y", "DUP")].concat();
        assert_eq!(
            FloodConfig::parse(&same).unwrap().site_for_host("dup"),
            None
        );
    }

    #[test]
    fn unknown_forms_and_parameters() {
        assert_eq!(
            err("; first\n  (:site-defne (:site-name a))"),
            "2:3: unknown form (:site-defne ...): expected (:site-define ...), (:group-define ...) or (:local ...)"
        );
        assert_eq!(
            err("master"),
            "1:1: expected (:site-define ...), (:group-define ...) or (:local ...), found a symbol"
        );
        assert_eq!(
            err("((:local))"),
            "1:1: expected (:site-define ...), (:group-define ...) or (:local ...), found a list"
        );
        assert_eq!(
            err("(:site-define (:site-name a)\n  (:host-name a))"),
            "2:3: unknown parameter :host-name in (:site-define ...): accepted are site-name, hostname, inet-address, client-port, data-port, latitude (or lattitude), longitude"
        );
        assert_eq!(
            err("(:group-define (:ping 1))"),
            "1:16: unknown parameter :ping in (:group-define ...): accepted are group-name, site, master-site, connectivity, ping-period, bandwidth-period, estimates-period, join-period, update-period, topology-generator, flooding, digest-period"
        );
        assert_eq!(
            err("(:local (:export-dir /))"),
            "1:9: unknown parameter :export-dir in (:local ...): accepted are data-storage-max, export-command, log-purge-period, site-purge-period, export-directory, export-timeout, export-bundle-max, export-format"
        );
        assert_eq!(
            err("(:site-define master)"),
            "1:15: expected a parameter such as (:site-name ...) in (:site-define ...), found a symbol"
        );
    }

    #[test]
    fn duplicate_parameters() {
        assert_eq!(
            err("(:site-define (:site-name a)\n   (:client-port 1)\n   (:client-port 2))"),
            "3:4: parameter client-port is given twice in (:site-define ...) (first at 2:4)"
        );
        assert_eq!(
            err(&with_sites(
                "(:group-define (:group-name g) (:master-site a) (:master-site b))"
            )),
            "3:49: parameter master-site is given twice in (:group-define ...) (first at 3:32)"
        );
        assert_eq!(
            err("(:local (:export-format raw) (:export-format raw))"),
            "1:30: parameter export-format is given twice in (:local ...) (first at 1:9)"
        );
        assert_eq!(
            err(&with_sites(
                "(:group-define (:group-name g) (:site a) (:site b) (:site a))"
            )),
            "3:59: site: site a is listed twice (first at 3:39)"
        );
    }

    #[test]
    fn missing_parameters() {
        assert_eq!(
            err("\n  (:site-define (:hostname a) (:client-port 1) (:data-port 2))"),
            "2:3: (:site-define ...) is missing required parameter site-name"
        );
        assert_eq!(
            err("(:site-define (:site-name a) (:hostname a) (:data-port 2))"),
            "1:1: (:site-define ...) for site a is missing required parameter client-port"
        );
        assert_eq!(
            err("(:site-define (:site-name a) (:hostname a) (:client-port 2))"),
            "1:1: (:site-define ...) for site a is missing required parameter data-port"
        );
        assert_eq!(
            err("(:site-define (:site-name a) (:client-port 1) (:data-port 2))"),
            "1:1: (:site-define ...) for site a needs hostname or inet-address (or both), to be reachable"
        );
        assert_eq!(
            err(&with_sites("(:group-define (:site a) (:master-site a))")),
            "3:1: (:group-define ...) is missing required parameter group-name"
        );
        assert_eq!(
            err(&with_sites(
                "(:group-define (:group-name g) (:master-site a))"
            )),
            "3:1: (:group-define ...) for group g is missing required parameter site"
        );
        assert_eq!(
            err(&with_sites("(:group-define (:group-name g) (:site a))")),
            "3:1: (:group-define ...) for group g is missing required parameter master-site"
        );
    }

    #[test]
    fn values_out_of_range() {
        let site = |param: &str| {
            err(&format!(
                "(:site-define (:site-name a) (:hostname a) (:client-port 1) (:data-port 2) {param})"
            ))
        };
        // The parameter starts at column 76; the error is at its value.
        assert_eq!(
            err("(:site-define (:client-port 65536))"),
            "1:29: client-port: 65536 is out of range 1..=65535"
        );
        assert_eq!(
            err("(:site-define (:data-port 0))"),
            "1:27: data-port: 0 is out of range 1..=65535"
        );
        assert_eq!(
            site("(:latitude 90.5)"),
            "1:87: latitude: 90.5 is out of range -90..=90"
        );
        assert_eq!(
            site("(:lattitude -91)"),
            "1:88: lattitude: -91 is out of range -90..=90"
        );
        assert_eq!(
            site("(:longitude 180.01)"),
            "1:88: longitude: 180.01 is out of range -180..=180"
        );
        assert_eq!(
            site("(:longitude 1e999)"),
            "1:88: longitude: 1e999 is out of range -180..=180"
        );
        let group = |param: &str| {
            err(&with_sites(&format!(
                "(:group-define (:group-name g) (:site a) (:master-site a) {param})"
            )))
        };
        // The parameter starts at column 59.
        assert_eq!(
            group("(:connectivity 0)"),
            "3:74: connectivity: 0 is out of range 1..=16"
        );
        assert_eq!(
            group("(:connectivity 17)"),
            "3:74: connectivity: 17 is out of range 1..=16"
        );
        assert_eq!(
            group("(:ping-period 0)"),
            "3:73: ping-period: 0 is out of range: more than 0 and at most 86400 seconds"
        );
        assert_eq!(
            group("(:join-period -1.5)"),
            "3:73: join-period: -1.5 is out of range: more than 0 and at most 86400 seconds"
        );
        assert_eq!(
            group("(:update-period 86400.5)"),
            "3:75: update-period: 86400.5 is out of range: more than 0 and at most 86400 seconds"
        );
        assert_eq!(
            group("(:digest-period 25h)"),
            "3:75: digest-period: 25h is out of range: more than 0 and at most 86400 seconds"
        );
        assert_eq!(
            group("(:digest-period 0ms)"),
            "3:75: digest-period: 0ms is out of range: more than 0 and at most 86400 seconds"
        );
        assert_eq!(
            group("(:estimates-period 1e-12)"),
            "3:78: estimates-period: 1e-12 is out of range: more than 0 and at most 86400 seconds"
        );
        assert_eq!(
            group("(:bandwidth-period 5parsecs)"),
            "3:78: bandwidth-period: unknown duration unit 'parsecs' (use us, ms, s, m or h)"
        );
        assert_eq!(
            err("(:local (:data-storage-max 1099511627777))"),
            "1:28: data-storage-max: 1099511627777 is out of range 1..=1099511627776"
        );
        assert_eq!(
            err("(:local (:export-bundle-max 0))"),
            "1:29: export-bundle-max: 0 is out of range 1..=4294967296"
        );
        assert_eq!(
            err("(:local (:export-timeout 0.0))"),
            "1:26: export-timeout: 0.0 is out of range: more than 0 and at most 86400 seconds"
        );
    }

    #[test]
    fn malformed_values() {
        assert_eq!(
            err("(:site-define (:client-port two))"),
            "1:29: client-port: expected an integer, found a symbol"
        );
        assert_eq!(
            err("(:site-define (:client-port))"),
            "1:15: (:client-port) needs a value"
        );
        assert_eq!(
            err("(:site-define (:client-port 1 2))"),
            "1:31: client-port: takes one value, found 2"
        );
        assert_eq!(
            err("(:site-define (:latitude north))"),
            "1:26: latitude: expected a number, found a symbol"
        );
        assert_eq!(
            err("(:site-define (:inet-address 10.0.0.256))"),
            "1:30: inet-address: '10.0.0.256' is not an IPv4 or IPv6 address"
        );
        assert_eq!(
            err("(:site-define (:hostname \"a b\"))"),
            "1:26: hostname: 'a b' is not a valid host name: ' ' is not allowed (use letters, digits, '_', '.' and '-')"
        );
        assert_eq!(
            err("(:site-define (:hostname a..b))"),
            "1:26: hostname: 'a..b' is not a valid host name: it has an empty label"
        );
        assert_eq!(
            err("(:site-define (:site-name \"a/b\"))"),
            "1:27: site-name: 'a/b' is not a valid name: '/' is not allowed (use letters, digits, '_', '.' and '-')"
        );
        assert_eq!(
            err("(:site-define (:site-name \"\"))"),
            "1:27: site-name: a name cannot be empty"
        );
        let long = "n".repeat(MAX_NAME + 1);
        assert_eq!(
            err(&format!("(:group-define (:group-name {long}))")),
            format!(
                "1:29: group-name: '{}…' is 65 characters long: a name has at most 64",
                "n".repeat(64)
            )
        );
        assert!(
            FloodConfig::parse(&format!(
                "(:local) (:group-define (:group-name {}))",
                "n".repeat(MAX_NAME)
            ))
            .unwrap_err()
            .message
            .contains("missing required parameter site")
        );
        assert_eq!(
            err("(:site-define (:site-name (a)))"),
            "1:27: site-name: expected a name or string, found a list"
        );
        assert_eq!(
            err(&with_sites("(:group-define (:flooding flood))")),
            "3:27: flooding: expected tree or plain, found 'flood'"
        );
        assert_eq!(
            err("(:local (:export-format json))"),
            "1:25: export-format: expected framed or raw, found 'json'"
        );
        assert_eq!(
            err("(:local (:export-directory spool))"),
            "1:28: export-directory: 'spool' is not an absolute path"
        );
    }

    #[test]
    fn undefined_sites() {
        // A group may name a site defined further down the file.
        let later = "(:group-define (:group-name g) (:site z) (:master-site z))
(:site-define (:site-name z) (:hostname z) (:client-port 1) (:data-port 2))";
        assert_eq!(FloodConfig::parse(later).unwrap().groups[0].sites, ["z"]);
        assert_eq!(
            err(&with_sites(
                "(:group-define (:group-name g)\n  (:site a)\n  (:site c)\n  (:master-site a))"
            )),
            "5:10: site: group g names site c, which no (:site-define ...) defines"
        );
        assert_eq!(
            err(&with_sites(
                "(:group-define (:group-name g) (:master-site m) (:site a))"
            )),
            "3:46: master-site: group g names site m, which no (:site-define ...) defines"
        );
    }

    #[test]
    fn duplicate_definitions() {
        assert_eq!(
            err(&with_sites(
                "\n(:site-define (:hostname x) (:site-name b) (:client-port 1) (:data-port 2))"
            )),
            "4:41: site b is defined twice (first at 2:1)"
        );
        assert_eq!(
            err(&with_sites(
                "(:group-define (:group-name g) (:site a) (:master-site a))\n(:group-define (:group-name g) (:site b) (:master-site b))"
            )),
            "4:29: group g is defined twice (first at 3:1)"
        );
        assert_eq!(
            err("(:local (:export-command cat))\n\n(:local)"),
            "3:1: a second (:local ...) form (the first is at 1:1): give every local parameter in one"
        );
    }

    #[test]
    fn limits() {
        let site = |i: usize| {
            format!(
                "(:site-define (:site-name s{i}) (:hostname h) (:client-port 1) (:data-port 2))\n"
            )
        };
        let mut text: String = (0..MAX_SITES).map(site).collect();
        assert_eq!(FloodConfig::parse(&text).unwrap().sites.len(), MAX_SITES);
        text.push_str(&site(MAX_SITES));
        assert_eq!(
            FloodConfig::parse(&text).unwrap_err().to_string(),
            "4097:1: too many sites: a file defines at most 4096"
        );

        let group =
            |i: usize| format!("(:group-define (:group-name g{i}) (:site a) (:master-site a))\n");
        let mut text = with_sites(&(0..MAX_GROUPS).map(group).collect::<String>());
        assert_eq!(FloodConfig::parse(&text).unwrap().groups.len(), MAX_GROUPS);
        text.push_str(&group(MAX_GROUPS));
        assert_eq!(
            FloodConfig::parse(&text).unwrap_err().to_string(),
            "259:1: too many groups: a file defines at most 256"
        );

        let big = format!("(:local){}", " ".repeat(MAX_CONFIG_FILE_BYTES));
        let want = "1:1: input of 4194312 bytes exceeds the 4194304-byte limit";
        assert_eq!(err(&big), want);
        assert_eq!(
            FloodConfig::parse_bytes(big.as_bytes())
                .unwrap_err()
                .to_string(),
            want
        );
        let mut binary = big.into_bytes();
        binary[3] = 0xff;
        assert_eq!(
            FloodConfig::parse_bytes(&binary).unwrap_err().to_string(),
            want,
            "size is checked first"
        );
        assert_eq!(
            err(&format!(
                "(:local (:export-command \"{}\")",
                "x".repeat(100)
            )),
            "1:1: list opened here is never closed"
        );
    }

    #[test]
    fn bytes_that_are_not_utf8() {
        let e =
            FloodConfig::parse_bytes(b"(:local)\n(:local (:export-command \xc3\x28))").unwrap_err();
        assert_eq!(e.pos, Pos { line: 2, col: 26 });
        assert!(e.message.starts_with("byte 0xc3 is not UTF-8 text"), "{e}");
    }

    // ---- generated configurations ----

    /// A period as milliseconds and one of the ways a file may write it.
    fn arb_period() -> impl Strategy<Value = (Duration, String)> {
        (1..=86_400_000u64, 0..3u8).prop_map(|(ms, style)| {
            let text = match style {
                0 => format!("{ms}ms"),
                1 if ms % 1000 == 0 => format!("{}", ms / 1000),
                _ => format!("{}.{:03}", ms / 1000, ms % 1000),
            };
            (Duration::from_millis(ms), text)
        })
    }

    /// A shell command and how it is written: atoms, or one string.
    fn arb_command() -> impl Strategy<Value = (String, String)> {
        prop_oneof![
            prop::collection::vec("[a-z/][a-z0-9/._=-]{0,10}", 1..4).prop_map(|w| {
                let s = w.join(" ");
                (s.clone(), s)
            }),
            "[!-~][ -~]{0,20}".prop_map(|s| (s.clone(), format!("{s:?}"))),
        ]
    }

    fn arb_name() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_.-]{1,64}"
    }

    /// A name as the file writes it: names that start with a letter are sometimes bare
    /// symbols; the rest (`007`, `1e5`, `-x`) could read as numbers, so are quoted.
    fn write_name(name: &str, bare: bool) -> String {
        if bare && name.starts_with(|c: char| c.is_ascii_alphabetic()) {
            name.to_string()
        } else {
            format!("{name:?}")
        }
    }

    #[derive(Clone, Debug)]
    struct SiteCase {
        def: SiteDef,
        bare: bool,
        lattitude: bool,
        quoted_address: bool,
    }

    fn arb_site(name: String) -> impl Strategy<Value = SiteCase> {
        (
            prop::option::of("[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9_-]{0,10}){0,3}\\.?"),
            prop::option::of(any::<IpAddr>()),
            1..=65535u16,
            1..=65535u16,
            prop::option::of(-90.0..=90.0f64),
            prop::option::of(-180.0..=180.0f64),
            any::<[bool; 3]>(),
        )
            .prop_map(
                move |(hostname, inet, client_port, data_port, latitude, longitude, b)| {
                    // A site needs one way to be reached.
                    let hostname = match (&hostname, &inet) {
                        (None, None) => Some("localhost".to_string()),
                        _ => hostname,
                    };
                    SiteCase {
                        def: SiteDef {
                            name: name.clone(),
                            hostname,
                            inet_address: inet,
                            client_port,
                            data_port,
                            latitude,
                            longitude,
                            pos: Pos::default(),
                        },
                        bare: b[0],
                        lattitude: b[1],
                        quoted_address: b[2],
                    }
                },
            )
    }

    #[derive(Clone, Debug)]
    struct GroupCase {
        name: String,
        bare: bool,
        listed: Vec<usize>,
        master: usize,
        connectivity: Option<u32>,
        periods: [Option<(Duration, String)>; 6],
        topology: Option<(String, String)>,
        flooding: Option<FloodMode>,
    }

    fn arb_group(name: String, sites: usize) -> impl Strategy<Value = GroupCase> {
        (
            any::<bool>(),
            prop::collection::vec(0..sites, 1..6),
            0..sites,
            prop::option::of(1..=16u32),
            [
                prop::option::of(arb_period()),
                prop::option::of(arb_period()),
                prop::option::of(arb_period()),
                prop::option::of(arb_period()),
                prop::option::of(arb_period()),
                prop::option::of(arb_period()),
            ],
            prop::option::of(arb_command()),
            prop::option::of(prop_oneof![Just(FloodMode::Tree), Just(FloodMode::Plain)]),
        )
            .prop_map(
                move |(bare, mut listed, master, connectivity, periods, topology, flooding)| {
                    let mut seen = std::collections::BTreeSet::new();
                    listed.retain(|i| seen.insert(*i));
                    GroupCase {
                        name: name.clone(),
                        bare,
                        listed,
                        master,
                        connectivity,
                        periods,
                        topology,
                        flooding,
                    }
                },
            )
    }

    #[derive(Clone, Debug)]
    struct LocalCase {
        data_storage_max: Option<u64>,
        export_command: Option<(String, String)>,
        periods: [Option<(Duration, String)>; 3],
        export_directory: Option<String>,
        export_bundle_max: Option<u64>,
        export_format: Option<ExportFormat>,
    }

    fn arb_local() -> impl Strategy<Value = LocalCase> {
        (
            prop::option::of(1..=1u64 << 40),
            prop::option::of(arb_command()),
            [
                prop::option::of(arb_period()),
                prop::option::of(arb_period()),
                prop::option::of(arb_period()),
            ],
            prop::option::of("/[a-z0-9/._-]{0,20}"),
            prop::option::of(1..=1u64 << 32),
            prop::option::of(prop_oneof![
                Just(ExportFormat::Framed),
                Just(ExportFormat::Raw)
            ]),
        )
            .prop_map(
                |(
                    data_storage_max,
                    export_command,
                    periods,
                    export_directory,
                    export_bundle_max,
                    export_format,
                )| LocalCase {
                    data_storage_max,
                    export_command,
                    periods,
                    export_directory,
                    export_bundle_max,
                    export_format,
                },
            )
    }

    /// A configuration, the text of a file that means it, and the order its parameters
    /// are written in.
    fn arb_case() -> impl Strategy<Value = (FloodConfig, String)> {
        prop::collection::btree_set(arb_name(), 1..6)
            .prop_flat_map(|names| {
                let n = names.len();
                let sites: Vec<_> = names.into_iter().map(arb_site).collect();
                let groups =
                    prop::collection::btree_set(arb_name(), 0..4).prop_flat_map(move |g| {
                        g.into_iter()
                            .map(|name| arb_group(name, n))
                            .collect::<Vec<_>>()
                    });
                (sites, groups, prop::option::of(arb_local()), any::<u64>())
            })
            .prop_map(|(sites, groups, local, seed)| render(&sites, &groups, local.as_ref(), seed))
    }

    enum Form {
        Site,
        Group,
        Local,
    }

    fn shuffle<T>(items: &mut [T], rng: &mut Rng) {
        for i in (1..items.len()).rev() {
            items.swap(i, rng.below(i as u64 + 1) as usize);
        }
    }

    fn form(head: &str, params: Vec<String>) -> String {
        format!("; a {head} form\n(:{head} {})\n", params.join("\n    "))
    }

    fn render(
        sites: &[SiteCase],
        groups: &[GroupCase],
        local: Option<&LocalCase>,
        seed: u64,
    ) -> (FloodConfig, String) {
        let mut rng = Rng::from_seed(seed);
        let mut text = String::new();
        let mut forms = Vec::new();
        for (i, s) in sites.iter().enumerate() {
            let d = &s.def;
            let mut p = vec![
                format!("(:site-name {})", write_name(&d.name, s.bare)),
                format!("(:client-port {})", d.client_port),
                format!("(:data-port {})", d.data_port),
            ];
            if let Some(h) = &d.hostname {
                p.push(format!("(:hostname {h})"));
            }
            if let Some(a) = d.inet_address {
                p.push(if s.quoted_address {
                    format!("(:inet-address \"{a}\")")
                } else {
                    format!("(:inet-address {a})")
                });
            }
            if let Some(x) = d.latitude {
                let spelling = if s.lattitude { "lattitude" } else { "latitude" };
                p.push(format!("(:{spelling} {x:?})"));
            }
            if let Some(x) = d.longitude {
                p.push(format!("(:longitude {x:?})"));
            }
            shuffle(&mut p, &mut rng);
            forms.push((Form::Site, i, form("site-define", p)));
        }
        let mut defs = Vec::new();
        for (i, g) in groups.iter().enumerate() {
            let master = sites[g.master].def.name.clone();
            // Sites are written in the order listed; the other parameters go anywhere
            // around them.
            let listed: Vec<String> = g
                .listed
                .iter()
                .map(|&i| sites[i].def.name.clone())
                .collect();
            let mut p = vec![
                format!("(:group-name {})", write_name(&g.name, g.bare)),
                format!("(:master-site {})", write_name(&master, g.bare)),
            ];
            let names = [
                "ping-period",
                "bandwidth-period",
                "estimates-period",
                "join-period",
                "update-period",
                "digest-period",
            ];
            let mut periods = [
                DEFAULT_PING_PERIOD,
                DEFAULT_BANDWIDTH_PERIOD,
                DEFAULT_ESTIMATES_PERIOD,
                DEFAULT_JOIN_PERIOD,
                DEFAULT_UPDATE_PERIOD,
                DEFAULT_DIGEST_PERIOD,
            ];
            for (i, period) in g.periods.iter().enumerate() {
                if let Some((d, written)) = period {
                    periods[i] = *d;
                    p.push(format!("(:{} {written})", names[i]));
                }
            }
            if let Some(c) = g.connectivity {
                p.push(format!("(:connectivity {c})"));
            }
            if let Some((_, written)) = &g.topology {
                p.push(format!("(:topology-generator {written})"));
            }
            if let Some(f) = g.flooding {
                p.push(format!(
                    "(:flooding {})",
                    if f == FloodMode::Tree {
                        "tree"
                    } else {
                        "plain"
                    }
                ));
            }
            shuffle(&mut p, &mut rng);
            let at = rng.below(p.len() as u64 + 1) as usize;
            let site_params = listed
                .iter()
                .map(|s| format!("(:site {})", write_name(s, g.bare)));
            p.splice(at..at, site_params);
            forms.push((Form::Group, i, form("group-define", p)));
            let mut members = listed.clone();
            if !members.contains(&master) {
                members.push(master.clone());
            }
            defs.push(GroupDef {
                name: g.name.clone(),
                sites: members,
                master,
                connectivity: g.connectivity.unwrap_or(DEFAULT_CONNECTIVITY),
                ping_period: periods[0],
                bandwidth_period: periods[1],
                estimates_period: periods[2],
                join_period: periods[3],
                update_period: periods[4],
                topology_generator: g.topology.as_ref().map(|(c, _)| c.clone()),
                flooding: g.flooding.unwrap_or_default(),
                digest_period: periods[5],
                pos: Pos::default(),
            });
        }
        let mut local_def = LocalDef::default();
        if let Some(l) = local {
            let mut p = Vec::new();
            if let Some(n) = l.data_storage_max {
                local_def.data_storage_max = n;
                p.push(format!("(:data-storage-max {n})"));
            }
            if let Some((c, written)) = &l.export_command {
                local_def.export_command = Some(c.clone());
                p.push(format!("(:export-command {written})"));
            }
            let names = ["log-purge-period", "site-purge-period", "export-timeout"];
            for (i, period) in l.periods.iter().enumerate() {
                if let Some((d, written)) = period {
                    *[
                        &mut local_def.log_purge_period,
                        &mut local_def.site_purge_period,
                        &mut local_def.export_timeout,
                    ][i] = *d;
                    p.push(format!("(:{} {written})", names[i]));
                }
            }
            if let Some(d) = &l.export_directory {
                local_def.export_directory = d.clone();
                p.push(format!("(:export-directory {d})"));
            }
            if let Some(n) = l.export_bundle_max {
                local_def.export_bundle_max = n;
                p.push(format!("(:export-bundle-max {n})"));
            }
            if let Some(f) = l.export_format {
                local_def.export_format = f;
                p.push(format!(
                    "(:export-format {})",
                    if f == ExportFormat::Raw {
                        "raw"
                    } else {
                        "framed"
                    }
                ));
            }
            shuffle(&mut p, &mut rng);
            forms.push((Form::Local, 0, form("local", p)));
        }
        // Forms in any order: a group may come before the sites it names. The parsed
        // lists follow file order, so the expected ones are read off the shuffled forms.
        shuffle(&mut forms, &mut rng);
        let mut expected = FloodConfig {
            sites: Vec::new(),
            groups: Vec::new(),
            local: local_def,
        };
        for (what, i, written) in &forms {
            match what {
                Form::Site => expected.sites.push(sites[*i].def.clone()),
                Form::Group => expected.groups.push(defs[*i].clone()),
                Form::Local => {}
            }
            text.push_str(written);
        }
        (expected, text)
    }

    fn without_positions(mut c: FloodConfig) -> FloodConfig {
        for s in &mut c.sites {
            s.pos = Pos::default();
        }
        for g in &mut c.groups {
            g.pos = Pos::default();
        }
        c
    }

    /// Pieces of the language, so that random text reaches past the reader into the
    /// meaning of forms.
    fn arb_soup() -> impl Strategy<Value = String> {
        let token = prop_oneof![
            Just("(".to_string()),
            Just(")".to_string()),
            Just(":site-define".to_string()),
            Just(":group-define".to_string()),
            Just(":local".to_string()),
            prop::sample::select(
                SITE.params
                    .iter()
                    .chain(GROUP.params)
                    .chain(LOCAL.params)
                    .map(|p| format!(":{p}"))
                    .collect::<Vec<_>>()
            ),
            Just("a".to_string()),
            Just("b".to_string()),
            Just("2000".to_string()),
            Just("15.0".to_string()),
            Just("250ms".to_string()),
            Just("::1".to_string()),
            Just("\"cat > x\"".to_string()),
            Just("; c\n".to_string()),
        ];
        prop::collection::vec(token, 0..80).prop_map(|t| t.join(" "))
    }

    proptest! {
        #[test]
        fn generated_configurations_read_back((expected, text) in arb_case()) {
            let parsed = FloodConfig::parse(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
            prop_assert_eq!(without_positions(parsed), expected);
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
            if let Err(e) = FloodConfig::parse(&text) {
                prop_assert!(e.pos.line >= 1 && e.pos.col >= 1);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            if let Err(e) = FloodConfig::parse_bytes(&bytes) {
                prop_assert!(e.pos.line >= 1 && e.pos.col >= 1);
            }
        }

        #[test]
        fn language_soup_never_panics(text in arb_soup()) {
            match FloodConfig::parse(&text) {
                Ok(c) => {
                    for g in &c.groups {
                        prop_assert!(g.sites.contains(&g.master));
                        prop_assert!(g.sites.iter().all(|s| c.site(s).is_some()));
                    }
                }
                Err(e) => prop_assert!(e.pos.line >= 1 && e.pos.col >= 1),
            }
        }
    }
}
