//! A client of a group daemon's client protocol (SPEC.md §10.6): typed requests on a
//! [`LineClient`] for client groups (join, leave, send, members) and services (bind,
//! release, resolve, done), and the daemon's `6xx` notices read as [`GroupNotice`]s;
//! written once for every runtime.
//!
//! ```text
//! let mut c = GroupClient::<Tokio>::connect("127.0.0.1:4803").await?;
//! c.set_name("alice").await?;                      // before the first join or bind
//! c.join("chat").await?;                           // its 610 is the first notice
//! c.send("chat", b"hello").await?;
//! loop {
//!     match c.next_notice().await? {
//!         GroupNotice::Message { sender, payload, .. } => …,
//!         GroupNotice::View { members, cause, .. } => …,
//!         _ => {}
//!     }
//! }
//! ```
//!
//! Notices come at any time, among a reply's lines too; the line client keeps them in
//! order until [`GroupClient::next_notice`] reads them, so the `610` of a join is there
//! to read once [`GroupClient::join`] returns. A reply or notice that does not have the
//! shape the protocol gives is a [`ClientError::Protocol`] error naming the line, never a
//! panic.
//!
//! Arguments are checked for the form the protocol gives them (names of 1 to 64 of
//! `A-Z a-z 0-9 . _ -`, groups of 1 to 64 printable ASCII bytes) before anything is sent,
//! so nothing a caller passes can end the request line early or add a second one. What is
//! reserved (client names `c<digits>`, groups starting with `#`) is left to the daemon to
//! refuse: it knows which of them it hands out.

use core::fmt;
use core::net::SocketAddr;

use flotilla_core::groups::msg::{MAX_NAME, MAX_PAYLOAD};
use flotilla_core::line::{Call, ClientError, Notice, escape, unescape};

pub use crate::client::Error;
use crate::client::LineClient;
use crate::runtime::Runtime;

/// Most members a `610` notice lists; a group with more has only its count complete.
pub const MAX_LISTED: usize = 1000;

/// A group's view: the daemons' view it belongs to, written `EPOCH.COORD` on the line.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ViewId {
    /// The daemons' view's epoch.
    pub epoch: u64,
    /// The daemon that coordinated it.
    pub coordinator: String,
}

impl fmt::Display for ViewId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.epoch, self.coordinator)
    }
}

/// A group member: `(client, daemon)`, written `CLIENT@DAEMON` on the line.
pub type MemberId = (String, String);

/// A group's members as `members GROUP` lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMembers {
    /// The group.
    pub group: String,
    /// The view its membership is of.
    pub view: ViewId,
    /// Every member, as `(client, daemon)`, in the daemon's order.
    pub members: Vec<MemberId>,
}

/// One daemon of the daemons' view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Daemon {
    /// Its name.
    pub name: String,
    /// Its peer address.
    pub addr: SocketAddr,
    /// Its incarnation.
    pub incarnation: u64,
}

/// The daemons' view as the asked daemon holds it (`members` without a group).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonView {
    /// The view's epoch.
    pub epoch: u64,
    /// The daemon that coordinated it.
    pub coordinator: String,
    /// That daemon's incarnation (the id's third part: it tells apart the views of two
    /// lives of one daemon); `None` from a daemon that does not print it.
    pub incarnation: Option<u64>,
    /// Whether it is the primary component.
    pub primary: bool,
    /// The configuration version it runs with.
    pub config: u64,
    /// Its daemons.
    pub members: Vec<Daemon>,
}

/// A service as `services` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// Its name.
    pub name: String,
    /// Its cluster port.
    pub port: u16,
    /// The nodes (daemons) where it is bound.
    pub nodes: Vec<String>,
}

/// Why a group's membership changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cause {
    /// A client joined.
    Join,
    /// A client left.
    Leave,
    /// A member's connection to its daemon closed.
    Disconnect,
    /// The daemons' view changed.
    Network,
}

impl Cause {
    /// The word the protocol writes.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Join => "join",
            Cause::Leave => "leave",
            Cause::Disconnect => "disconnect",
            Cause::Network => "network",
        }
    }

    fn parse(word: &str) -> Option<Cause> {
        Some(match word {
            "join" => Cause::Join,
            "leave" => Cause::Leave,
            "disconnect" => Cause::Disconnect,
            "network" => Cause::Network,
            _ => return None,
        })
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a group message was ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// `600` (sent with `send`): in the group's one agreed order; `seq` is its number in
    /// the view.
    Agreed,
    /// `601` (sent with `fsend`): in the order its sender sent it, with no order between
    /// senders; `seq` is its number among its daemon's FIFO messages of the view.
    Fifo,
}

/// A notice the daemon sent unasked, read into its type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupNotice {
    /// `600` or `601` (or their binary forms `602`, `603`): a message of a group this
    /// client is a member of.
    Message {
        /// The group.
        group: String,
        /// The sending client.
        sender: String,
        /// The sender's daemon.
        daemon: String,
        /// The view it was delivered in.
        view: ViewId,
        /// Its number in that view (see [`Delivery`]).
        seq: u64,
        /// The message (unescaped, or as it came in the binary form).
        payload: Vec<u8>,
        /// Agreed order (`600`) or FIFO per sender (`601`).
        delivery: Delivery,
    },
    /// `610`: a group's membership changed.
    View {
        /// The group.
        group: String,
        /// The new view.
        view: ViewId,
        /// Its place in the group's order.
        seq: u64,
        /// Why it changed.
        cause: Cause,
        /// How many members the group has.
        count: usize,
        /// The members, all of them when `count` is at most [`MAX_LISTED`], else the
        /// first [`MAX_LISTED`].
        members: Vec<MemberId>,
    },
    /// `611`: one member joined or left a group this client is in (the whole list goes
    /// only to the member that joined or left, and to everyone at a network change).
    Change {
        /// The group.
        group: String,
        /// The new view.
        view: ViewId,
        /// Its place in the group's order.
        seq: u64,
        /// Why it changed.
        cause: Cause,
        /// How many members the group has now.
        count: usize,
        /// The member that joined or left.
        member: MemberId,
    },
    /// `620`: recovery barrier `event` of a service begins: stop using the old members.
    Stop {
        /// The service.
        service: String,
        /// The barrier.
        event: String,
    },
    /// `621`: start with these members; answer [`GroupClient::done`] once recovered.
    Start {
        /// The service.
        service: String,
        /// The barrier.
        event: String,
        /// The service's cluster port.
        port: u16,
        /// The nodes that hold the service.
        nodes: Vec<String>,
    },
    /// `622`: every member said done.
    Finish {
        /// The service.
        service: String,
        /// The barrier.
        event: String,
    },
    /// `623`: these members have not said done within 10 s (said once per barrier).
    Waiting {
        /// The service.
        service: String,
        /// The barrier.
        event: String,
        /// The nodes not done yet.
        nodes: Vec<String>,
    },
    /// `624`: after a partition healed the service has a new cluster port.
    Moved {
        /// The service.
        service: String,
        /// Its port from now on.
        port: u16,
    },
    /// `625`: another connection released this connection's binding.
    Released {
        /// The service.
        service: String,
    },
    /// `699`: the daemon is about to close this connection, for the reason given.
    Closing(String),
    /// A notice this client does not know.
    Other {
        /// Its code.
        code: u16,
        /// Its text.
        text: String,
    },
}

impl GroupNotice {
    /// Reads a notice as the line client returned it. Codes this client does not know are
    /// [`GroupNotice::Other`]; a known code whose text does not have its shape is a
    /// [`ClientError::Protocol`] error.
    pub fn parse(notice: &Notice) -> Result<GroupNotice, ClientError> {
        if matches!(notice.code, 602 | 603) {
            let delivery = if notice.code == 602 {
                Delivery::Agreed
            } else {
                Delivery::Fifo
            };
            return parse_sized_message(&notice.text, notice.body.as_deref(), delivery)
                .ok_or_else(|| bad(&format!("notice {}", notice.code), &notice.text));
        }
        parse_notice(notice.code, &notice.text)
    }
}

/// A connection to a group daemon's client port (TCP or Unix socket).
#[derive(Debug)]
pub struct GroupClient<R: Runtime> {
    line: LineClient<R>,
    /// The daemon took `binary`: messages go as `bsend` and come as `602`/`603`, their
    /// bytes neither escaped nor scanned (SPEC.md §10.6).
    binary: bool,
}

impl<R: Runtime> GroupClient<R> {
    /// Connects to `HOST:PORT` over TCP, or to a Unix-domain socket when `addr` is a path
    /// (`/run/groupd.sock`, `./g.sock`) or starts with `unix:`. The daemon sends no
    /// greeting; the client asks at once for the binary path ([`Self::binary`]), and
    /// stays with text lines if the daemon does not know it.
    pub async fn connect(addr: &str) -> Result<Self, Error> {
        let mut c = GroupClient::from_line(LineClient::connect(addr).await?);
        match c.binary().await {
            Ok(()) => {}
            Err(Error::Server(ClientError::Refused { code: 500, .. })) => {}
            Err(e) => return Err(e),
        }
        Ok(c)
    }

    /// A group client on a line client already connected (text lines until
    /// [`Self::binary`]).
    pub fn from_line(mut line: LineClient<R>) -> Self {
        line.sized_notices(&[602, 603]);
        GroupClient {
            line,
            binary: false,
        }
    }

    /// `binary`: from now on messages go to the daemon as `bsend GROUP SIZE` and the
    /// bytes, and come from it as `602`/`603` and the bytes (SPEC.md §10.6): a message is
    /// neither escaped nor scanned byte by byte on either side. [`GroupNotice::Message`]
    /// reads the same either way.
    pub async fn binary(&mut self) -> Result<(), Error> {
        self.line.call(Call::new("binary\n".into(), accept)).await?;
        self.binary = true;
        Ok(())
    }

    /// Whether the binary path is on.
    pub fn is_binary(&self) -> bool {
        self.binary
    }

    /// The line client underneath, for raw requests.
    pub fn line(&mut self) -> &mut LineClient<R> {
        &mut self.line
    }

    /// Sends one raw request line (without its newline) and returns the text of the
    /// final `2xx` reply.
    pub async fn request(&mut self, line: &str) -> Result<String, Error> {
        self.line.request(line).await
    }

    /// `name NAME`: names this connection's client (before its first join or bind); the
    /// name the daemon took.
    pub async fn set_name(&mut self, name: &str) -> Result<String, Error> {
        check_name(name, "a client name is 1 to 64 of A-Z a-z 0-9 . _ -")?;
        let call = Call::new(format!("name {name}\n"), parse_token_reply);
        self.line.call(call).await
    }

    /// `join GROUP`: returns once the join is in the group's agreed order; the `610`
    /// notice of the new membership is then unread.
    pub async fn join(&mut self, group: &str) -> Result<(), Error> {
        check_group(group)?;
        self.line
            .call(Call::new(format!("join {group}\n"), accept))
            .await
    }

    /// `leave GROUP`: returns once the leave is in the group's agreed order.
    pub async fn leave(&mut self, group: &str) -> Result<(), Error> {
        // Checked with care: `leave` without a group takes the whole daemon out of the
        // cluster.
        check_group(group)?;
        self.line
            .call(Call::new(format!("leave {group}\n"), accept))
            .await
    }

    /// `send GROUP TEXT`: hands a message of at most 65,536 bytes (any bytes: it is
    /// escaped onto the line) to the daemon; members receive it as a `600` notice. The
    /// sender need not be a member. A `451` refusal means too many messages are on their
    /// way: wait a little and send again.
    pub async fn send(&mut self, group: &str, payload: &[u8]) -> Result<(), Error> {
        self.send_as("send", group, payload).await
    }

    /// `fsend GROUP TEXT`: the same in the cheaper FIFO mode. Members receive it as a
    /// `601` notice ([`Delivery::Fifo`]): each sender's FIFO messages in the order it sent
    /// them, with no order between senders or with agreed messages.
    pub async fn send_fifo(&mut self, group: &str, payload: &[u8]) -> Result<(), Error> {
        self.send_as("fsend", group, payload).await
    }

    async fn send_as(&mut self, verb: &str, group: &str, payload: &[u8]) -> Result<(), Error> {
        check_group(group)?;
        if payload.len() > MAX_PAYLOAD {
            return Err(ClientError::Invalid("a message is at most 65536 bytes").into());
        }
        if self.binary {
            // The size, then the bytes as they are.
            let mut req = format!("b{verb} {group} {}\n", payload.len()).into_bytes();
            req.extend_from_slice(payload);
            let text = self.line.exchange(&req).await?;
            return Ok(accept(&text)?);
        }
        let line = format!("{verb} {group} {}\n", escape(payload));
        self.line.call(Call::new(line, accept)).await
    }

    /// `members GROUP`: the group's view and every member.
    pub async fn members(&mut self, group: &str) -> Result<GroupMembers, Error> {
        check_group(group)?;
        let call = Call::new(format!("members {group}\n"), parse_group_members);
        self.line.call(call).await
    }

    /// `members` without a group: the daemons' view the asked daemon holds.
    pub async fn daemon_view(&mut self) -> Result<DaemonView, Error> {
        self.line
            .call(Call::new("members\n".into(), parse_daemon_view))
            .await
    }

    /// `groups`: every group that has members, with how many.
    pub async fn groups(&mut self) -> Result<Vec<(String, usize)>, Error> {
        self.line
            .call(Call::new("groups\n".into(), parse_groups))
            .await
    }

    /// `bind SERVICE`: binds the service on this node, returning its cluster port once
    /// the cluster agreed. This connection holds the binding until it releases it or
    /// closes; barrier notices (`620`–`625`) follow.
    pub async fn bind(&mut self, service: &str) -> Result<u16, Error> {
        check_name(service, "a service name is 1 to 64 of A-Z a-z 0-9 . _ -")?;
        let call = Call::new(format!("bind {service}\n"), parse_port);
        self.line.call(call).await
    }

    /// `release SERVICE`: releases this node's binding of the service, whichever local
    /// connection holds it.
    pub async fn release(&mut self, service: &str) -> Result<(), Error> {
        check_name(service, "a service name is 1 to 64 of A-Z a-z 0-9 . _ -")?;
        self.line
            .call(Call::new(format!("release {service}\n"), accept))
            .await
    }

    /// `resolve NODE SERVICE`: where to reach the service on that node (the node's
    /// daemon address with the service's cluster port).
    pub async fn resolve(&mut self, node: &str, service: &str) -> Result<SocketAddr, Error> {
        check_name(node, "a node name is 1 to 64 of A-Z a-z 0-9 . _ -")?;
        check_name(service, "a service name is 1 to 64 of A-Z a-z 0-9 . _ -")?;
        let call = Call::new(format!("resolve {node} {service}\n"), parse_addr);
        self.line.call(call).await
    }

    /// `services`: every bound service, its port and the nodes that hold it.
    pub async fn services(&mut self) -> Result<Vec<Service>, Error> {
        self.line
            .call(Call::new("services\n".into(), parse_services))
            .await
    }

    /// `done SERVICE [EVENT]`: this node's member finished recovery for barrier `event`
    /// (the current one when `None`); returns the barrier the daemon counted it for.
    pub async fn done(&mut self, service: &str, event: Option<&str>) -> Result<String, Error> {
        check_name(service, "a service name is 1 to 64 of A-Z a-z 0-9 . _ -")?;
        let line = match event {
            None => format!("done {service}\n"),
            Some(e) => {
                if !is_token(e) {
                    return Err(ClientError::Invalid("an event is one word").into());
                }
                format!("done {service} {e}\n")
            }
        };
        self.line.call(Call::new(line, parse_done)).await
    }

    /// `quit`: the daemon says goodbye and closes the connection (leaving every group
    /// this client joined and releasing its binding).
    pub async fn quit(&mut self) -> Result<(), Error> {
        self.line.call(Call::new("quit\n".into(), accept)).await
    }

    /// The next notice, in the order the daemon sent them; waits for one if none is
    /// unread. One that does not read as its code's shape is an error, and is consumed:
    /// the next call reads the one after it.
    pub async fn next_notice(&mut self) -> Result<GroupNotice, Error> {
        let n = self.line.next_notice().await?;
        Ok(GroupNotice::parse(&n)?)
    }

    /// Notices received and not yet read.
    pub fn unread_notices(&self) -> usize {
        self.line.unread_notices()
    }
}

/// Whether `s` is a name the protocol allows for a client, service or node.
fn is_name(s: &str) -> bool {
    (1..=MAX_NAME).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn check_name(s: &str, rule: &'static str) -> Result<(), ClientError> {
    if is_name(s) {
        Ok(())
    } else {
        Err(ClientError::Invalid(rule))
    }
}

fn check_group(g: &str) -> Result<(), ClientError> {
    if (1..=MAX_NAME).contains(&g.len()) && g.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(ClientError::Invalid(
            "a group name is 1 to 64 printable ASCII bytes without spaces",
        ))
    }
}

/// A word of a reply or notice that another word follows: no spaces, no control
/// characters, not empty.
fn is_token(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// At most 80 characters of a line, for an error message.
fn shown(text: &str) -> String {
    text.chars().take(80).collect()
}

fn bad(what: &str, line: &str) -> ClientError {
    ClientError::Protocol(format!("{what}: unexpected line {:?}", shown(line)))
}

fn number<T: core::str::FromStr>(what: &str, line: &str, word: &str) -> Result<T, ClientError> {
    // `u64::from_str` takes a leading `+`, which the protocol never writes.
    if word.is_empty() || !word.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(what, line));
    }
    word.parse().map_err(|_| bad(what, line))
}

/// Any success: the reply's text carries nothing the caller needs.
fn accept(_: &str) -> Result<(), ClientError> {
    Ok(())
}

/// `250 NAME`
fn parse_token_reply(text: &str) -> Result<String, ClientError> {
    if is_token(text) {
        Ok(text.to_string())
    } else {
        Err(bad("name", text))
    }
}

/// `250 PORT`
fn parse_port(text: &str) -> Result<u16, ClientError> {
    number("bind", text, text)
}

/// `250 IP:PORT`
fn parse_addr(text: &str) -> Result<SocketAddr, ClientError> {
    text.parse().map_err(|_| bad("resolve", text))
}

/// `250 done SERVICE EVENT`
fn parse_done(text: &str) -> Result<String, ClientError> {
    let w: Vec<&str> = text.split_whitespace().collect();
    match w.as_slice() {
        ["done", service, event] if is_name(service) => Ok(event.to_string()),
        _ => Err(bad("done", text)),
    }
}

/// Parses `EPOCH.COORD`; the coordinator's name may hold dots, the epoch may not.
fn parse_view(word: &str) -> Option<ViewId> {
    let (epoch, coordinator) = word.split_once('.')?;
    if epoch.is_empty() || !epoch.bytes().all(|b| b.is_ascii_digit()) || !is_token(coordinator) {
        return None;
    }
    Some(ViewId {
        epoch: epoch.parse().ok()?,
        coordinator: coordinator.to_string(),
    })
}

/// Parses `CLIENT@DAEMON`.
fn parse_member(word: &str) -> Option<MemberId> {
    let (client, daemon) = word.split_once('@')?;
    if !is_token(client) || !is_token(daemon) || daemon.contains('@') {
        return None;
    }
    Some((client.to_string(), daemon.to_string()))
}

/// The lines of a multi-line reply but its last, which counts the lines after the first
/// `heads` (`3 members`, `2 groups`): the count is checked, so a reply cut short is not
/// taken as whole.
fn counted<'a>(what: &str, text: &'a str, heads: usize) -> Result<Vec<&'a str>, ClientError> {
    let mut lines: Vec<&str> = text.split('\n').collect();
    let last = lines.pop().unwrap_or_default();
    let n: usize = number(what, last, last.split(' ').next().unwrap_or_default())?;
    if lines.len() < heads || n != lines.len() - heads {
        return Err(ClientError::Protocol(format!(
            "{what}: the reply counts {n} but lists {}",
            lines.len().saturating_sub(heads)
        )));
    }
    Ok(lines)
}

/// `group GROUP view EPOCH.COORD members=N`, `CLIENT@DAEMON` per member, `N members`.
fn parse_group_members(text: &str) -> Result<GroupMembers, ClientError> {
    let what = "members";
    let lines = counted(what, text, 1)?;
    let Some((head, rest)) = lines.split_first() else {
        return Err(bad(what, text));
    };
    let w: Vec<&str> = head.split(' ').collect();
    let ["group", group, "view", view, count] = w.as_slice() else {
        return Err(bad(what, head));
    };
    let view = parse_view(view).ok_or_else(|| bad(what, head))?;
    let count: usize = number(
        what,
        head,
        count.strip_prefix("members=").unwrap_or_default(),
    )?;
    let members = rest
        .iter()
        .map(|l| parse_member(l).ok_or_else(|| bad(what, l)))
        .collect::<Result<Vec<_>, _>>()?;
    if members.len() != count {
        return Err(bad(what, head));
    }
    Ok(GroupMembers {
        group: group.to_string(),
        view,
        members,
    })
}

/// `view EPOCH COORD primary|non-primary members=N config=V incarnation=HEX`, `NAME ADDR
/// incarnation=HEX` per daemon, `N members` (a view line without its incarnation, from
/// an older daemon, is read too).
/// Reads the daemon's answer to `members` (the final reply's text, lines joined with
/// `\n`): the one reader of that reply, for this library and `flotilla members`.
pub fn parse_daemon_view(text: &str) -> Result<DaemonView, ClientError> {
    let what = "members";
    let lines = counted(what, text, 1)?;
    let Some((head, rest)) = lines.split_first() else {
        return Err(bad(what, text));
    };
    let w: Vec<&str> = head.split(' ').collect();
    let (fields, inc) = match w.split_last() {
        Some((last, front)) if last.starts_with("incarnation=") => (front, Some(*last)),
        _ => (&w[..], None),
    };
    let ["view", epoch, coordinator, primary, count, config] = fields else {
        return Err(bad(what, head));
    };
    let incarnation = inc
        .map(|i| u64::from_str_radix(&i["incarnation=".len()..], 16).map_err(|_| bad(what, head)))
        .transpose()?;
    let primary = match *primary {
        "primary" => true,
        "non-primary" => false,
        _ => return Err(bad(what, head)),
    };
    let field = |word: &str, key: &str| {
        number::<u64>(what, head, word.strip_prefix(key).unwrap_or_default())
    };
    let count = field(count, "members=")?;
    let members = rest
        .iter()
        .map(|l| {
            let w: Vec<&str> = l.split(' ').collect();
            let [name, addr, inc] = w.as_slice() else {
                return Err(bad(what, l));
            };
            let inc = inc.strip_prefix("incarnation=").unwrap_or_default();
            Ok(Daemon {
                name: name.to_string(),
                addr: addr.parse().map_err(|_| bad(what, l))?,
                incarnation: u64::from_str_radix(inc, 16).map_err(|_| bad(what, l))?,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if members.len() as u64 != count {
        return Err(bad(what, head));
    }
    Ok(DaemonView {
        epoch: number(what, head, epoch)?,
        coordinator: coordinator.to_string(),
        incarnation,
        primary,
        config: field(config, "config=")?,
        members,
    })
}

/// `GROUP N` per group, `K groups`.
fn parse_groups(text: &str) -> Result<Vec<(String, usize)>, ClientError> {
    counted("groups", text, 0)?
        .into_iter()
        .map(|l| match l.split(' ').collect::<Vec<_>>().as_slice() {
            [g, n] => Ok((g.to_string(), number("groups", l, n)?)),
            _ => Err(bad("groups", l)),
        })
        .collect()
}

/// `SERVICE PORT NODE,NODE…` per service, `K services`. A service whose nodes are all
/// gone for the moment has none listed (`db 4810 ` or `db 4810`); port 0 is one that has
/// no port yet (a view change is settling).
fn parse_services(text: &str) -> Result<Vec<Service>, ClientError> {
    counted("services", text, 0)?
        .into_iter()
        .map(|l| {
            let (name, port, nodes) = match l.split(' ').collect::<Vec<_>>().as_slice() {
                [name, port] => (*name, *port, ""),
                [name, port, nodes] => (*name, *port, *nodes),
                _ => return Err(bad("services", l)),
            };
            let nodes: Vec<String> = nodes
                .split(',')
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect();
            if !is_name(name) || nodes.iter().any(|n| !is_name(n)) {
                return Err(bad("services", l));
            }
            Ok(Service {
                name: name.to_string(),
                port: number("services", l, port)?,
                nodes,
            })
        })
        .collect()
}

fn parse_notice(code: u16, text: &str) -> Result<GroupNotice, ClientError> {
    let what = format!("notice {code}");
    let what = what.as_str();
    let bad = || bad(what, text);
    if code == 600 || code == 601 {
        let delivery = if code == 600 {
            Delivery::Agreed
        } else {
            Delivery::Fifo
        };
        return parse_message(text, delivery).ok_or_else(bad);
    }
    if code == 699 {
        return Ok(GroupNotice::Closing(text.to_string()));
    }
    // Every other known notice is words without escapes: extra spaces are tolerated.
    let w: Vec<&str> = text.split_whitespace().collect();
    let nodes = |w: &[&str]| w.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let port = |p: &str| number::<u16>(what, text, p);
    Ok(match (code, w.as_slice()) {
        (610, [group, view, seq, cause, count, members @ ..]) => {
            let count: usize = number(what, text, count)?;
            // All members are listed up to MAX_LISTED; past it, at most that many.
            let complete = members.len() == count;
            if !(complete || count > MAX_LISTED && members.len() <= MAX_LISTED) {
                return Err(bad());
            }
            GroupNotice::View {
                group: group.to_string(),
                view: parse_view(view).ok_or_else(bad)?,
                seq: number(what, text, seq)?,
                cause: Cause::parse(cause).ok_or_else(bad)?,
                count,
                members: members
                    .iter()
                    .map(|m| parse_member(m).ok_or_else(bad))
                    .collect::<Result<_, _>>()?,
            }
        }
        (611, [group, view, seq, cause, count, member]) => GroupNotice::Change {
            group: group.to_string(),
            view: parse_view(view).ok_or_else(bad)?,
            seq: number(what, text, seq)?,
            cause: Cause::parse(cause).ok_or_else(bad)?,
            count: number(what, text, count)?,
            member: parse_member(member).ok_or_else(bad)?,
        },
        (620, [service, "stop", event]) => GroupNotice::Stop {
            service: service.to_string(),
            event: event.to_string(),
        },
        (621, [service, "start", event, p, count, members @ ..]) => {
            if number::<usize>(what, text, count)? != members.len() {
                return Err(bad());
            }
            GroupNotice::Start {
                service: service.to_string(),
                event: event.to_string(),
                port: port(p)?,
                nodes: nodes(members),
            }
        }
        (622, [service, "finish", event]) => GroupNotice::Finish {
            service: service.to_string(),
            event: event.to_string(),
        },
        (623, [service, "waiting", event, members @ ..]) => GroupNotice::Waiting {
            service: service.to_string(),
            event: event.to_string(),
            nodes: nodes(members),
        },
        (624, [service, "moved", p]) => GroupNotice::Moved {
            service: service.to_string(),
            port: port(p)?,
        },
        (625, [service, "released"]) => GroupNotice::Released {
            service: service.to_string(),
        },
        (610 | 611 | 620..=625, _) => return Err(bad()),
        _ => GroupNotice::Other {
            code,
            text: text.to_string(),
        },
    })
}

/// `GROUP SENDER@DAEMON VIEW SEQ SIZE` and the SIZE bytes that followed the line.
fn parse_sized_message(text: &str, body: Option<&[u8]>, delivery: Delivery) -> Option<GroupNotice> {
    let w: Vec<&str> = text.split(' ').collect();
    let [group, sender, view, seq, size] = w.as_slice() else {
        return None;
    };
    let body = body?;
    let digits = !size.is_empty() && size.bytes().all(|b| b.is_ascii_digit());
    if !digits || size.parse::<usize>().ok()? != body.len() {
        return None;
    }
    message([group, sender, view, seq], body.to_vec(), delivery)
}

/// A message notice's words before its text (`GROUP SENDER@DAEMON VIEW SEQ`) and its
/// bytes, read into a [`GroupNotice::Message`].
fn message(
    [group, sender, view, seq]: [&str; 4],
    payload: Vec<u8>,
    delivery: Delivery,
) -> Option<GroupNotice> {
    let (sender, daemon) = parse_member(sender)?;
    if group.is_empty() || seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(GroupNotice::Message {
        group: group.to_string(),
        sender,
        daemon,
        view: parse_view(view)?,
        seq: seq.parse().ok()?,
        payload,
        delivery,
    })
}

/// `GROUP SENDER@DAEMON VIEW SEQ TEXT`: TEXT is the rest after one space, escaped, and
/// may be empty (then the space before it may be missing too).
fn parse_message(text: &str, delivery: Delivery) -> Option<GroupNotice> {
    let mut w = text.splitn(5, ' ');
    let (group, sender, view, seq) = (w.next()?, w.next()?, w.next()?, w.next()?);
    let payload = unescape(w.next().unwrap_or_default()).ok()?;
    message([group, sender, view, seq], payload, delivery)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use flotilla_core::line::{ReplyReader, Step, reply_lines};
    use proptest::prelude::*;

    /// A notice written the way the protocol draft gives it (independently of the
    /// parser), as the full line the daemon sends.
    fn line_of(n: &GroupNotice) -> String {
        let members = |m: &[MemberId]| {
            m.iter()
                .map(|(c, d)| format!(" {c}@{d}"))
                .collect::<String>()
        };
        let nodes = |n: &[String]| n.iter().map(|n| format!(" {n}")).collect::<String>();
        match n {
            GroupNotice::Message {
                group,
                sender,
                daemon,
                view,
                seq,
                payload,
                delivery,
            } => format!(
                "{} {group} {sender}@{daemon} {view} {seq} {}\n",
                if *delivery == Delivery::Agreed {
                    600
                } else {
                    601
                },
                escape(payload)
            ),
            GroupNotice::View {
                group,
                view,
                seq,
                cause,
                count,
                members: m,
            } => format!("610 {group} {view} {seq} {cause} {count}{}\n", members(m)),
            GroupNotice::Change {
                group,
                view,
                seq,
                cause,
                count,
                member: (c, d),
            } => format!("611 {group} {view} {seq} {cause} {count} {c}@{d}\n"),
            GroupNotice::Stop { service, event } => format!("620 {service} stop {event}\n"),
            GroupNotice::Start {
                service,
                event,
                port,
                nodes: n,
            } => format!(
                "621 {service} start {event} {port} {}{}\n",
                n.len(),
                nodes(n)
            ),
            GroupNotice::Finish { service, event } => format!("622 {service} finish {event}\n"),
            GroupNotice::Waiting {
                service,
                event,
                nodes: n,
            } => format!("623 {service} waiting {event}{}\n", nodes(n)),
            GroupNotice::Moved { service, port } => format!("624 {service} moved {port}\n"),
            GroupNotice::Released { service } => format!("625 {service} released\n"),
            GroupNotice::Closing(text) => format!("699 {text}\n"),
            GroupNotice::Other { code, text } => format!("{code} {text}\n"),
        }
    }

    /// What a client reads from `bytes`: the steps of the line reader every client uses.
    fn steps(bytes: &[u8]) -> Vec<Step> {
        let mut r = ReplyReader::default();
        r.push(bytes);
        std::iter::from_fn(|| r.next_step()).collect()
    }

    /// The one notice in `line`, read the way [`GroupClient::next_notice`] reads it.
    fn read_notice(line: &str) -> Result<GroupNotice, ClientError> {
        match steps(line.as_bytes()).as_slice() {
            [Step::Notice(n)] => GroupNotice::parse(n),
            other => panic!("not one notice: {other:?}"),
        }
    }

    /// The final text of the one reply in `bytes`.
    fn reply_text(bytes: &[u8]) -> String {
        match steps(bytes).as_slice() {
            [Step::Done(Ok(t))] => t.clone(),
            other => panic!("not one reply: {other:?}"),
        }
    }

    fn view(epoch: u64, coordinator: &str) -> ViewId {
        ViewId {
            epoch,
            coordinator: coordinator.into(),
        }
    }

    fn m(c: &str, d: &str) -> MemberId {
        (c.into(), d.into())
    }

    /// `602`/`603` read with the bytes after them into the same message a `600`/`601`
    /// line gives; a size that does not match the bytes, or no bytes, is an error.
    #[test]
    fn binary_messages_read_with_their_bytes() {
        let mut r = ReplyReader::default();
        r.sized_notices(&[602, 603]);
        r.push(b"602 chat alice@n1 3.n1 7 4\n\x00\n\xffz603 chat bob@n2 3.n1 2 0\n");
        let got: Vec<GroupNotice> = std::iter::from_fn(|| r.next_step())
            .map(|s| match s {
                Step::Notice(n) => GroupNotice::parse(&n).unwrap(),
                other => panic!("{other:?}"),
            })
            .collect();
        let msg =
            |sender: &str, daemon: &str, seq, payload: &[u8], delivery| GroupNotice::Message {
                group: "chat".into(),
                sender: sender.into(),
                daemon: daemon.into(),
                view: view(3, "n1"),
                seq,
                payload: payload.to_vec(),
                delivery,
            };
        assert_eq!(
            got,
            vec![
                msg("alice", "n1", 7, b"\x00\n\xffz", Delivery::Agreed),
                msg("bob", "n2", 2, b"", Delivery::Fifo),
            ]
        );
        // The binary form reads as the text form of the same message does.
        let text = line_of(&got[0]);
        assert_eq!(read_notice(&text).unwrap(), got[0]);
        let sized = |text: &str, body: Option<&[u8]>| Notice {
            code: 602,
            text: text.into(),
            body: body.map(Bytes::copy_from_slice),
        };
        for bad in [
            sized("chat alice@n1 3.n1 7 4", Some(b"abc")),
            sized("chat alice@n1 3.n1 7 4", None),
            sized("chat alice@n1 3.n1 7", Some(b"")),
            sized("chat alice 3.n1 7 0", Some(b"")),
            sized("chat alice@n1 3.n1 x 0", Some(b"")),
        ] {
            assert!(
                matches!(GroupNotice::parse(&bad), Err(ClientError::Protocol(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn notices_are_read_into_their_types() {
        assert_eq!(
            read_notice("600 chat alice@n1 3.n1.example 7 hi\\nthere \\xff\n"),
            Ok(GroupNotice::Message {
                group: "chat".into(),
                sender: "alice".into(),
                daemon: "n1".into(),
                view: view(3, "n1.example"),
                seq: 7,
                payload: b"hi\nthere \xff".to_vec(),
                delivery: Delivery::Agreed,
            })
        );
        assert!(matches!(
            read_notice("601 chat bob@n2 3.n1 2 x\n"),
            Ok(GroupNotice::Message { delivery: Delivery::Fifo, seq: 2, sender, daemon, .. })
                if sender == "bob" && daemon == "n2"
        ));
        // An empty message, with or without the space before it.
        for line in ["600 g c1@n1 1.n1 0 \n", "600 g c1@n1 1.n1 0\n"] {
            assert!(matches!(
                read_notice(line),
                Ok(GroupNotice::Message { payload, .. }) if payload.is_empty()
            ));
        }
        assert_eq!(
            read_notice("610 chat 3.n1 8 leave 2 alice@n1 c4@n2\n"),
            Ok(GroupNotice::View {
                group: "chat".into(),
                view: view(3, "n1"),
                seq: 8,
                cause: Cause::Leave,
                count: 2,
                members: vec![m("alice", "n1"), m("c4", "n2")],
            })
        );
        assert!(matches!(
            read_notice("610 g 4.n2 0 network 0\n"),
            Ok(GroupNotice::View { count: 0, ref members, .. }) if members.is_empty()
        ));
        assert_eq!(
            read_notice("621 db start 3.a:17 4810 2 n1 n2\n"),
            Ok(GroupNotice::Start {
                service: "db".into(),
                event: "3.a:17".into(),
                port: 4810,
                nodes: vec!["n1".into(), "n2".into()],
            })
        );
        assert_eq!(
            read_notice("623 db waiting 3.a:17 n2\n"),
            Ok(GroupNotice::Waiting {
                service: "db".into(),
                event: "3.a:17".into(),
                nodes: vec!["n2".into()],
            })
        );
        assert_eq!(
            read_notice("624 db moved 4811\n"),
            Ok(GroupNotice::Moved {
                service: "db".into(),
                port: 4811
            })
        );
        assert_eq!(
            read_notice("625 db released\n"),
            Ok(GroupNotice::Released {
                service: "db".into()
            })
        );
        assert_eq!(
            read_notice("699 too many notices unread: closing\n"),
            Ok(GroupNotice::Closing(
                "too many notices unread: closing".into()
            ))
        );
        assert_eq!(
            read_notice("650 something new\n"),
            Ok(GroupNotice::Other {
                code: 650,
                text: "something new".into()
            })
        );
    }

    #[test]
    fn a_large_group_lists_only_the_first_members() {
        let listed: String = (0..MAX_LISTED).map(|i| format!(" c{i}@n1")).collect();
        let got = read_notice(&format!("610 big 2.n1 5 join 1500{listed}\n")).unwrap();
        assert!(matches!(
            got,
            GroupNotice::View { count: 1500, ref members, .. } if members.len() == MAX_LISTED
        ));
        // At most MAX_LISTED, all of them when there are no more.
        let more: String = (0..=MAX_LISTED).map(|i| format!(" c{i}@n1")).collect();
        assert!(read_notice(&format!("610 big 2.n1 5 join 1500{more}\n")).is_err());
        assert!(read_notice("610 g 2.n1 5 join 3 a@n1 b@n1\n").is_err());
    }

    #[test]
    fn malformed_notices_are_protocol_errors() {
        for line in [
            "600 g c1@n1 1.n1 x hi",
            "600 g c1n1 1.n1 1 hi",
            "600 g c1@n1 n1 1 hi",
            "600 g c1@n1 .n1 1 hi",
            "600 g c1@n1 1. 1 hi",
            "600 g c1@n1 1.n1 1 bad\\q",
            "600 g c1@n1 1.n1 -1 hi",
            "600 g c1@n1 1.n1",
            "600",
            "610 g 1.n1 1 joined 1 a@n1",
            "610 g 1.n1 1 join 2 a@n1",
            "610 g 1.n1 1 join 1 a@",
            "610 g 1.n1 1 join",
            "620 db stop",
            "620 db start 1",
            "621 db start e 70000 0",
            "621 db start e 4810 2 n1",
            "622 db finish",
            "624 db moved x",
            "625 db",
            "625 db released now",
        ] {
            let got = read_notice(&format!("{line}\n"));
            assert!(
                matches!(got, Err(ClientError::Protocol(_))),
                "{line}: {got:?}"
            );
        }
    }

    #[test]
    fn replies_are_read_into_their_types() {
        assert_eq!(
            parse_group_members(&reply_text(&reply_lines(
                250,
                [
                    "group chat view 3.n1 members=2",
                    "alice@n1",
                    "c4@n2",
                    "2 members"
                ]
            ))),
            Ok(GroupMembers {
                group: "chat".into(),
                view: view(3, "n1"),
                members: vec![m("alice", "n1"), m("c4", "n2")],
            })
        );
        let v = parse_daemon_view(&reply_text(&reply_lines(
            250,
            [
                "view 7 n1 non-primary members=2 config=3 incarnation=00000000000000ff",
                "n1 127.0.0.1:4803 incarnation=00000000000000ff",
                "n2 [::1]:4804 incarnation=0000000000000100",
                "2 members",
            ],
        )))
        .unwrap();
        assert_eq!((v.epoch, v.primary, v.config), (7, false, 3));
        assert_eq!(v.incarnation, Some(255));
        // A daemon that does not print the id's incarnation is still read.
        let old = parse_daemon_view("view 7 n1 primary members=0 config=3\n0 members").unwrap();
        assert_eq!((old.epoch, old.incarnation), (7, None));
        assert_eq!(v.members[1].addr, "[::1]:4804".parse().unwrap());
        assert_eq!(v.members[1].incarnation, 256);
        assert_eq!(
            parse_groups("chat 2\nops 1\n2 groups"),
            Ok(vec![("chat".into(), 2), ("ops".into(), 1)])
        );
        assert_eq!(parse_groups("0 groups"), Ok(vec![]));
        assert_eq!(
            parse_services("db 4810 n1,n2\n1 services"),
            Ok(vec![Service {
                name: "db".into(),
                port: 4810,
                nodes: vec!["n1".into(), "n2".into()],
            }])
        );
        assert_eq!(
            parse_services("db 0 \nweb 80\n2 services"),
            Ok(vec![
                Service {
                    name: "db".into(),
                    port: 0,
                    nodes: vec![]
                },
                Service {
                    name: "web".into(),
                    port: 80,
                    nodes: vec![]
                },
            ])
        );
        assert_eq!(parse_port("4810"), Ok(4810));
        assert_eq!(
            parse_addr("10.0.0.2:4810"),
            Ok("10.0.0.2:4810".parse().unwrap())
        );
        assert_eq!(parse_done("done db 3.a:17"), Ok("3.a:17".into()));
        assert_eq!(parse_token_reply("alice"), Ok("alice".into()));
    }

    #[test]
    fn malformed_replies_are_protocol_errors() {
        let bad_members = [
            "group g view 3.n1 members=2\na@n1\n2 members",
            "group g view 3.n1 members=1\na@n1\nb@n1\n2 members",
            "group g view x members=0\n0 members",
            "group g members=0\n0 members",
            "0 members",
            "",
        ];
        for t in bad_members {
            assert!(
                matches!(parse_group_members(t), Err(ClientError::Protocol(_))),
                "{t:?}"
            );
        }
        for t in [
            "view 1 n1 maybe members=0 config=0\n0 members",
            "view 1 n1 primary members=1 config=0\nn1 nowhere incarnation=1\n1 members",
            "view 1 n1 primary members=1 config=0\n0 members",
            "view 1 n1 primary members=0 config=0 incarnation=xyz\n0 members",
            "view 1 n1 primary members=0 config=0 incarnation=1 extra\n0 members",
        ] {
            assert!(
                matches!(parse_daemon_view(t), Err(ClientError::Protocol(_))),
                "{t:?}"
            );
        }
        assert!(parse_groups("chat\n1 groups").is_err());
        assert!(parse_groups("chat 1\n2 groups").is_err());
        assert!(parse_services("db x n1\n1 services").is_err());
        assert!(parse_services("db 1 n1 n2\n1 services").is_err());
        assert!(parse_services("db 1 n1,,n2;\n1 services").is_err());
        assert!(parse_port("99999").is_err());
        assert!(parse_port("+1").is_err());
        assert!(parse_addr("n1:4810").is_err());
        assert!(parse_done("done db").is_err());
        assert!(parse_token_reply("two words").is_err());
    }

    #[test]
    fn arguments_cannot_break_the_line() {
        assert!(check_group("chat").is_ok());
        assert!(
            check_group("#ops").is_ok(),
            "reserved names are the daemon's to refuse"
        );
        for g in ["", "a b", "a\nb", "é", &"g".repeat(65)] {
            assert_eq!(
                check_group(g),
                Err(ClientError::Invalid(
                    "a group name is 1 to 64 printable ASCII bytes without spaces"
                )),
                "{g:?}"
            );
        }
        assert!(is_name("n1.example-2_b"));
        for n in ["", "a b", "a@b", "a:b", &"n".repeat(65)] {
            assert!(!is_name(n), "{n:?}");
        }
        assert!(is_token("3.a:17") && !is_token("a b") && !is_token(""));
    }

    fn name() -> impl Strategy<Value = String> {
        "[A-Za-z0-9._-]{1,64}"
    }

    fn group() -> impl Strategy<Value = String> {
        "[!-~]{1,64}"
    }

    fn view_id() -> impl Strategy<Value = ViewId> {
        (any::<u64>(), name()).prop_map(|(epoch, coordinator)| ViewId { epoch, coordinator })
    }

    fn member() -> impl Strategy<Value = MemberId> {
        (name(), name())
    }

    fn event() -> impl Strategy<Value = String> {
        "[!-~]{1,24}"
    }

    fn notice() -> impl Strategy<Value = GroupNotice> {
        let cause = prop_oneof![
            Just(Cause::Join),
            Just(Cause::Leave),
            Just(Cause::Disconnect),
            Just(Cause::Network),
        ];
        let nodes = || proptest::collection::vec(name(), 0..8);
        prop_oneof![
            (
                group(),
                member(),
                view_id(),
                any::<u64>(),
                proptest::collection::vec(any::<u8>(), 0..200),
                any::<bool>(),
            )
                .prop_map(|(group, (sender, daemon), view, seq, payload, fifo)| {
                    GroupNotice::Message {
                        group,
                        sender,
                        daemon,
                        view,
                        seq,
                        payload,
                        delivery: if fifo {
                            Delivery::Fifo
                        } else {
                            Delivery::Agreed
                        },
                    }
                }),
            (
                group(),
                view_id(),
                any::<u64>(),
                cause,
                proptest::collection::vec(member(), 0..12)
            )
                .prop_map(|(group, view, seq, cause, members)| GroupNotice::View {
                    group,
                    view,
                    seq,
                    cause,
                    count: members.len(),
                    members,
                }),
            (
                group(),
                view_id(),
                any::<u64>(),
                Just(Cause::Join),
                any::<u32>(),
                member()
            )
                .prop_map(|(group, view, seq, cause, count, member)| {
                    GroupNotice::Change {
                        group,
                        view,
                        seq,
                        cause,
                        count: count as usize,
                        member,
                    }
                }),
            (name(), event()).prop_map(|(service, event)| GroupNotice::Stop { service, event }),
            (name(), event(), any::<u16>(), nodes()).prop_map(|(service, event, port, nodes)| {
                GroupNotice::Start {
                    service,
                    event,
                    port,
                    nodes,
                }
            }),
            (name(), event()).prop_map(|(service, event)| GroupNotice::Finish { service, event }),
            (name(), event(), nodes()).prop_map(|(service, event, nodes)| {
                GroupNotice::Waiting {
                    service,
                    event,
                    nodes,
                }
            }),
            (name(), any::<u16>()).prop_map(|(service, port)| GroupNotice::Moved { service, port }),
            name().prop_map(|service| GroupNotice::Released { service }),
            "[^\r\n]*".prop_map(GroupNotice::Closing),
            (600u16..699)
                .prop_filter("not a known code", |c| !matches!(
                    c,
                    600..=603 | 610 | 611 | 620..=625 | 699
                ))
                .prop_flat_map(|code| ("[^\r\n]*", Just(code)))
                .prop_map(|(text, code)| GroupNotice::Other { code, text }),
        ]
    }

    proptest! {
        #[test]
        fn notices_round_trip(n in notice()) {
            prop_assert_eq!(read_notice(&line_of(&n)), Ok(n));
        }

        #[test]
        fn any_notice_text_is_read_or_refused_without_panic(code in 600u16..700, text in "[^\r\n]{0,200}") {
            let got = parse_notice(code, &text);
            prop_assert!(matches!(got, Ok(_) | Err(ClientError::Protocol(_))), "{:?}", got);
        }

        #[test]
        fn a_cut_or_damaged_notice_is_never_a_panic(n in notice(), cut in any::<prop::sample::Index>(), junk in "[ @.x0-9]{0,3}") {
            let line = line_of(&n);
            let body = line.trim_end_matches('\n');
            let mut at = cut.index(body.len() + 1);
            while !body.is_char_boundary(at) {
                at -= 1;
            }
            let damaged = format!("{}{junk}\n", &body[..at]);
            if let Some(Step::Notice(n)) = steps(damaged.as_bytes()).first() {
                let got = GroupNotice::parse(n);
                prop_assert!(matches!(got, Ok(_) | Err(ClientError::Protocol(_))), "{:?}", got);
            }
        }

        #[test]
        fn members_replies_round_trip(g in group(), v in view_id(), members in proptest::collection::vec(member(), 0..20)) {
            let mut lines = vec![format!("group {g} view {v} members={}", members.len())];
            lines.extend(members.iter().map(|(c, d)| format!("{c}@{d}")));
            lines.push(format!("{} members", members.len()));
            let text = reply_text(&reply_lines(250, lines.iter().map(String::as_str)));
            prop_assert_eq!(
                parse_group_members(&text),
                Ok(GroupMembers { group: g, view: v, members })
            );
        }

        #[test]
        fn services_replies_round_trip(services in proptest::collection::vec((name(), any::<u16>(), proptest::collection::vec(name(), 0..5)), 0..10)) {
            let mut lines: Vec<String> = services
                .iter()
                .map(|(s, p, n)| format!("{s} {p} {}", n.join(",")))
                .collect();
            lines.push(format!("{} services", services.len()));
            let text = reply_text(&reply_lines(250, lines.iter().map(String::as_str)));
            let want: Vec<Service> = services
                .into_iter()
                .map(|(name, port, nodes)| Service { name, port, nodes })
                .collect();
            prop_assert_eq!(parse_services(&text), Ok(want));
        }

        #[test]
        fn a_message_line_is_one_line_and_reads_back(g in group(), payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            // What `send` writes is one request line, whatever the payload holds.
            let line = format!("send {g} {}\n", escape(&payload));
            prop_assert_eq!(line.matches('\n').count(), 1);
            prop_assert!(!line.contains('\r'));
            let text = line.trim_end_matches('\n').splitn(3, ' ').nth(2).unwrap_or_default();
            prop_assert_eq!(unescape(text).unwrap(), payload);
        }
    }
}
