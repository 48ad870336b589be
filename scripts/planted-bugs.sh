#!/usr/bin/env bash
# The plausible bugs of issue 17, planted one at a time: each must make the core's tests
# fail (and the tree is restored after each). On demand, not in CI: every plant is a
# rebuild of the core's tests, in the cheap `mutants` profile (10-30 s here).
#
#   scripts/planted-bugs.sh          # all of them
#   scripts/planted-bugs.sh 3        # only the third
#
# A line per bug: PASS (caught: some test failed) or FAIL (the bug went unnoticed).
set -euo pipefail
cd "$(dirname "$0")/.."

# Per bug: the file, the code as it is, the bug, and the tests to run
# (cargo test -p flotilla-core --lib FILTER).
files=() codes=() plants=() filters=()
plant() { files+=("$1"); codes+=("$2"); plants+=("$3"); filters+=("$4"); }
plant core/src/membership/machine/agreement.rs \
  $'.all(|m| p.holds(&m.name, &self.me.name, now, commit_timeout))\n        })' \
  $'.filter(|m| !p.holds(&m.name, &self.me.name, now, commit_timeout)).count() <= 1\n        })' \
  membership
plant core/src/membership/machine/agreement.rs \
  'if proposal.id <= self.view.id || proposal.id < self.highest {' \
  'if proposal.id <= self.view.id {' \
  membership
plant core/src/ship/machine/broker.rs \
  'Some(Some(c)) if *c == conn => ShipMsg::Confirm { ticket, conn },' \
  'Some(Some(_)) => ShipMsg::Confirm { ticket, conn },' \
  ship
plant core/src/ship/machine/decisions.rs \
  'if let Some(o) = self.decided.get(&ticket) {' \
  'if let Some(o) = None::<&ConfigOutcome> {' \
  ship
plant core/src/flood/machine/data.rs \
  '*low = (b + 1).min(*through + 1);' \
  '*low = b.min(*through + 1);' \
  flood
# Survivors of the mutation run (TESTING.md), killed since: a refusal kept for a store
# on a ship that stores nothing, and a durable root that stores its own refusals
# instead of the ones it decided for other ships.
plant core/src/ship/machine/decisions.rs \
  'if self.cfg.durable && ticket.origin != self.id {' \
  'if self.cfg.durable || ticket.origin != self.id {' \
  ship
plant core/src/ship/machine/decisions.rs \
  'if self.cfg.durable && ticket.origin != self.id {' \
  'if self.cfg.durable && ticket.origin == self.id {' \
  ship
# The size limit forgets what is staged; the store batch records the root's own
# decisions instead of other ships'.
plant core/src/ship/machine/decisions.rs \
  'let size = self.tree.size() as isize + ov.growth + ov.growth_of' \
  'let size = self.tree.size() as isize - ov.growth + ov.growth_of' \
  ship
plant core/src/ship/machine/decisions.rs \
  '.filter(|st| st.ticket.origin != self.id)' \
  '.filter(|st| st.ticket.origin == self.id)' \
  ship
# Remote decisions forgotten after a quarter of the time; the changes counter stuck.
plant core/src/ship/machine/decisions.rs \
  'now + self.cfg.timings.config_timeout * 2,' \
  'now + self.cfg.timings.config_timeout / 2,' \
  ship
plant core/src/ship/machine/decisions.rs \
  'self.stats.changes_applied += 1;' \
  'self.stats.changes_applied *= 1;' \
  ship
# The delta log's start not moved as it rolls over.
plant core/src/ship/machine/decisions.rs \
  '            self.log_first += 1;' \
  '            self.log_first *= 1;' \
  ship
# A failed store retried at once (1 >> failures), or with its pause capped at twice the
# configuration timeout instead of half of it.
plant core/src/ship/machine/decisions.rs \
  '.saturating_mul(1 << self.store.failures.min(5))' \
  '.saturating_mul(1 >> self.store.failures.min(5))' \
  ship
plant core/src/ship/machine/decisions.rs \
  '.min(self.cfg.timings.config_timeout / 2)' \
  '.min(self.cfg.timings.config_timeout * 2)' \
  ship
# Deltas pushed on from the wrong place in the log, or from before its start.
plant core/src/ship/machine/decisions.rs \
  'if self.children.is_empty() || from < self.log_first {' \
  'if self.children.is_empty() && from < self.log_first {' \
  ship
plant core/src/ship/machine/decisions.rs \
  '.skip((from - self.log_first) as usize)' \
  '.skip((from + self.log_first) as usize)' \
  ship
plant core/src/ship/machine/decisions.rs \
  '.skip((from - self.log_first) as usize)' \
  '.skip((from / self.log_first) as usize)' \
  ship
# The delta log keeping one change fewer than `delta_log`.
plant core/src/ship/machine/decisions.rs \
  'if self.log.len() > self.cfg.limits.delta_log {' \
  'if self.log.len() >= self.cfg.limits.delta_log {' \
  ship
plant core/src/ship/machine/decisions.rs \
  'if self.log.len() > self.cfg.limits.delta_log {' \
  'if self.log.len() == self.cfg.limits.delta_log {' \
  ship
# A daughtership's client answered before the daughtership holds its write.
plant core/src/ship/machine/decisions.rs \
  '} if *v <= self.version => {' \
  '} if true => {' \
  ship
# Survivors of the run over membership's agreement path (TESTING.md): a proposal sent
# again refused as stale; an acknowledgement of an earlier proposal counted.
plant core/src/membership/machine/agreement.rs \
  'if proposal.id <= self.view.id || proposal.id < self.highest {' \
  'if proposal.id <= self.view.id || proposal.id <= self.highest {' \
  membership
plant core/src/membership/machine/agreement.rs \
  'let current = self.proposing.as_ref().is_some_and(|p| p.view.id == id);' \
  'let current = self.proposing.is_some();' \
  membership
# A member that never gets the commit of what it acknowledged waits for ever.
plant core/src/membership/machine/agreement.rs \
  '    pub(super) fn on_commit_wait(&mut self, now: Instant) {' \
  '    pub(super) fn on_commit_wait(&mut self, now: Instant) { if true { let _ = now; return; }' \
  membership
# A non-primary view takes its own members as its basis.
plant core/src/membership/machine/agreement.rs \
  'v.basis = if v.primary && configured.is_empty() {' \
  'v.basis = if v.primary || configured.is_empty() {' \
  membership
# A leaving daemon acknowledging a proposal that still holds it.
plant core/src/membership/machine/agreement.rs \
  'if !proposal.contains(&self.me.name) || self.leaving {' \
  'if !proposal.contains(&self.me.name) && self.leaving {' \
  membership

# Survivors of the run over the broker's offer path: a relay that lost its route
# answers a repeated offer itself; an offer with no time left is taken; a decline is
# dropped, so the acceptor stays reserved until its time-out.
plant core/src/ship/machine/broker.rs \
  'None if ticket.origin == self.id => {' \
  'None if true => {' \
  ship
plant core/src/ship/machine/broker.rs \
  'if !waiting || ttl == 0 {' \
  'if !waiting && ttl == 0 {' \
  ship
plant core/src/ship/machine/broker.rs \
  '    pub(super) fn on_decline(&mut self, now: Instant, from: Hop, ticket: Ticket, conn: String) {' \
  '    pub(super) fn on_decline(&mut self, now: Instant, from: Hop, ticket: Ticket, conn: String) { if true { let _ = (now, from, ticket, conn); return; }' \
  ship

# Survivors of the run over the rest of membership's agreement file: changes that keep
# coming postpone the proposal for ever; proposals not counted.
plant core/src/membership/machine/agreement.rs \
  'if self.proposing.is_none() && !self.timers.contains(&Timer::Propose) {' \
  'if self.proposing.is_none() || !self.timers.contains(&Timer::Propose) {' \
  membership
plant core/src/membership/machine/agreement.rs \
  'self.stats.proposals += 1;' \
  'self.stats.proposals *= 1;' \
  membership

# A leaving coordinator that still proposes (terms of propose's guard joined by &&
# instead of ||: each of the three mutants).
plant core/src/membership/machine/agreement.rs \
  '            || self.proposing.is_some()' \
  '            && self.proposing.is_some()' \
  membership

plant core/src/membership/machine/agreement.rs \
  $'        if self.leaving\n            || self.proposing.is_some()\n            || !self.is_coordinator()' \
  $'        if (self.leaving\n            || self.proposing.is_some())\n            && !self.is_coordinator()' \
  membership
plant core/src/membership/machine/agreement.rs \
  $'        if self.leaving\n            || self.proposing.is_some()\n            || !self.is_coordinator()\n            || !self.changes_wanted()' \
  $'        if (self.leaving\n            || self.proposing.is_some()\n            || !self.is_coordinator())\n            && !self.changes_wanted()' \
  membership

# A proposal's retry taken for its deadline, so a member slow to acknowledge (within
# ack-timeout) is given up after three retries.
plant core/src/membership/machine/agreement.rs \
  '        if now < p.deadline {' \
  '        if now == p.deadline {' \
  membership
plant core/src/membership/machine/agreement.rs \
  '        if now < p.deadline {' \
  '        if now > p.deadline {' \
  membership

# The proposal's give-up path (survivors of the agreement file): a retry at the deadline
# taken for one before it; the silent taken for those that answered; too few or too
# many extensions, or shorter ones; extensions never counted.
plant core/src/membership/machine/agreement.rs \
  '        if now < p.deadline {' \
  '        if now <= p.deadline {' \
  membership
plant core/src/membership/machine/agreement.rs \
  $'            .filter(|m| !p.holds(&m.name, &self.me.name, now, commit_timeout))\n            .map(|m| m.name.clone())' \
  $'            .filter(|m| p.holds(&m.name, &self.me.name, now, commit_timeout))\n            .map(|m| m.name.clone())' \
  membership
plant core/src/membership/machine/agreement.rs \
  '        if p.extensions < MAX_EXTENSIONS {' \
  '        if p.extensions == MAX_EXTENSIONS {' \
  membership
plant core/src/membership/machine/agreement.rs \
  '        if p.extensions < MAX_EXTENSIONS {' \
  '        if p.extensions > MAX_EXTENSIONS {' \
  membership
plant core/src/membership/machine/agreement.rs \
  '        if p.extensions < MAX_EXTENSIONS {' \
  '        if p.extensions <= MAX_EXTENSIONS {' \
  membership
plant core/src/membership/machine/agreement.rs \
  'let extra = self.timing().verify_for + self.timing().retry;' \
  'let extra = self.timing().verify_for - self.timing().retry;' \
  membership
plant core/src/membership/machine/agreement.rs \
  '                p.extensions += 1;' \
  '                p.extensions *= 1;' \
  membership

# An outbid coordinator giving way to the wrong names.
plant core/src/membership/machine/agreement.rs \
  $'        if self.unreachable.contains(&higher.coordinator)\n            || higher.coordinator.as_str() >= self.me.name.as_str()' \
  $'        if self.unreachable.contains(&higher.coordinator)\n            && higher.coordinator.as_str() >= self.me.name.as_str()' \
  membership
plant core/src/membership/machine/agreement.rs \
  '            || higher.coordinator.as_str() >= self.me.name.as_str()' \
  '            || higher.coordinator.as_str() < self.me.name.as_str()' \
  membership

# A late commit lowering the highest id seen; installed views not counted.
plant core/src/membership/machine/agreement.rs \
  '        if v.id > self.highest {' \
  '        if v.id < self.highest {' \
  membership
plant core/src/membership/machine/agreement.rs \
  '        self.stats.views += 1;' \
  '        self.stats.views *= 1;' \
  membership

# The members a view lost not remembered (so not greeted after a heal).
plant core/src/membership/machine/agreement.rs \
  $'            .filter(|m| !v.contains(&m.name))\n            .cloned()\n            .collect();\n        for m in &gone {' \
  $'            .filter(|m| v.contains(&m.name))\n            .cloned()\n            .collect();\n        for m in &gone {' \
  membership

# A reloaded configuration's daemons remembered wrongly: members of the view taken for
# absent (the check fires), or the listed daemons not running forgotten.
plant core/src/membership/machine/agreement.rs \
  '                if !v.contains(n) && *n != self.me.name {' \
  '                if v.contains(n) && *n != self.me.name {' \
  membership
plant core/src/membership/machine/agreement.rs \
  '                if !v.contains(n) && *n != self.me.name {' \
  '                if !v.contains(n) || *n != self.me.name {' \
  membership
plant core/src/membership/machine/agreement.rs \
  '                if !v.contains(n) && *n != self.me.name {' \
  '                if !v.contains(n) && *n == self.me.name {' \
  membership

# A daemon that keeps asking to join once in a view; empty suspect reports after every
# view.
plant core/src/membership/machine/agreement.rs \
  '        if self.view.members.len() > 1 {' \
  '        if self.view.members.len() < 1 {' \
  membership
plant core/src/membership/machine/agreement.rs \
  '        if self.view.members.len() > 1 {' \
  '        if self.view.members.len() == 1 {' \
  membership
plant core/src/membership/machine/agreement.rs \
  $'        if !self.suspects.is_empty() {\n            self.report_suspects(now);\n        }\n    }' \
  $'        if self.suspects.is_empty() {\n            self.report_suspects(now);\n        }\n    }' \
  membership

# The gather (survivors: no unit test reached it): none started, or not counted.
plant core/src/membership/machine/agreement.rs \
  '    pub(super) fn start_gather(&mut self, now: Instant) {' \
  '    pub(super) fn start_gather(&mut self, now: Instant) { if true { let _ = now; return; }' \
  membership
plant core/src/membership/machine/agreement.rs \
  '        self.stats.gathers += 1;' \
  '        self.stats.gathers *= 1;' \
  membership
# The gather's end never handled.
plant core/src/membership/machine/agreement.rs \
  '    pub(super) fn on_gather_timer(&mut self, now: Instant) {' \
  '    pub(super) fn on_gather_timer(&mut self, now: Instant) { if true { let _ = now; return; }' \
  membership

# A reload forgetting the daemons removed before (it keeps only those listed again).
plant core/src/membership/machine/agreement.rs \
  $'            .removed\n            .iter()\n            .filter(|n| !listed.contains(n.as_str()))' \
  $'            .removed\n            .iter()\n            .filter(|n| listed.contains(n.as_str()))' \
  membership

only=${1:-}
failed=0
# Survivors of the broker's mutation run (TESTING.md), killed since: connection ids
# given twice, a reserved accept matched again, the offer margin skipped for connects
# from elsewhere, and a cancel ignored.
plant core/src/ship/machine/broker.rs \
  '        if !reuse {
            self.next_conn += 1;' \
  '        if reuse {
            self.next_conn += 1;' \
  ship
plant core/src/ship/machine/broker.rs \
  ') && (!remote || r.deadline == Instant::MAX || r.deadline > now + margin)' \
  ') || (!remote || r.deadline == Instant::MAX || r.deadline > now + margin)' \
  ship
plant core/src/ship/machine/broker.rs \
  ') && (!remote || r.deadline == Instant::MAX || r.deadline > now + margin)' \
  ') && (remote || r.deadline == Instant::MAX || r.deadline > now + margin)' \
  ship
plant core/src/ship/machine/broker.rs \
  '    pub(super) fn on_cancel(&mut self, now: Instant, ticket: Ticket) {
        self.end_connect(now, ticket, None);' \
  '    pub(super) fn on_cancel(&mut self, now: Instant, ticket: Ticket) {
        let _ = (now, ticket);' \
  ship
# Relays' routes dropped a second early (the grace after a connect's deadline halved).
plant core/src/ship/machine/broker.rs \
  'let grace = (self.cfg.timings.retry * 4).max(self.cfg.timings.offer_margin * 2);' \
  'let grace = (self.cfg.timings.retry * 4).max(self.cfg.timings.offer_margin / 2);' \
  ship
# A stale view (or one of another life of this daemon) taken unless it is both.
plant core/src/groups/machine/mod.rs \
  '        if v.id <= *current
            || v.member(&self.me.name).map(|m| m.incarnation) != Some(self.me.incarnation)' \
  '        if v.id <= *current
            && v.member(&self.me.name).map(|m| m.incarnation) != Some(self.me.incarnation)' \
  groups
# A flush table that ignores each daemon's own joins and leaves above what it delivered.
plant core/src/groups/machine/mod.rs \
  'for (_, it) in above.take_while(|(s, _)| **s <= *hi) {' \
  'for (_, it) in above.take_while(|(s, _)| **s > *hi) {' \
  groups
# The flush table applies other daemons' items to a daemon, not its own.
plant core/src/groups/machine/mod.rs \
  'if it.id.origin != *daemon || Some(it.id.incarnation) != incarnation {' \
  'if it.id.origin == *daemon || Some(it.id.incarnation) != incarnation {' \
  groups
# The flush table applies another daemon's items of the same incarnation number.
plant core/src/groups/machine/mod.rs \
  'if it.id.origin != *daemon || Some(it.id.incarnation) != incarnation {' \
  'if it.id.origin != *daemon && Some(it.id.incarnation) != incarnation {' \
  groups
# The flush table applies a daemon's items of other lives only.
plant core/src/groups/machine/mod.rs \
  'if it.id.origin != *daemon || Some(it.id.incarnation) != incarnation {' \
  'if it.id.origin != *daemon || Some(it.id.incarnation) == incarnation {' \
  groups
# A start carries every held item, also those every member delivered.
plant core/src/groups/machine/mod.rs \
  '.filter(|(s, _)| *s > lo && *s <= hi)' \
  '.filter(|(s, _)| *s > lo || *s <= hi)' \
  groups
# An order of the view being left is delivered during its flush.
plant core/src/groups/machine/mod.rs \
  'if *view != self.view.id || self.flush.is_some() {' \
  'if *view != self.view.id && self.flush.is_some() {' \
  groups
# A member never takes a higher stability mark (== or <).
plant core/src/groups/machine/mod.rs \
  'if stable > self.stable && stable <= self.delivered {' \
  'if stable == self.stable && stable <= self.delivered {' \
  groups
plant core/src/groups/machine/mod.rs \
  'if stable > self.stable && stable <= self.delivered {' \
  'if stable < self.stable && stable <= self.delivered {' \
  groups
# A member takes a stability mark past what it delivered (or a stale lower one).
plant core/src/groups/machine/mod.rs \
  'if stable > self.stable && stable <= self.delivered {' \
  'if stable > self.stable || stable <= self.delivered {' \
  groups
# A member takes only stability marks past what it delivered.
plant core/src/groups/machine/mod.rs \
  'if stable > self.stable && stable <= self.delivered {' \
  'if stable > self.stable && stable > self.delivered {' \
  groups
# The sequencer's window one item short (== or >=).
plant core/src/groups/machine/mod.rs \
  'if s.next.saturating_sub(self.stable) > WINDOW || s.log_bytes > LOG_BYTES {' \
  'if s.next.saturating_sub(self.stable) == WINDOW || s.log_bytes > LOG_BYTES {' \
  groups
plant core/src/groups/machine/mod.rs \
  'if s.next.saturating_sub(self.stable) > WINDOW || s.log_bytes > LOG_BYTES {' \
  'if s.next.saturating_sub(self.stable) >= WINDOW || s.log_bytes > LOG_BYTES {' \
  groups
# The sequencer's byte bound stops at LOG_BYTES instead of one item past it (== or >=).
plant core/src/groups/machine/mod.rs \
  'if s.next.saturating_sub(self.stable) > WINDOW || s.log_bytes > LOG_BYTES {' \
  'if s.next.saturating_sub(self.stable) > WINDOW || s.log_bytes == LOG_BYTES {' \
  groups
plant core/src/groups/machine/mod.rs \
  'if s.next.saturating_sub(self.stable) > WINDOW || s.log_bytes > LOG_BYTES {' \
  'if s.next.saturating_sub(self.stable) > WINDOW || s.log_bytes >= LOG_BYTES {' \
  groups
# The sequencer drops an origin's items ahead of the one expected instead of those behind.
plant core/src/groups/machine/mod.rs \
  'while items.first_key_value().is_some_and(|(l, _)| *l < exp) {' \
  'while items.first_key_value().is_some_and(|(l, _)| *l > exp) {' \
  groups
# A member's bound on orders kept past a gap: never (==, >, 2 / WINDOW), one more (<=), 2 + WINDOW.
plant core/src/groups/machine/mod.rs \
  '} else if self.ahead.len() < (2 * WINDOW) as usize {' \
  '} else if self.ahead.len() == (2 * WINDOW) as usize {' \
  groups
plant core/src/groups/machine/mod.rs \
  '} else if self.ahead.len() < (2 * WINDOW) as usize {' \
  '} else if self.ahead.len() > (2 * WINDOW) as usize {' \
  groups
plant core/src/groups/machine/mod.rs \
  '} else if self.ahead.len() < (2 * WINDOW) as usize {' \
  '} else if self.ahead.len() <= (2 * WINDOW) as usize {' \
  groups
plant core/src/groups/machine/mod.rs \
  '} else if self.ahead.len() < (2 * WINDOW) as usize {' \
  '} else if self.ahead.len() < (2 + WINDOW) as usize {' \
  groups
plant core/src/groups/machine/mod.rs \
  '} else if self.ahead.len() < (2 * WINDOW) as usize {' \
  '} else if self.ahead.len() < (2 / WINDOW) as usize {' \
  groups
# The sequencer keeps one more early item of an origin than MAX_PENDING.
plant core/src/groups/machine/mod.rs \
  'if early.len() < MAX_PENDING {' \
  'if early.len() <= MAX_PENDING {' \
  groups
# The flush's states (mutation survivors): a state from outside the new view taken, and
# the last state not starting the view at once.
plant core/src/groups/machine/mod.rs \
  'if f.view.id != view || f.view.member(&from).is_none() {' \
  'if f.view.id != view && f.view.member(&from).is_none() {' \
  groups
plant core/src/groups/machine/mod.rs \
  'if f.states.len() == f.view.members.len() {' \
  'if f.states.len() != f.view.members.len() {' \
  groups
# Survivors of the broker's mutation run (TESTING.md, "the rest of the file"), killed
# since: a confirm or decline for another connection id taken for the reservation
# (holder_accept), a relay that remembers how a connect ended and an origin that does
# not (end_connect, caught by the check that only the origin remembers), the origin's
# memory of a taken connection cut short (remember_finished), relays that ignore a
# repeated connect (on_connect), an offered or forwarded connect sent again, one sent
# down a child without the key, back up to the parent, or parked without NotHere
# (route_connect, reevaluate_key), and offers placed down the wrong subtree or back up
# (toward_ship).
plant core/src/ship/machine/broker.rs \
  '} if r.conn == conn && r.connect == ticket => Some(accept),' \
  '} if true => Some(accept),' \
  ship
plant core/src/ship/machine/broker.rs \
  '} if r.conn == conn && r.connect == ticket => Some(accept),' \
  '} if r.conn == conn || r.connect == ticket => Some(accept),' \
  ship
plant core/src/ship/machine/broker.rs \
  '        if from == Hop::Here {
            self.remember_finished(now, ticket, conn, deadline);' \
  '        if from != Hop::Here {
            self.remember_finished(now, ticket, conn, deadline);' \
  ship
plant core/src/ship/machine/broker.rs \
  '.saturating_add(t.offer_margin + t.retry * 4)' \
  '.saturating_add(t.offer_margin - t.retry * 4)' \
  ship
plant core/src/ship/machine/broker.rs \
  '.saturating_add(t.offer_margin + t.retry * 4)' \
  '.saturating_add(t.offer_margin + t.retry / 4)' \
  ship
plant core/src/ship/machine/broker.rs \
  '.max(now + t.retry * 40);' \
  '.max(now + t.retry / 40);' \
  ship
plant core/src/ship/machine/broker.rs \
  '            if r.from == Hop::Here {
                // Our own connect came back' \
  '            if r.from != Hop::Here {
                // Our own connect came back' \
  ship
plant core/src/ship/machine/broker.rs \
  'if r.held.is_some() || r.offered {' \
  'if r.held.is_some() && r.offered {' \
  ship
plant core/src/ship/machine/broker.rs \
  'matches!(r.to, None | Some(Hop::Parent)) && r.held.is_none() && !r.offered' \
  'matches!(r.to, None | Some(Hop::Parent)) || r.held.is_none() && !r.offered' \
  ship
plant core/src/ship/machine/broker.rs \
  'matches!(r.to, None | Some(Hop::Parent)) && r.held.is_none() && !r.offered' \
  'matches!(r.to, None | Some(Hop::Parent)) && r.held.is_none() || !r.offered' \
  ship
plant core/src/ship/machine/broker.rs \
  '                    && c.keys.contains(&key)' \
  '                    || c.keys.contains(&key)' \
  ship
plant core/src/ship/machine/broker.rs \
  '} else if self.parent.is_some() && from != Hop::Parent {' \
  '} else if self.parent.is_some() || from != Hop::Parent {' \
  ship
plant core/src/ship/machine/broker.rs \
  'None if from == Hop::Parent => {' \
  'None if false => {' \
  ship
plant core/src/ship/machine/broker.rs \
  '.find(|(a, c)| Hop::Child(**a) != from && c.subtree.contains(&ship))' \
  '.find(|(a, c)| Hop::Child(**a) != from || c.subtree.contains(&ship))' \
  ship
plant core/src/ship/machine/broker.rs \
  '(self.parent.is_some() && from != Hop::Parent).then_some(Hop::Parent)' \
  '(self.parent.is_some() || from != Hop::Parent).then_some(Hop::Parent)' \
  ship
# The open survivors of the agreement file's run, killed since (TESTING.md).
# A coordinator's proposal above a view committed meanwhile dropped (and those at or
# below it kept).
plant core/src/membership/machine/agreement.rs \
  '.is_some_and(|p| p.view.id <= self.view.id)' \
  '.is_some_and(|p| p.view.id > self.view.id)' \
  membership
# The catch-up from a view state: the newer view not installed (==, <), or the same one
# installed again (>=).
plant core/src/membership/machine/agreement.rs \
  '            if v.id > self.view.id {' \
  '            if v.id == self.view.id {' \
  membership
plant core/src/membership/machine/agreement.rs \
  '            if v.id > self.view.id {' \
  '            if v.id < self.view.id {' \
  membership
plant core/src/membership/machine/agreement.rs \
  '            if v.id > self.view.id {' \
  '            if v.id >= self.view.id {' \
  membership
# A merge taking the foreign view's entries for members of this view.
plant core/src/membership/machine/agreement.rs \
  'if !self.view.contains(&m.name) && m.name != self.me.name {' \
  'if !self.view.contains(&m.name) || m.name != self.me.name {' \
  membership
# A daemon left out not noticing (==, <, sharing no member), or taking a view that
# shares no member, or an older one, for one that left it out (||, sharing always).
plant core/src/membership/machine/agreement.rs \
  'if v.id > self.view.id && self.view.contains_any_of(&v) && !taken_in {' \
  'if v.id == self.view.id && self.view.contains_any_of(&v) && !taken_in {' \
  membership
plant core/src/membership/machine/agreement.rs \
  'if v.id > self.view.id && self.view.contains_any_of(&v) && !taken_in {' \
  'if v.id < self.view.id && self.view.contains_any_of(&v) && !taken_in {' \
  membership
plant core/src/membership/machine/agreement.rs \
  'if v.id > self.view.id && self.view.contains_any_of(&v) && !taken_in {' \
  'if v.id > self.view.id || self.view.contains_any_of(&v) && !taken_in {' \
  membership
plant core/src/membership/machine/agreement.rs \
  '        other.names().any(|n| self.contains(n))' \
  $'        let _ = other;\n        false' \
  membership
plant core/src/membership/machine/agreement.rs \
  '        other.names().any(|n| self.contains(n))' \
  $'        let _ = other;\n        true' \
  membership
# The gather asking nobody, only itself, everyone again, or only those that answered.
plant core/src/membership/machine/agreement.rs \
  '    fn send_gather(&mut self) {' \
  '    fn send_gather(&mut self) { if true { return; }' \
  membership
plant core/src/membership/machine/agreement.rs \
  '.filter(|m| m.name != self.me.name && !g.here.contains_key(&m.name))' \
  '.filter(|m| m.name == self.me.name && !g.here.contains_key(&m.name))' \
  membership
plant core/src/membership/machine/agreement.rs \
  '.filter(|m| m.name != self.me.name && !g.here.contains_key(&m.name))' \
  '.filter(|m| m.name != self.me.name || !g.here.contains_key(&m.name))' \
  membership
plant core/src/membership/machine/agreement.rs \
  '.filter(|m| m.name != self.me.name && !g.here.contains_key(&m.name))' \
  '.filter(|m| m.name != self.me.name && g.here.contains_key(&m.name))' \
  membership
# Answers to a gather not counted, counted with a stale nonce or from another life, or
# the right ones refused.
plant core/src/membership/machine/agreement.rs \
  '    pub(super) fn on_here(&mut self, nonce: u64, from: Member, their: ViewId) {' \
  '    pub(super) fn on_here(&mut self, nonce: u64, from: Member, their: ViewId) { if true { let _ = (nonce, from, their); return; }' \
  membership
plant core/src/membership/machine/agreement.rs \
  '        if g.nonce != nonce' \
  '        if g.nonce == nonce' \
  membership
plant core/src/membership/machine/agreement.rs \
  $'        if g.nonce != nonce\n            || self.view' \
  $'        if g.nonce != nonce\n            && self.view' \
  membership
plant core/src/membership/machine/agreement.rs \
  '|| self.view.member(&from.name).map(|m| m.incarnation) != Some(from.incarnation)' \
  '|| self.view.member(&from.name).map(|m| m.incarnation) == Some(from.incarnation)' \
  membership
# The gather ending at its first retry (==, >) or a retry late (<=); the election kept
# by a gatherer that is not the least name (and sent by one that is).
plant core/src/membership/machine/agreement.rs \
  '        if now < g.until {' \
  '        if now == g.until {' \
  membership
plant core/src/membership/machine/agreement.rs \
  '        if now < g.until {' \
  '        if now > g.until {' \
  membership
plant core/src/membership/machine/agreement.rs \
  '        if now < g.until {' \
  '        if now <= g.until {' \
  membership
plant core/src/membership/machine/agreement.rs \
  '        if least.name == self.me.name {' \
  '        if least.name != self.me.name {' \
  membership
# An election ignored, or the elected daemon checking the members the gather reached,
# all of them, or none.
plant core/src/membership/machine/agreement.rs \
  '    pub(super) fn on_elect(&mut self, now: Instant, members: Vec<Member>, epoch: u64) {' \
  '    pub(super) fn on_elect(&mut self, now: Instant, members: Vec<Member>, epoch: u64) { if true { let _ = (now, members, epoch); return; }' \
  membership
plant core/src/membership/machine/agreement.rs \
  'if !members.iter().any(|m| m.name == self.me.name) {' \
  'if members.iter().any(|m| m.name == self.me.name) {' \
  membership
plant core/src/membership/machine/agreement.rs \
  'if !members.iter().any(|m| m.name == self.me.name) {' \
  'if !members.iter().any(|m| m.name != self.me.name) {' \
  membership
plant core/src/membership/machine/agreement.rs \
  '.filter(|n| !reached.contains(n) && *n != self.me.name)' \
  '.filter(|n| reached.contains(n) && *n != self.me.name)' \
  membership
plant core/src/membership/machine/agreement.rs \
  '.filter(|n| !reached.contains(n) && *n != self.me.name)' \
  '.filter(|n| !reached.contains(n) || *n != self.me.name)' \
  membership
plant core/src/membership/machine/agreement.rs \
  '.filter(|n| !reached.contains(n) && *n != self.me.name)' \
  '.filter(|n| !reached.contains(n) && *n == self.me.name)' \
  membership
# A repeated start of an earlier view acknowledged (mutation survivor).
plant core/src/groups/machine/mod.rs \
  'if view == self.view.id && !self.is_sequencer() {' \
  'if view == self.view.id || !self.is_sequencer() {' \
  groups
# A member delivers an order it held past a gap beyond the old view's end (mutation
# survivor).
plant core/src/groups/machine/mod.rs \
  'while self.delivered < hi {' \
  'while self.delivered <= hi {' \
  groups
# A former sequencer keeps repeating its moot start (mutation survivor).
plant core/src/groups/machine/mod.rs \
  '        if !self.is_sequencer()
            || self' \
  '        if !self.is_sequencer()
            && self' \
  groups
# The memory of departed origins pruned at the bound or never (mutation survivors).
plant core/src/groups/machine/mod.rs \
  'if self.seen.len() > 4 * super::super::membership::msg::MAX_MEMBERS {' \
  'if self.seen.len() >= 4 * super::super::membership::msg::MAX_MEMBERS {' \
  groups
plant core/src/groups/machine/mod.rs \
  'if self.seen.len() > 4 * super::super::membership::msg::MAX_MEMBERS {' \
  'if self.seen.len() < 4 * super::super::membership::msg::MAX_MEMBERS {' \
  groups
plant core/src/groups/machine/mod.rs \
  'if self.seen.len() > 4 * super::super::membership::msg::MAX_MEMBERS {' \
  'if self.seen.len() == 4 * super::super::membership::msg::MAX_MEMBERS {' \
  groups
# Flushes not counted (mutation survivor).
plant core/src/groups/machine/mod.rs \
  'self.stats.flushes += 1;' \
  'self.stats.flushes *= 1;' \
  groups
# The bound on the memory of departed origins miscomputed (mutation survivors).
plant core/src/groups/machine/mod.rs \
  'if self.seen.len() > 4 * super::super::membership::msg::MAX_MEMBERS {' \
  'if self.seen.len() > 4 + super::super::membership::msg::MAX_MEMBERS {' \
  groups
plant core/src/groups/machine/mod.rs \
  'if self.seen.len() > 4 * super::super::membership::msg::MAX_MEMBERS {' \
  'if self.seen.len() > 4 / super::super::membership::msg::MAX_MEMBERS {' \
  groups
# Survivors of the mutation run over the flood data plane (issue 17): the update size
# limit at its edge; the filter that sends a pulled update on only to neighbours whose
# digests do not show it; a neighbour's frames in the group not heard.
plant core/src/flood/machine/data.rs \
  'let name = self.resolve_group(group)?;
        let max = self.cfg.limits.reader.max_update;
        if data.len() > max {' \
  'let name = self.resolve_group(group)?;
        let max = self.cfg.limits.reader.max_update;
        if data.len() >= max {' \
  flood
plant core/src/flood/machine/data.rs \
  'let name = self.resolve_group(group)?;
        let max = self.cfg.limits.reader.max_update;
        if data.len() > max {' \
  'let name = self.resolve_group(group)?;
        let max = self.cfg.limits.reader.max_update;
        if data.len() == max {' \
  flood
plant core/src/flood/machine/data.rs \
  '!pulled
                    || g.neighbours' \
  '!pulled
                    && g.neighbours' \
  flood
plant core/src/flood/machine/data.rs \
  '!pulled
                    || g.neighbours' \
  'pulled
                    || g.neighbours' \
  flood
plant core/src/flood/machine/data.rs \
  '.is_none_or(|&(_, through)| through < seq)' \
  '.is_none_or(|&(_, through)| through == seq)' \
  flood
plant core/src/flood/machine/data.rs \
  '.is_none_or(|&(_, through)| through < seq)' \
  '.is_none_or(|&(_, through)| through > seq)' \
  flood
plant core/src/flood/machine/data.rs \
  '.is_none_or(|&(_, through)| through < seq)' \
  '.is_none_or(|&(_, through)| through <= seq)' \
  flood
plant core/src/flood/machine/data.rs \
  'n.heard = Some(now);' \
  'let _ = (n, now);' \
  flood
# The first window of the flood data plane closed too early, too late or never; the
# bound on what arrived in it miscounted; a stream no neighbour named taken wrongly.
plant core/src/flood/machine/data.rs \
  'let answered = g.neighbours.values().all(|n| n.got_full && n.got_start);' \
  'let answered = g.neighbours.values().all(|n| n.got_full || n.got_start);' \
  flood
plant core/src/flood/machine/data.rs \
  'if now < until && !answered {' \
  'if now < until || !answered {' \
  flood
plant core/src/flood/machine/data.rs \
  'if now < until && !answered {' \
  'if now <= until && !answered {' \
  flood
plant core/src/flood/machine/data.rs \
  'Some(start) if start < s.base => {
                    let arrived = (s.through + 1 - s.base) as usize + s.above.len();' \
  'Some(start) if start < s.base => {
                    let arrived = (s.through + 1 - s.base) as usize - s.above.len();' \
  flood
plant core/src/flood/machine/data.rs \
  'Some(start) if start < s.base => {
                    let arrived = (s.through + 1 - s.base) as usize + s.above.len();' \
  'Some(start) if start < s.base => {
                    let arrived = (s.through + 1 - s.base) as usize * s.above.len();' \
  flood
plant core/src/flood/machine/data.rs \
  'Some(start) if start < s.base => {
                    let arrived = (s.through + 1 - s.base) as usize + s.above.len();' \
  'Some(start) if start < s.base => {
                    let arrived = (s.through + 1 + s.base) as usize + s.above.len();' \
  flood
plant core/src/flood/machine/data.rs \
  'None if answered && s.base > 1 =>' \
  'None if true =>' \
  flood
plant core/src/flood/machine/data.rs \
  'None if answered && s.base > 1 =>' \
  'None if false =>' \
  flood
# The first window's close: the bound on what arrived, and the range and count reported
# behind, for a named stream and for one no neighbour named.
plant core/src/flood/machine/data.rs \
  'Some(start) if start < s.base => {
                    let arrived = (s.through + 1 - s.base) as usize + s.above.len();' \
  'Some(start) if start < s.base => {
                    let arrived = (s.through + 1 / s.base) as usize + s.above.len();' \
  flood
plant core/src/flood/machine/data.rs \
  'let to = s.base - 1;
                        self.stats.lost += to - start + 1;' \
  'let to = s.base + 1;
                        self.stats.lost += to - start + 1;' \
  flood
plant core/src/flood/machine/data.rs \
  'let to = s.base - 1;
                        self.stats.lost += to - start + 1;' \
  'let to = s.base / 1;
                        self.stats.lost += to - start + 1;' \
  flood
plant core/src/flood/machine/data.rs \
  'let to = s.base - 1;
                        self.stats.lost += to - start + 1;' \
  'let to = s.base - 1;
                        self.stats.lost -= to - start + 1;' \
  flood
plant core/src/flood/machine/data.rs \
  'let to = s.base - 1;
                        self.stats.lost += to - start + 1;' \
  'let to = s.base - 1;
                        self.stats.lost *= to - start + 1;' \
  flood
plant core/src/flood/machine/data.rs \
  'let to = s.base - 1;
                        self.stats.lost += to - start + 1;' \
  'let to = s.base - 1;
                        self.stats.lost += to - start - 1;' \
  flood
plant core/src/flood/machine/data.rs \
  'let to = s.base - 1;
                        self.stats.lost += to - start + 1;' \
  'let to = s.base - 1;
                        self.stats.lost += to - start * 1;' \
  flood
plant core/src/flood/machine/data.rs \
  'let to = s.base - 1;
                        self.stats.lost += to - start + 1;' \
  'let to = s.base - 1;
                        self.stats.lost += to + start + 1;' \
  flood
plant core/src/flood/machine/data.rs \
  'let to = s.base - 1;
                        self.stats.lost += to - start + 1;' \
  'let to = s.base - 1;
                        self.stats.lost += to / start + 1;' \
  flood
plant core/src/flood/machine/data.rs \
  'None if answered && s.base > 1 => {
                    let arrived = (s.through + 1 - s.base) as usize + s.above.len();
                    if arrived <= max_above {' \
  'None if answered || s.base > 1 => {
                    let arrived = (s.through + 1 - s.base) as usize + s.above.len();
                    if arrived <= max_above {' \
  flood
plant core/src/flood/machine/data.rs \
  'None if answered && s.base > 1 => {
                    let arrived = (s.through + 1 - s.base) as usize + s.above.len();
                    if arrived <= max_above {' \
  'None if answered && s.base == 1 => {
                    let arrived = (s.through + 1 - s.base) as usize + s.above.len();
                    if arrived <= max_above {' \
  flood
plant core/src/flood/machine/data.rs \
  'None if answered && s.base > 1 => {
                    let arrived = (s.through + 1 - s.base) as usize + s.above.len();
                    if arrived <= max_above {' \
  'None if answered && s.base < 1 => {
                    let arrived = (s.through + 1 - s.base) as usize + s.above.len();
                    if arrived <= max_above {' \
  flood
plant core/src/flood/machine/data.rs \
  'None if answered && s.base > 1 => {
                    let arrived = (s.through + 1 - s.base) as usize + s.above.len();
                    if arrived <= max_above {' \
  'None if answered && s.base >= 1 => {
                    let arrived = (s.through + 1 - s.base) as usize + s.above.len();
                    if arrived <= max_above {' \
  flood
plant core/src/flood/machine/data.rs \
  'None if answered && s.base > 1 => {
                    let arrived = (s.through + 1 - s.base) as usize + s.above.len();
                    if arrived <= max_above {' \
  'None if answered && s.base > 1 => {
                    let arrived = (s.through + 1 - s.base) as usize - s.above.len();
                    if arrived <= max_above {' \
  flood
plant core/src/flood/machine/data.rs \
  'None if answered && s.base > 1 => {
                    let arrived = (s.through + 1 - s.base) as usize + s.above.len();
                    if arrived <= max_above {' \
  'None if answered && s.base > 1 => {
                    let arrived = (s.through + 1 - s.base) as usize * s.above.len();
                    if arrived <= max_above {' \
  flood
plant core/src/flood/machine/data.rs \
  'None if answered && s.base > 1 => {
                    let arrived = (s.through + 1 - s.base) as usize + s.above.len();
                    if arrived <= max_above {' \
  'None if answered && s.base > 1 => {
                    let arrived = (s.through + 1 + s.base) as usize + s.above.len();
                    if arrived <= max_above {' \
  flood
plant core/src/flood/machine/data.rs \
  'None if answered && s.base > 1 => {
                    let arrived = (s.through + 1 - s.base) as usize + s.above.len();
                    if arrived <= max_above {' \
  'None if answered && s.base > 1 => {
                    let arrived = (s.through + 1 / s.base) as usize + s.above.len();
                    if arrived <= max_above {' \
  flood
plant core/src/flood/machine/data.rs \
  'None if answered && s.base > 1 => {
                    let arrived = (s.through + 1 - s.base) as usize + s.above.len();
                    if arrived <= max_above {' \
  'None if answered && s.base > 1 => {
                    let arrived = (s.through - 1 - s.base) as usize + s.above.len();
                    if arrived <= max_above {' \
  flood
plant core/src/flood/machine/data.rs \
  'None if answered && s.base > 1 => {
                    let arrived = (s.through + 1 - s.base) as usize + s.above.len();
                    if arrived <= max_above {' \
  'None if answered && s.base > 1 => {
                    let arrived = (s.through * 1 - s.base) as usize + s.above.len();
                    if arrived <= max_above {' \
  flood
plant core/src/flood/machine/data.rs \
  'None if answered && s.base > 1 => {
                    let arrived = (s.through + 1 - s.base) as usize + s.above.len();
                    if arrived <= max_above {' \
  'None if answered && s.base > 1 => {
                    let arrived = (s.through + 1 - s.base) as usize + s.above.len();
                    if arrived > max_above {' \
  flood
plant core/src/flood/machine/data.rs \
  'let to = s.base - 1;
                        self.stats.lost += to;' \
  'let to = s.base + 1;
                        self.stats.lost += to;' \
  flood
plant core/src/flood/machine/data.rs \
  'let to = s.base - 1;
                        self.stats.lost += to;' \
  'let to = s.base / 1;
                        self.stats.lost += to;' \
  flood
plant core/src/flood/machine/data.rs \
  'let to = s.base - 1;
                        self.stats.lost += to;' \
  'let to = s.base - 1;
                        self.stats.lost -= to;' \
  flood
plant core/src/flood/machine/data.rs \
  'let to = s.base - 1;
                        self.stats.lost += to;' \
  'let to = s.base - 1;
                        self.stats.lost *= to;' \
  flood
# The history of what a site knew when kept too short, too long or too coarse; streams
# past the bound not forgotten, or this site's own forgotten; update frames at the size
# limit; duplicates miscounted; a pulled duplicate exported again; the bound on
# out-of-order updates off by one; storage drops uncounted; the rest of a pull asked too
# early.
plant core/src/flood/machine/data.rs \
  'let p = self.groups[name].def.digest_period;
        (
            p / HISTORY_GRAIN_PER_PERIOD,
            p * (ADOPT_ROUNDS + 2) + JOIN_MARGIN_MAX * 2,
        )' \
  'let _ = (name, HISTORY_GRAIN_PER_PERIOD, ADOPT_ROUNDS, JOIN_MARGIN_MAX);
        (Default::default(), Default::default())' \
  flood
plant core/src/flood/machine/data.rs \
  'p / HISTORY_GRAIN_PER_PERIOD,' \
  'p * HISTORY_GRAIN_PER_PERIOD,' \
  flood
plant core/src/flood/machine/data.rs \
  'p * (ADOPT_ROUNDS + 2) + JOIN_MARGIN_MAX * 2,' \
  'p * (ADOPT_ROUNDS + 2) - JOIN_MARGIN_MAX * 2,' \
  flood
plant core/src/flood/machine/data.rs \
  'p * (ADOPT_ROUNDS + 2) + JOIN_MARGIN_MAX * 2,' \
  'p / (ADOPT_ROUNDS + 2) + JOIN_MARGIN_MAX * 2,' \
  flood
plant core/src/flood/machine/data.rs \
  'p * (ADOPT_ROUNDS + 2) + JOIN_MARGIN_MAX * 2,' \
  'p * (ADOPT_ROUNDS - 2) + JOIN_MARGIN_MAX * 2,' \
  flood
plant core/src/flood/machine/data.rs \
  'p * (ADOPT_ROUNDS + 2) + JOIN_MARGIN_MAX * 2,' \
  'p * (ADOPT_ROUNDS * 2) + JOIN_MARGIN_MAX * 2,' \
  flood
plant core/src/flood/machine/data.rs \
  'p * (ADOPT_ROUNDS + 2) + JOIN_MARGIN_MAX * 2,' \
  'p * (ADOPT_ROUNDS + 2) + JOIN_MARGIN_MAX / 2,' \
  flood
plant core/src/flood/machine/data.rs \
  'let max = self.cfg.limits.max_streams;' \
  'let max = self.cfg.limits.max_streams;
        if max > 0 {
            return;
        }' \
  flood
plant core/src/flood/machine/data.rs \
  '.filter(|(k, _)| k.origin != me)' \
  '.filter(|(k, _)| k.origin == me)' \
  flood
plant core/src/flood/machine/data.rs \
  'return Err(self.no_group(name));
        }
        let max = self.cfg.limits.reader.max_update;
        if data.len() > max {' \
  'return Err(self.no_group(name));
        }
        let max = self.cfg.limits.reader.max_update;
        if data.len() == max {' \
  flood
plant core/src/flood/machine/data.rs \
  'return Err(self.no_group(name));
        }
        let max = self.cfg.limits.reader.max_update;
        if data.len() > max {' \
  'return Err(self.no_group(name));
        }
        let max = self.cfg.limits.reader.max_update;
        if data.len() >= max {' \
  flood
plant core/src/flood/machine/data.rs \
  'if key.origin == self.cfg.me.name {
            self.stats.duplicates += 1;' \
  'if key.origin == self.cfg.me.name {
            self.stats.duplicates -= 1;' \
  flood
plant core/src/flood/machine/data.rs \
  'if key.origin == self.cfg.me.name {
            self.stats.duplicates += 1;' \
  'if key.origin == self.cfg.me.name {
            self.stats.duplicates *= 1;' \
  flood
plant core/src/flood/machine/data.rs \
  'if s.has(seq) {
            self.stats.duplicates += 1;' \
  'if s.has(seq) {
            self.stats.duplicates *= 1;' \
  flood
plant core/src/flood/machine/data.rs \
  'if pulled && self.cfg.canary_duplicate_export {' \
  'if pulled || self.cfg.canary_duplicate_export {' \
  flood
plant core/src/flood/machine/data.rs \
  'while seq > self.stream_mut(name, &key).through + 1' \
  'while seq == self.stream_mut(name, &key).through + 1' \
  flood
plant core/src/flood/machine/data.rs \
  'while seq > self.stream_mut(name, &key).through + 1' \
  'while seq < self.stream_mut(name, &key).through + 1' \
  flood
plant core/src/flood/machine/data.rs \
  'while seq > self.stream_mut(name, &key).through + 1' \
  'while seq >= self.stream_mut(name, &key).through + 1' \
  flood
plant core/src/flood/machine/data.rs \
  'while seq > self.stream_mut(name, &key).through + 1' \
  'while seq > self.stream_mut(name, &key).through * 1' \
  flood
plant core/src/flood/machine/data.rs \
  'self.stats.dropped_unexported += 1;' \
  'self.stats.dropped_unexported -= 1;' \
  flood
plant core/src/flood/machine/data.rs \
  'self.stats.dropped_unexported += 1;' \
  'self.stats.dropped_unexported *= 1;' \
  flood
plant core/src/flood/machine/data.rs \
  'is_some_and(|p| s.through >= p.last)' \
  'is_some_and(|p| s.through < p.last)' \
  flood
# A stream's marks claiming an older update it does not have; digests: the first one
# not full, changed marks not sent, keepalives every round, full marks asked of who
# answered or after the first window.
plant core/src/flood/machine/data.rs \
  '.clamp(s.base.min(s.through + 1), s.through + 1);' \
  '.clamp(s.base.min(s.through * 1), s.through + 1);' \
  flood
plant core/src/flood/machine/data.rs \
  'let full = full || n.wants_full || n.last_digest.is_none();' \
  'let full = full || n.wants_full && n.last_digest.is_none();' \
  flood
plant core/src/flood/machine/data.rs \
  'n.sent.get(key) != Some(marks)' \
  'n.sent.get(key) == Some(marks)' \
  flood
plant core/src/flood/machine/data.rs \
  'let keepalive = g.def.digest_period * KEEPALIVE_ROUNDS;' \
  'let keepalive = g.def.digest_period / KEEPALIVE_ROUNDS;' \
  flood
plant core/src/flood/machine/data.rs \
  'let want_full = g.fresh && g.adopt_until.is_some() && !(n.got_full && n.got_start);' \
  'let want_full = g.fresh && g.adopt_until.is_some() || !(n.got_full && n.got_start);' \
  flood
plant core/src/flood/machine/data.rs \
  'let want_full = g.fresh && g.adopt_until.is_some() && !(n.got_full && n.got_start);' \
  'let want_full = g.fresh || g.adopt_until.is_some() && !(n.got_full && n.got_start);' \
  flood
# Digests: a neighbour without its starts not asked, joined_us not told, keepalives
# mistimed, digests uncounted; streams and marks from digests unbounded; the join
# margin shrunk.
plant core/src/flood/machine/data.rs \
  'let want_full = g.fresh && g.adopt_until.is_some() && !(n.got_full && n.got_start);' \
  'let want_full = g.fresh && g.adopt_until.is_some() && !(n.got_full || n.got_start);' \
  flood
plant core/src/flood/machine/data.rs \
  '(true, Some(t)) => {
                u64::try_from(' \
  '(true, Some(t)) if false => {
                u64::try_from(' \
  flood
plant core/src/flood/machine/data.rs \
  '.is_none_or(|t| now.saturating_duration_since(t) >= keepalive);' \
  '.is_none_or(|t| now.saturating_duration_since(t) < keepalive);' \
  flood
plant core/src/flood/machine/data.rs \
  'if entries.is_empty() && !due && !want_full {' \
  'if entries.is_empty() && due && !want_full {' \
  flood
plant core/src/flood/machine/data.rs \
  'if entries.is_empty() && !due && !want_full {' \
  'if entries.is_empty() && !due && want_full {' \
  flood
plant core/src/flood/machine/data.rs \
  'self.stats.digests_sent += 1;' \
  'self.stats.digests_sent *= 1;' \
  flood
plant core/src/flood/machine/data.rs \
  '                continue;
            }
            let key = StreamKey {
                origin: e.origin,
                incarnation: e.incarnation,
            };
            if !self.groups[name].streams.contains_key(&key) {' \
  '                continue;
            }
            let key = StreamKey {
                origin: e.origin,
                incarnation: e.incarnation,
            };
            if self.groups[name].streams.contains_key(&key) {' \
  flood
plant core/src/flood/machine/data.rs \
  'if n.marks.len() < max_streams || n.marks.contains_key(&key) {' \
  'if n.marks.len() <= max_streams || n.marks.contains_key(&key) {' \
  flood
plant core/src/flood/machine/data.rs \
  '(r * 2).clamp(JOIN_MARGIN_MIN, JOIN_MARGIN_MAX)' \
  '(r / 2).clamp(JOIN_MARGIN_MIN, JOIN_MARGIN_MAX)' \
  flood
# Starts remembered past the bound; the wait for a pushed copy before pulling zero or
# shrunk.
plant core/src/flood/machine/data.rs \
  'if g.starts.len() < max_streams || g.starts.contains_key(&key) {' \
  'if g.starts.len() <= max_streams || g.starts.contains_key(&key) {' \
  flood
plant core/src/flood/machine/data.rs \
  '(rtt * 2).clamp(Duration::from_millis(20), Duration::from_secs(1))' \
  '{
            let _ = rtt;
            Duration::default()
        }' \
  flood
plant core/src/flood/machine/data.rs \
  '(rtt * 2).clamp(Duration::from_millis(20), Duration::from_secs(1))' \
  '(rtt / 2).clamp(Duration::from_millis(20), Duration::from_secs(1))' \
  flood
# A pull asked again too soon; missing updates counted twice.
plant core/src/flood/machine/data.rs \
  '(rtt * 4).clamp(Duration::from_millis(200), Duration::from_secs(5))' \
  '(rtt / 4).clamp(Duration::from_millis(200), Duration::from_secs(5))' \
  flood
plant core/src/flood/machine/data.rs \
  'let from = a.max(reported + 1);' \
  'let from = a.max(reported * 1);' \
  flood
# What the origin no longer holds: not declared lost, declared lost wrongly, or the
# range miscomputed; an origin without an address left waiting forever.
plant core/src/flood/machine/data.rs \
  '(Some((low, through)), _) if through >= first && low > first => {' \
  '(Some((low, through)), _) if true => {' \
  flood
plant core/src/flood/machine/data.rs \
  '(Some((low, through)), _) if through >= first && low > first => {' \
  '(Some((low, through)), _) if false => {' \
  flood
plant core/src/flood/machine/data.rs \
  '(Some((low, through)), _) if through >= first && low > first => {' \
  '(Some((low, through)), _) if through < first && low > first => {' \
  flood
plant core/src/flood/machine/data.rs \
  '(Some((low, through)), _) if through >= first && low > first => {' \
  '(Some((low, through)), _) if through >= first && low == first => {' \
  flood
plant core/src/flood/machine/data.rs \
  '(Some((low, through)), _) if through >= first && low > first => {' \
  '(Some((low, through)), _) if through >= first && low < first => {' \
  flood
plant core/src/flood/machine/data.rs \
  '(_, None) => Some((lowest - 1).min(ranges[0].1)),' \
  '(_, None) if false => Some((lowest - 1).min(ranges[0].1)),' \
  flood
plant core/src/flood/machine/data.rs \
  'Some((low - 1).min(ranges[0].1))' \
  'Some((low + 1).min(ranges[0].1))' \
  flood
plant core/src/flood/machine/data.rs \
  'Some((low - 1).min(ranges[0].1))' \
  'Some((low / 1).min(ranges[0].1))' \
  flood
plant core/src/flood/machine/data.rs \
  'Some((lowest - 1).min(ranges[0].1))' \
  'Some((lowest + 1).min(ranges[0].1))' \
  flood
plant core/src/flood/machine/data.rs \
  'Some((lowest - 1).min(ranges[0].1))' \
  'Some((lowest / 1).min(ranges[0].1))' \
  flood
# The rest of the flood data.rs survivors (issue 17): an unanswered pull not moved on to
# the next holder after three tries (or moved too soon), its tries not counted afresh
# once the first missing update arrives.
plant core/src/flood/machine/data.rs \
  'Some(p) if p.first == first => p.attempts + 1,' \
  'Some(p) if true => p.attempts + 1,' \
  flood
plant core/src/flood/machine/data.rs \
  'Some(p) if p.first == first => p.attempts + 1,' \
  'Some(p) if false => p.attempts + 1,' \
  flood
plant core/src/flood/machine/data.rs \
  'Some(p) if p.first == first => p.attempts + 1,' \
  'Some(p) if p.first != first => p.attempts + 1,' \
  flood
plant core/src/flood/machine/data.rs \
  'Some(p) if p.first == first => p.attempts + 1,' \
  'Some(p) if p.first == first => p.attempts * 1,' \
  flood
plant core/src/flood/machine/data.rs \
  'let pick = ((attempt - 1) / PULL_TRIES) as usize % holders.len();' \
  'let pick = ((attempt - 1) / PULL_TRIES) as usize / holders.len();' \
  flood
plant core/src/flood/machine/data.rs \
  'let pick = ((attempt - 1) / PULL_TRIES) as usize % holders.len();' \
  'let pick = ((attempt - 1) % PULL_TRIES) as usize % holders.len();' \
  flood
plant core/src/flood/machine/data.rs \
  'let pick = ((attempt - 1) / PULL_TRIES) as usize % holders.len();' \
  'let pick = ((attempt - 1) * PULL_TRIES) as usize % holders.len();' \
  flood
plant core/src/flood/machine/data.rs \
  'let pick = ((attempt - 1) / PULL_TRIES) as usize % holders.len();' \
  'let pick = ((attempt + 1) / PULL_TRIES) as usize % holders.len();' \
  flood
plant core/src/flood/machine/data.rs \
  'let pick = ((attempt - 1) / PULL_TRIES) as usize % holders.len();' \
  'let pick = ((attempt / 1) / PULL_TRIES) as usize % holders.len();' \
  flood
# A pull asking a neighbour for what it does not hold, or for more or fewer than 256.
plant core/src/flood/machine/data.rs \
  'if a > their_through || budget == 0 {' \
  'if a > their_through && budget == 0 {' \
  flood
plant core/src/flood/machine/data.rs \
  'let b = b.min(their_through).min(a + budget - 1);' \
  'let b = b.min(their_through).min(a + budget + 1);' \
  flood
plant core/src/flood/machine/data.rs \
  'let b = b.min(their_through).min(a + budget - 1);' \
  'let b = b.min(their_through).min(a + budget / 1);' \
  flood
plant core/src/flood/machine/data.rs \
  'let b = b.min(their_through).min(a + budget - 1);' \
  'let b = b.min(their_through).min(a * budget - 1);' \
  flood
plant core/src/flood/machine/data.rs \
  'let b = b.min(their_through).min(a + budget - 1);
                budget -= b - a + 1;' \
  'let b = b.min(their_through).min(a + budget - 1);
                budget += b - a + 1;' \
  flood
plant core/src/flood/machine/data.rs \
  'let b = b.min(their_through).min(a + budget - 1);
                budget -= b - a + 1;' \
  'let b = b.min(their_through).min(a + budget - 1);
                budget /= b - a + 1;' \
  flood
plant core/src/flood/machine/data.rs \
  'let b = b.min(their_through).min(a + budget - 1);
                budget -= b - a + 1;' \
  'let b = b.min(their_through).min(a + budget - 1);
                budget -= b - a * 1;' \
  flood
plant core/src/flood/machine/data.rs \
  'let b = b.min(their_through).min(a + budget - 1);
                budget -= b - a + 1;' \
  'let b = b.min(their_through).min(a + budget - 1);
                budget -= b + a + 1;' \
  flood
plant core/src/flood/machine/data.rs \
  'let b = b.min(their_through).min(a + budget - 1);
                budget -= b - a + 1;' \
  'let b = b.min(their_through).min(a + budget - 1);
                budget -= b / a + 1;' \
  flood
# Pulls uncounted.
plant core/src/flood/machine/data.rs \
  '            self.stats.pulls_sent += 1;' \
  '            self.stats.pulls_sent *= 1;' \
  flood
# The origin asked again at a fixed interval, or its tries not counted afresh.
plant core/src/flood/machine/data.rs \
  'Some(p) if p.first == first && p.from == key.origin => p.attempts.saturating_add(1),' \
  'Some(p) if true => p.attempts.saturating_add(1),' \
  flood
plant core/src/flood/machine/data.rs \
  'Some(p) if p.first == first && p.from == key.origin => p.attempts.saturating_add(1),' \
  'Some(p) if false => p.attempts.saturating_add(1),' \
  flood
plant core/src/flood/machine/data.rs \
  'Some(p) if p.first == first && p.from == key.origin => p.attempts.saturating_add(1),' \
  'Some(p) if p.first == first || p.from == key.origin => p.attempts.saturating_add(1),' \
  flood
plant core/src/flood/machine/data.rs \
  'Some(p) if p.first == first && p.from == key.origin => p.attempts.saturating_add(1),' \
  'Some(p) if p.first != first && p.from == key.origin => p.attempts.saturating_add(1),' \
  flood
plant core/src/flood/machine/data.rs \
  'Some(p) if p.first == first && p.from == key.origin => p.attempts.saturating_add(1),' \
  'Some(p) if p.first == first && p.from != key.origin => p.attempts.saturating_add(1),' \
  flood
# A pull asking the origin for more or fewer than 256 updates; pulls of it uncounted.
plant core/src/flood/machine/data.rs \
  'let b = b.min(a + budget - 1);' \
  'let b = b.min(a + budget + 1);' \
  flood
plant core/src/flood/machine/data.rs \
  'let b = b.min(a + budget - 1);' \
  'let b = b.min(a + budget / 1);' \
  flood
plant core/src/flood/machine/data.rs \
  'let b = b.min(a + budget - 1);' \
  'let b = b.min(a * budget - 1);' \
  flood
plant core/src/flood/machine/data.rs \
  'let b = b.min(a + budget - 1);
            budget -= b - a + 1;' \
  'let b = b.min(a + budget - 1);
            budget += b - a + 1;' \
  flood
plant core/src/flood/machine/data.rs \
  'let b = b.min(a + budget - 1);
            budget -= b - a + 1;' \
  'let b = b.min(a + budget - 1);
            budget /= b - a + 1;' \
  flood
plant core/src/flood/machine/data.rs \
  'let b = b.min(a + budget - 1);
            budget -= b - a + 1;' \
  'let b = b.min(a + budget - 1);
            budget -= b - a - 1;' \
  flood
plant core/src/flood/machine/data.rs \
  'let b = b.min(a + budget - 1);
            budget -= b - a + 1;' \
  'let b = b.min(a + budget - 1);
            budget -= b - a * 1;' \
  flood
plant core/src/flood/machine/data.rs \
  'let b = b.min(a + budget - 1);
            budget -= b - a + 1;' \
  'let b = b.min(a + budget - 1);
            budget -= b + a + 1;' \
  flood
plant core/src/flood/machine/data.rs \
  'let b = b.min(a + budget - 1);
            budget -= b - a + 1;' \
  'let b = b.min(a + budget - 1);
            budget -= b / a + 1;' \
  flood
plant core/src/flood/machine/data.rs \
  '});
        self.stats.pulls_sent += 1;' \
  '});
        self.stats.pulls_sent *= 1;' \
  flood
# Updates declared lost: ones that had arrived kept at or below the stream's front, or
# the loss miscounted.
plant core/src/flood/machine/data.rs \
  's.above = s.above.split_off(&(to + 1));' \
  's.above = s.above.split_off(&(to - 1));' \
  flood
plant core/src/flood/machine/data.rs \
  's.above = s.above.split_off(&(to + 1));' \
  's.above = s.above.split_off(&(to * 1));' \
  flood
plant core/src/flood/machine/data.rs \
  'self.stats.lost += (to - from + 1) - arrived;' \
  'self.stats.lost += (to - from + 1) + arrived;' \
  flood
plant core/src/flood/machine/data.rs \
  'self.stats.lost += (to - from + 1) - arrived;' \
  'self.stats.lost += (to / from + 1) - arrived;' \
  flood
# A pull's answer unbounded, or bounded one update short of 4 MiB, or after one.
plant core/src/flood/machine/data.rs \
  'if sent >= PULL_BATCH || sent_bytes + data.len() > PULL_ANSWER_BYTES {' \
  'if sent >= PULL_BATCH && sent_bytes + data.len() > PULL_ANSWER_BYTES {' \
  flood
plant core/src/flood/machine/data.rs \
  'if sent >= PULL_BATCH || sent_bytes + data.len() > PULL_ANSWER_BYTES {' \
  'if sent >= PULL_BATCH || sent_bytes + data.len() == PULL_ANSWER_BYTES {' \
  flood
plant core/src/flood/machine/data.rs \
  'if sent >= PULL_BATCH || sent_bytes + data.len() > PULL_ANSWER_BYTES {' \
  'if sent >= PULL_BATCH || sent_bytes + data.len() >= PULL_ANSWER_BYTES {' \
  flood
plant core/src/flood/machine/data.rs \
  'if sent >= PULL_BATCH || sent_bytes + data.len() > PULL_ANSWER_BYTES {' \
  'if sent >= PULL_BATCH || sent_bytes * data.len() > PULL_ANSWER_BYTES {' \
  flood
# A pull's answer naming the wrong ranges evicted.
plant core/src/flood/machine/data.rs \
  'if seq > next {' \
  'if seq == next {' \
  flood
plant core/src/flood/machine/data.rs \
  'if seq > next {' \
  'if seq < next {' \
  flood
plant core/src/flood/machine/data.rs \
  'if seq > next {' \
  'if seq >= next {' \
  flood
plant core/src/flood/machine/data.rs \
  'evicted.push((next, seq - 1));' \
  'evicted.push((next, seq + 1));' \
  flood
plant core/src/flood/machine/data.rs \
  'evicted.push((next, seq - 1));' \
  'evicted.push((next, seq / 1));' \
  flood
plant core/src/flood/machine/data.rs \
  'next = seq + 1;' \
  'next = seq - 1;' \
  flood
plant core/src/flood/machine/data.rs \
  'next = seq + 1;' \
  'next = seq * 1;' \
  flood
# A pull's answer not counting what it sent (so unbounded).
plant core/src/flood/machine/data.rs \
  'next = seq + 1;
                sent += 1;' \
  'next = seq + 1;
                sent *= 1;' \
  flood
plant core/src/flood/machine/data.rs \
  'sent_bytes += data.len();' \
  'sent_bytes *= data.len();' \
  flood
# Pulled payloads uncounted.
plant core/src/flood/machine/data.rs \
  '            self.stats.payloads_sent += 1;
            self.stats.payloads_pulled += 1;' \
  '            self.stats.payloads_sent *= 1;
            self.stats.payloads_pulled += 1;' \
  flood
plant core/src/flood/machine/data.rs \
  'self.stats.payloads_pulled += 1;' \
  'self.stats.payloads_pulled *= 1;' \
  flood
# The origin's word that it no longer holds what it was asked: the pull not asked again
# at once; updates before what it evicted, still to come, declared lost.
plant core/src/flood/machine/data.rs \
  '.is_some_and(|p| p.from == sender);' \
  '.is_some_and(|p| p.from != sender);' \
  flood
plant core/src/flood/machine/data.rs \
  'if a <= next && next <= b {' \
  'if a <= next || next <= b {' \
  flood
# Survivors of the mutation run over the FIFO mode (fifo.rs, issue 17). A start's FIFO
# fills carrying items every member has (the members naming an origin not counted,
# or every item kept).
plant core/src/groups/machine/fifo.rs \
  'e.naming += 1;' \
  'e.naming *= 1;' \
  groups
plant core/src/groups/machine/fifo.rs \
  'let lo = if said.naming < members.get(&old).copied().unwrap_or(0) {' \
  'let lo = if said.naming <= members.get(&old).copied().unwrap_or(0) {' \
  groups
plant core/src/groups/machine/fifo.rs \
  '.filter(|(k, _)| *k > lo && *k <= hi)' \
  '.filter(|(k, _)| *k > lo || *k <= hi)' \
  groups
plant core/src/groups/machine/fifo.rs \
  '.filter(|(k, _)| *k > lo && *k <= hi)' \
  '.filter(|(k, _)| *k >= lo && *k <= hi)' \
  groups
# FIFO data of the view being left delivered during its flush.
plant core/src/groups/machine/fifo.rs \
  'if *view != self.view.id || self.flush.is_some() || fseq == 0 {' \
  'if *view != self.view.id || self.flush.is_some() && fseq == 0 {' \
  groups
plant core/src/groups/machine/fifo.rs \
  'if *view != self.view.id || self.flush.is_some() || fseq == 0 {' \
  'if *view != self.view.id && self.flush.is_some() || fseq == 0 {' \
  groups
# FIFO data taken from another address or another life of its origin.
plant core/src/groups/machine/fifo.rs \
  $'if m.addr == from\n                    && m.incarnation == item.id.incarnation\n                    && m.name != self.me.name =>' \
  'if true =>' \
  groups
plant core/src/groups/machine/fifo.rs \
  $'if m.addr == from\n                    && m.incarnation == item.id.incarnation' \
  $'if m.addr == from\n                    || m.incarnation == item.id.incarnation' \
  groups
plant core/src/groups/machine/fifo.rs \
  '&& m.name != self.me.name =>' \
  '|| m.name != self.me.name =>' \
  groups
# The bound of 2 x FIFO_WINDOW items kept past a gap: one more, none, or 514.
plant core/src/groups/machine/fifo.rs \
  '} else if inb.ahead.len() < (2 * FIFO_WINDOW) as usize {' \
  '} else if inb.ahead.len() <= (2 * FIFO_WINDOW) as usize {' \
  groups
plant core/src/groups/machine/fifo.rs \
  '} else if inb.ahead.len() < (2 * FIFO_WINDOW) as usize {' \
  '} else if inb.ahead.len() == (2 * FIFO_WINDOW) as usize {' \
  groups
plant core/src/groups/machine/fifo.rs \
  '} else if inb.ahead.len() < (2 * FIFO_WINDOW) as usize {' \
  '} else if inb.ahead.len() > (2 * FIFO_WINDOW) as usize {' \
  groups
plant core/src/groups/machine/fifo.rs \
  '} else if inb.ahead.len() < (2 * FIFO_WINDOW) as usize {' \
  '} else if inb.ahead.len() < (2 + FIFO_WINDOW) as usize {' \
  groups
plant core/src/groups/machine/fifo.rs \
  '} else if inb.ahead.len() < (2 * FIFO_WINDOW) as usize {' \
  '} else if inb.ahead.len() < (2 / FIFO_WINDOW) as usize {' \
  groups
# A member's FIFO acknowledgements: every item, or never at the stride or the byte bound.
plant core/src/groups/machine/fifo.rs \
  'let due = inb.delivered - inb.last_ack >= ACK_STRIDE' \
  'let due = inb.delivered - inb.last_ack < ACK_STRIDE' \
  groups
plant core/src/groups/machine/fifo.rs \
  'let due = inb.delivered - inb.last_ack >= ACK_STRIDE' \
  'let due = inb.delivered + inb.last_ack >= ACK_STRIDE' \
  groups
plant core/src/groups/machine/fifo.rs \
  '|| (inb.delivered > inb.last_ack && inb.unacked_bytes >= ACK_BYTES);' \
  '&& (inb.delivered > inb.last_ack && inb.unacked_bytes >= ACK_BYTES);' \
  groups
plant core/src/groups/machine/fifo.rs \
  '|| (inb.delivered > inb.last_ack && inb.unacked_bytes >= ACK_BYTES);' \
  '|| (inb.delivered > inb.last_ack || inb.unacked_bytes >= ACK_BYTES);' \
  groups
plant core/src/groups/machine/fifo.rs \
  '|| (inb.delivered > inb.last_ack && inb.unacked_bytes >= ACK_BYTES);' \
  '|| (inb.delivered == inb.last_ack && inb.unacked_bytes >= ACK_BYTES);' \
  groups
plant core/src/groups/machine/fifo.rs \
  '|| (inb.delivered > inb.last_ack && inb.unacked_bytes >= ACK_BYTES);' \
  '|| (inb.delivered < inb.last_ack && inb.unacked_bytes >= ACK_BYTES);' \
  groups
plant core/src/groups/machine/fifo.rs \
  '|| (inb.delivered > inb.last_ack && inb.unacked_bytes >= ACK_BYTES);' \
  '|| (inb.delivered > inb.last_ack && inb.unacked_bytes < ACK_BYTES);' \
  groups
plant core/src/groups/machine/fifo.rs \
  'self.unacked_bytes += payload_len(&item);' \
  'self.unacked_bytes *= payload_len(&item);' \
  groups
# An origin's FIFO stability mark ignored, taken from another view or another member's
# address; a member that never forgets the FIFO items it holds.
plant core/src/groups/machine/fifo.rs \
  'inb.note_stable(upto);' \
  'let _ = (inb, upto);' \
  groups
plant core/src/groups/machine/fifo.rs \
  'if *view != self.view.id || self.flush.is_some() {' \
  'if *view != self.view.id && self.flush.is_some() {' \
  groups
plant core/src/groups/machine/fifo.rs \
  'if *view != self.view.id || self.flush.is_some() {' \
  'if *view == self.view.id || self.flush.is_some() {' \
  groups
plant core/src/groups/machine/fifo.rs \
  '.find(|m| m.addr == from) else {' \
  '.find(|m| m.addr != from) else {' \
  groups
plant core/src/groups/machine/fifo.rs \
  $'        let stable = stable.min(self.delivered);\n        if stable > self.stable {\n            self.stable = stable;\n            self.held = self.held.split_off(&(stable + 1));\n        }' \
  '        let _ = stable;' \
  groups
plant core/src/groups/machine/fifo.rs \
  'if stable > self.stable {' \
  'if stable == self.stable {' \
  groups
plant core/src/groups/machine/fifo.rs \
  'if stable > self.stable {' \
  'if stable < self.stable {' \
  groups
# A member holding FIFO items past a gap delivers one beyond the old view's end.
plant core/src/groups/machine/fifo.rs \
  'while inb.delivered < hi {' \
  'while inb.delivered <= hi {' \
  groups
# A flush state naming this daemon though it sent nothing, claiming one or two items more
# than it sent, or naming an origin it delivered nothing of.
plant core/src/groups/machine/fifo.rs \
  'if self.fifo.next > 1 {' \
  'if self.fifo.next >= 1 {' \
  groups
plant core/src/groups/machine/fifo.rs \
  'out.push((self.me.name.clone(), self.fifo.next - 1, log));' \
  'out.push((self.me.name.clone(), self.fifo.next + 1, log));' \
  groups
plant core/src/groups/machine/fifo.rs \
  'out.push((self.me.name.clone(), self.fifo.next - 1, log));' \
  'out.push((self.me.name.clone(), self.fifo.next / 1, log));' \
  groups
plant core/src/groups/machine/fifo.rs \
  'if inb.delivered > 0 {' \
  'if inb.delivered >= 0 {' \
  groups
# Survivors of the run over flood's `Stream` (flood/machine.rs): the history's grain
# and cap.
plant core/src/flood/machine.rs \
  'let close = n >= 2 && now.saturating_duration_since(h[n - 2].0) < grain;' \
  'let close = n >= 2 && now.saturating_duration_since(h[n - 2].0) <= grain;' \
  flood
plant core/src/flood/machine.rs \
  'while h.len() > HISTORY_MAX {' \
  'while h.len() >= HISTORY_MAX {' \
  flood
plant core/src/flood/machine.rs \
  '} else if seq > self.through {' \
  '} else if seq >= self.through {' \
  flood
# Issue 18: a member that installs a view after the sequencer asked for its state
# keeps it until the request is repeated (a VIP failover waited 100 ms for it).
plant core/src/groups/machine/mod.rs \
  '        if !sequencer {' \
  '        if false && !sequencer {' \
  groups
# Mutation survivors of core/src/vip/table.rs (issue 17): half the voters counted as a
# majority (two nodes without a witness would both hold after a split).
plant core/src/vip/table.rs \
  'present * 2 > voters.len()' \
  'present * 2 >= voters.len()' \
  vip
plant core/src/vip/table.rs \
  'present * 2 > voters.len()' \
  'present + 2 > voters.len()' \
  vip
# More survivors of the vip run: a VIP kept away from its preference never rebalanced,
# and a state's preferences of VIPs beyond this file kept.
plant core/src/vip/assign.rs \
  'let on_preference = inp.prefer[i].is_some() && inp.prefer[i] == out[i];' \
  'let on_preference = inp.prefer[i].is_some() || inp.prefer[i] == out[i];' \
  vip
plant core/src/vip/table.rs \
  'if i < n && self.prefs.get(&i)' \
  'if i < n || self.prefs.get(&i)' \
  vip
# Survivors of the groups run over the rest of machine/mod.rs (TESTING.md), killed
# since: the acknowledgement byte bound 32 + 1024; a tail sent again while the member's
# acknowledgement moves, or from the item it already has (in `stuck` and in `hurry`);
# gap requests never made, or paced wrongly; an acknowledgement of the previous view
# counted in the new one.
plant core/src/groups/machine/mod.rs \
  'pub(super) const ACK_BYTES: usize = 32 * 1024;' \
  'pub(super) const ACK_BYTES: usize = 32 + 1024;' \
  groups
plant core/src/groups/machine/mod.rs \
  'if *seen != a || a >= last {' \
  'if *seen != a && a >= last {' \
  groups
plant core/src/groups/machine/mod.rs \
  'out.push((m.addr, a + 1));' \
  'out.push((m.addr, a * 1));' \
  groups
plant core/src/groups/machine/mod.rs \
  '(*seen == a && a < last && wait.hurry(now)).then_some(a + 1)' \
  '(*seen == a && a < last && wait.hurry(now)).then_some(a * 1)' \
  groups
plant core/src/groups/machine/mod.rs \
  'fn gap_due(gap: &mut Option<(u64, Backoff)>, open: bool, at: u64, now: Instant) -> bool {' \
  $'fn gap_due(gap: &mut Option<(u64, Backoff)>, open: bool, at: u64, now: Instant) -> bool {\n    if open {\n        return false;\n    }' \
  groups
plant core/src/groups/machine/mod.rs \
  '(true, Some((was, b))) if *was == at => b.fire(now),' \
  '(true, Some((was, b))) if *was == at || true => b.fire(now),' \
  groups
plant core/src/groups/machine/mod.rs \
  '(true, Some((was, b))) if *was == at => b.fire(now),' \
  '(true, Some((was, b))) if *was == at && false => b.fire(now),' \
  groups
plant core/src/groups/machine/mod.rs \
  '(true, Some((was, b))) if *was == at => b.fire(now),' \
  '(true, Some((was, b))) if *was != at => b.fire(now),' \
  groups
plant core/src/groups/machine/mod.rs \
  'if view != self.view.id || !self.is_sequencer() {
            return;
        }
        let delivered = self.delivered;' \
  'if view != self.view.id && !self.is_sequencer() {
            return;
        }
        let delivered = self.delivered;' \
  groups
# Items sent again to a member not counted; an item of an earlier life of this daemon
# settling this life's pending item of the same number (the latter's message lost).
plant core/src/groups/machine/mod.rs \
  $'            self.stats.resent += 1;\n            self.batch_item(BatchKind::Order, To::One(to), (seq, stable), item);' \
  $'            self.stats.resent *= 1;\n            self.batch_item(BatchKind::Order, To::One(to), (seq, stable), item);' \
  groups
plant core/src/groups/machine/mod.rs \
  $'if item.id.origin == self.me.name && item.id.incarnation == self.me.incarnation {\n            self.pending.remove' \
  $'if item.id.origin == self.me.name || item.id.incarnation == self.me.incarnation {\n            self.pending.remove' \
  groups
# Own items delivered never counted: a busy sender submits again what waits in the
# sequencer's queue.
plant core/src/groups/machine/mod.rs \
  'self.own_delivered += 1;' \
  'self.own_delivered *= 1;' \
  groups
# A start repeated to members that acknowledged it; an idle daemon's submit pace not
# started afresh, so a lost submit after a quiet spell goes again at the next look.
plant core/src/groups/machine/mod.rs \
  '.filter(|m| !s.acked.contains(&m.name) && m.name != self.me.name)' \
  '.filter(|m| !s.acked.contains(&m.name) || m.name != self.me.name)' \
  groups
plant core/src/groups/machine/mod.rs \
  'if progress || self.pending.is_empty() {' \
  'if progress && self.pending.is_empty() {' \
  groups
# A member taking orders from any address, not only the sequencer's.
plant core/src/groups/machine/mod.rs \
  'let from_sequencer = from == Self::sequencer_of(&self.view).addr && !self.is_sequencer();' \
  'let from_sequencer = from == Self::sequencer_of(&self.view).addr || !self.is_sequencer();' \
  groups
# A member's acknowledgement timer: a lost acknowledgement never repeated, or an idle
# member acknowledging every tick; an acknowledgement during a flush ordering items in
# the frozen view; gap requests served for strangers or never; flush states and starts
# taken from any address.
plant core/src/groups/machine/mod.rs \
  $'} else if self.delivered != self.last_ack || self.delivered > self.stable {' \
  $'} else if self.delivered != self.last_ack && self.delivered > self.stable {' \
  groups
plant core/src/groups/machine/mod.rs \
  $'} else if self.delivered != self.last_ack || self.delivered > self.stable {' \
  $'} else if self.delivered == self.last_ack || self.delivered > self.stable {' \
  groups
plant core/src/groups/machine/mod.rs \
  $'} else if self.delivered != self.last_ack || self.delivered > self.stable {' \
  $'} else if self.delivered != self.last_ack || self.delivered >= self.stable {' \
  groups
plant core/src/groups/machine/mod.rs \
  $'if self.is_sequencer() && self.flush.is_none() {\n                        self.order_ready(now);' \
  $'if self.is_sequencer() || self.flush.is_none() {\n                        self.order_ready(now);' \
  groups
plant core/src/groups/machine/mod.rs \
  $'GroupMsg::Nack { view, from: f } if self.name_at(from).is_some() => {' \
  $'GroupMsg::Nack { view, from: f } if true => {' \
  groups
plant core/src/groups/machine/mod.rs \
  $'GroupMsg::Nack { view, from: f } if self.name_at(from).is_some() => {' \
  $'GroupMsg::Nack { view, from: f } if false => {' \
  groups
plant core/src/groups/machine/mod.rs \
  $'m @ GroupMsg::FlushState { .. } if matches!(' \
  $'m @ GroupMsg::FlushState { .. } if true || matches!(' \
  groups
plant core/src/groups/machine/mod.rs \
  $'} if from_flusher || from_sequencer => {' \
  $'} if true => {' \
  groups
# A gap request of another view served; bad frames not counted; the machine's check
# skipped; the groups machine claiming frames of every family.
plant core/src/groups/machine/mod.rs \
  $'fn on_nack(&mut self, to: PeerAddr, view: ViewId, from: u64) {\n        if view != self.view.id || !self.is_sequencer() {' \
  $'fn on_nack(&mut self, to: PeerAddr, view: ViewId, from: u64) {\n        if view != self.view.id && !self.is_sequencer() {' \
  groups
plant core/src/groups/machine/mod.rs \
  $'self.stats.bad_frames += 1;' \
  $'self.stats.bad_frames *= 1;' \
  groups
plant core/src/groups/machine/mod.rs \
  $'fn check_invariants(&self) -> Result<(), String> {\n        self.check()\n    }' \
  $'fn check_invariants(&self) -> Result<(), String> {\n        Ok(())\n    }' \
  groups
plant core/src/groups/machine/mod.rs \
  $'family == super::msg::FAMILY' \
  $'family != 0xff' \
  groups
# Survivors of the mutation run over membership/view.rs, machine.rs and checks.rs
# (TESTING.md), killed since: the view id's text; the ring in name order; duplicates
# taken as sorted; relayed probes sharing one nonce, or one fewer kept; a stranger's
# refusal stopping a daemon alone; listings past the bound taken; joins in step; a
# report never sent again; the highest id seen not reported.
plant core/src/membership/view.rs \
  $'write!(f, "{}.{}", self.epoch, self.coordinator)' \
  $'write!(f, "{}", self.epoch)' \
  membership
plant core/src/membership/view.rs \
  $'(mix(crate::fnv::fnv1a(name.bytes())), name)' \
  $'(0, name)' \
  membership
plant core/src/membership/view.rs \
  $'v.members.windows(2).all(|w| w[0].name < w[1].name)' \
  $'v.members.windows(2).all(|w| w[0].name <= w[1].name)' \
  membership
plant core/src/membership/machine.rs \
  $'fn nonce(&mut self) -> u64 {\n        self.next_nonce += 1;' \
  $'fn nonce(&mut self) -> u64 {\n        self.next_nonce *= 1;' \
  membership
plant core/src/membership/machine.rs \
  $'while self.relays.len() > MAX_RELAYS {' \
  $'while self.relays.len() >= MAX_RELAYS {' \
  membership
plant core/src/membership/machine.rs \
  $'|| (self.view.members.len() <= 1 && self.timers.contains(&Timer::Join)) =>' \
  $'|| (self.view.members.len() <= 1 || self.timers.contains(&Timer::Join)) =>' \
  membership
plant core/src/membership/machine.rs \
  $'if c.daemons.len() > super::msg::MAX_MEMBERS {' \
  $'if c.daemons.len() > super::msg::MAX_MEMBERS + 1 {' \
  membership
plant core/src/membership/machine.rs \
  $'self.rng.duration_between(Duration::ZERO, d)' \
  $'self.rng.duration_between(Duration::ZERO, d - d)' \
  membership
plant core/src/membership/machine.rs \
  $'self.view.member(name).map(|m| m.addr)' \
  $'self.view.member(name).map(|m| m.addr).filter(|_| false)' \
  membership
plant core/src/membership/machine.rs \
  $'pub fn highest_seen(&self) -> &ViewId {\n        &self.highest' \
  $'pub fn highest_seen(&self) -> &ViewId {\n        &self.last_primary.0' \
  membership
# A closed client kept waiting for a reload's answer; a stopped daemon's reload not
# answered; the cluster's timings ignored for the defaults.
plant core/src/membership/machine.rs \
  $'self.reload_waiting.retain(|w| *w != c);' \
  $'self.reload_waiting.retain(|w| *w == c);' \
  membership
plant core/src/membership/machine.rs \
  $'Input::Command(MembershipCommand::Reload(_)) if self.stopped => {' \
  $'Input::Command(MembershipCommand::Reload(_)) if false => {' \
  membership
plant core/src/membership/machine.rs \
  $'fn timing(&self) -> &super::msg::Timing {\n        &self.cfg.timing' \
  $'fn timing(&self) -> &super::msg::Timing {\n        Box::leak(Box::default())' \
  membership
# The acknowledgement as a promise (the merge race of membership-partition seed 511):
# a member acknowledges another coordinator's proposal while held; a coordinator
# gives its proposal up without releasing its members; an acknowledgement counted for
# twice the commit timeout; a coordinator held off by a lower proposal drops its own; a
# held daemon proposes; a member being taken in (held, or proposing) starts again
# alone; a release taken from anyone; a proposal for an earlier life met with silence;
# an acknowledgement stamped when it came instead of when the member was asked; the
# check's promise clause skipped.
plant core/src/membership/machine/agreement.rs \
  '            && a.view.id.coordinator != proposal.id.coordinator' \
  '            && a.view.id.coordinator != proposal.id.coordinator && false' \
  membership
plant core/src/membership/machine/agreement.rs \
  'for to in acked {' \
  'for to in acked.into_iter().take(0) {' \
  membership
plant core/src/membership/machine.rs \
  'now < a.at + commit_timeout / 2' \
  'now < a.at + commit_timeout * 2' \
  membership
plant core/src/membership/machine/agreement.rs \
  $'            // ends).\n            return;' \
  $'            // ends).\n            self.abandon_proposal();\n            return;' \
  membership
plant core/src/membership/machine/agreement.rs \
  'if self.awaiting.is_some() {' \
  'if self.awaiting.is_some() && false {' \
  membership
plant core/src/membership/machine/agreement.rs \
  'let taken_in = self.awaiting.as_ref().is_some_and(|a| a.view.id > v.id)' \
  'let taken_in = self.awaiting.as_ref().is_some_and(|a| a.view.id > v.id && false)' \
  membership
plant core/src/membership/machine/agreement.rs \
  '|| self.proposing.as_ref().is_some_and(|p| p.view.id > v.id);' \
  '|| self.proposing.as_ref().is_some_and(|p| p.view.id > v.id && false);' \
  membership
plant core/src/membership/machine/agreement.rs \
  'a.view.id == id && a.view.member(&id.coordinator).map(|c| c.addr) == Some(from)' \
  'a.view.id == id' \
  membership
plant core/src/membership/machine/agreement.rs \
  $'hold the members that acknowledged meanwhile).\n            let msg = MemberMsg::Join {\n                member: self.me.clone(),\n            };\n            self.send(coord, &msg);' \
  $'hold the members that acknowledged meanwhile).\n            let msg = MemberMsg::Join {\n                member: self.me.clone(),\n            };\n            let _ = (coord, msg);' \
  membership
plant core/src/membership/machine/agreement.rs \
  $'        let at = p\n            .asked' \
  $'        let at = now;\n        let _ = p\n            .asked' \
  membership
plant core/src/membership/machine/checks.rs \
  $'            if self.proposing.is_some() {\n                return Err(format!(\n                    "proposing while holding' \
  $'            if false {\n                return Err(format!(\n                    "proposing while holding' \
  membership
# The ring ordered by FNV-1a alone: a rack's members watch each other.
plant core/src/membership/view.rs \
  '(mix(crate::fnv::fnv1a(name.bytes())), name)' \
  '(crate::fnv::fnv1a(name.bytes()), name)' \
  membership
# A proposal under this daemon's own name acknowledged (it would hold to itself; found
# by the membership_machine fuzz target).
plant core/src/membership/machine/agreement.rs \
  'if proposal.id.coordinator == self.me.name {' \
  'if proposal.id.coordinator == self.me.name && false {' \
  membership
for k in "${!files[@]}"; do
  n=$((k + 1))
  if [ -n "$only" ] && [ "$only" != "$n" ]; then continue; fi
  file=${files[$k]} code=${codes[$k]} bug=${plants[$k]} filter=${filters[$k]}
  # The code must be there exactly once, or the plant would test nothing.
  # (Counted by Python: a code may span lines.)
  count=$(python3 -c 'import sys; print(open(sys.argv[1]).read().count(sys.argv[2]))' "$file" "$code")
  if [ "$count" != 1 ]; then
    echo "bug $n: the code to change is in $file $count times, not once: update this script"
    failed=1
    continue
  fi
  cp "$file" "$file.orig"
  trap 'mv -f "$file.orig" "$file"; touch "$file"' EXIT
  python3 - "$file" "$code" "$bug" <<'PY'
import sys
path, old, new = sys.argv[1:4]
text = open(path).read()
open(path, "w").write(text.replace(old, new, 1))
PY
  if cargo test -q --profile mutants -p flotilla-core --lib "$filter" >"/tmp/planted-$n.log" 2>&1; then
    echo "bug $n ($file): FAIL, every $filter test passed with the bug planted"
    failed=1
  else
    # cargo test -q lists the failed tests, indented, under "failures:".
    caught=$({ grep -E '^    [a-z_]+(::[a-z0-9_]+)+$' "/tmp/planted-$n.log" || true; } | sort -u | tr -d ' ' | tr '\n' ' ')
    echo "bug $n ($file): PASS, caught by ${caught:-a build failure (see /tmp/planted-$n.log)}"
  fi
  mv -f "$file.orig" "$file"
  # The copy is older than the build of the plant: without a new time cargo would keep
  # the planted build.
  touch "$file"
  trap - EXIT
done
exit $failed
