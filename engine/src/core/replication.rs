//! Log replication (§5.3 of the extended Raft paper): the leader's side (proposals,
//! AppendEntries, heartbeats, the commit rule, acknowledgements and backtracking) and the
//! follower's (the consistency check and append of Figure 2).
//!
//! # Pipelining and flow control
//!
//! A leader sends each follower one AppendEntries at a time until it learns where their logs
//! agree (Probe), then streams batches without waiting for acknowledgements, within a window
//! of [`CoreConfig::max_inflight`] messages and [`CoreConfig::max_inflight_bytes`] bytes of
//! commands (Replicate); see [`Progress`]. A proposal is appended as one batch and shipped as
//! one AppendEntries per follower.
//!
//! # Entry buffers
//!
//! An AppendEntries owns its entries (`Vec<Entry>`): a follower moves them into its log without
//! touching their payloads' reference counts. The vectors themselves are recycled instead of
//! allocated per message: a follower keeps the emptied vector of every AppendEntries it handled
//! ([`Core::take_entry_buffer`] hands them out), and a leader fills the buffers it is given
//! ([`Core::give_entry_buffer`]) before it allocates a new one. The driver moves buffers from
//! the cores that collect them to the cores that spend them; what a buffer holds never depends
//! on where it came from, so recycling changes no output of the core.
//!
//! # Invariants
//!
//! - For each follower, `match_index < next_index <= last index + 1` (see [`Progress`]).
//! - A leader commits an index only when a majority holds it and it is of the leader's term
//!   (Figure 8, §5.4.2); the commit index never decreases nor passes the last index.
//! - A leader never truncates or overwrites its own log. A follower truncates only at a real
//!   conflict, never a committed entry, and commits no further than the last index the
//!   AppendEntries vouched for (the least of its last new entry and `leader_commit`).

use super::Nanos;
use super::{
    AppendEntries, AppendEntriesReply, Core, Entry, EntryKind, Message, ProgressState, Role,
};
use super::{Bug, Hooks};
#[cfg(doc)]
use super::{CoreConfig, Progress};
use bytes::Bytes;

/// How far a leader steps `next_index` back when a follower rejects an AppendEntries because
/// its entry at `prev_log_index` has another term (the conflicting term). Both ways skip a whole
/// term per round trip and both are correct: they differ in what the next AppendEntries
/// re-sends.
///
/// Example: the follower holds terms `[1 1 2 2 2 2]` and the leader `[1 1 2 2 3 3]`. A probe at
/// prev 6 is rejected with conflicting term 2, whose first entry on the follower is at 3.
/// [`Backtrack::LeaderTerm`] probes next at prev 4, the leader's last entry of term 2;
/// [`Backtrack::FollowerTerm`] at prev 2, and re-sends entries 3 and 4, which the follower holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Backtrack {
    /// Just past the leader's last entry of the conflicting term if the leader holds that term,
    /// else the follower's first entry of it: nothing the follower holds is re-sent.
    #[default]
    LeaderTerm,
    /// The follower's first entry of the conflicting term, as §5.3 of the extended Raft paper
    /// describes it. Re-sends that term's entries the follower already holds. It exists so that
    /// followers can be checked against another correct leader than this one, as in a cluster
    /// running two versions of an engine: the deterministic simulator runs some seeds with it.
    FollowerTerm,
}

/// Most entry buffers a core keeps for reuse; more are dropped.
pub(super) const MAX_SPARE_BUFFERS: usize = 64;
/// Largest buffer, in entries, a core keeps for reuse. Larger ones carried a big batch, which
/// allocating for costs little per entry, and would hold memory long after it.
pub const MAX_BUFFER_CAPACITY: usize = 1024;

impl<H: Hooks> Core<H> {
    /// How many entry buffers this core holds for reuse (see [`Core::give_entry_buffer`]).
    pub fn entry_buffers(&self) -> usize {
        self.spare_buffers.len()
    }

    /// Takes one of the empty entry buffers this core holds, to hand to a core that sends entries.
    pub fn take_entry_buffer(&mut self) -> Option<Vec<Entry>> {
        let buffer = self.spare_buffers.pop();
        self.debug_check_invariants();
        buffer
    }

    /// Gives this core a buffer for the entries of a future AppendEntries. Its contents are
    /// dropped; a buffer without capacity, larger than [`MAX_BUFFER_CAPACITY`] or beyond the
    /// number of buffers a core keeps is dropped whole.
    pub fn give_entry_buffer(&mut self, mut buffer: Vec<Entry>) {
        if (1..=MAX_BUFFER_CAPACITY).contains(&buffer.capacity())
            && self.spare_buffers.len() < MAX_SPARE_BUFFERS
        {
            buffer.clear();
            self.spare_buffers.push(buffer);
        }
        self.debug_check_invariants();
    }

    /// Appends commands to the log as one batch and sends them to the followers that can take
    /// them now. Returns the inclusive index range they occupy, or `None` (appending nothing) if
    /// this node is not leader.
    pub fn propose<I>(&mut self, now: Nanos, commands: I) -> Option<(u64, u64)>
    where
        I: IntoIterator<Item = Bytes>,
    {
        self.now = self.now.max(now);
        let range = (self.role == Role::Leader && self.transfer.is_none())
            .then(|| self.append_batch(commands));
        self.debug_check_invariants();
        range
    }

    /// A leader appends `commands` as one batch and sends them; returns the indices they take.
    fn append_batch(&mut self, commands: impl IntoIterator<Item = Bytes>) -> (u64, u64) {
        self.assert_role(Role::Leader);
        assert!(
            self.transfer.is_none(),
            "node {} term {}: proposing during a transfer",
            self.id,
            self.term
        );
        let first = self.log.last_index() + 1;
        for command in commands {
            self.log.push(Entry::new(self.term, command));
        }
        let last = self.log.last_index();
        if last >= first {
            self.log_dirty_from = self.log_dirty_from.min(first);
            // A single node commits once its own write is durable (`persisted`).
            self.broadcast_append();
        }
        (first, last)
    }

    // ---- replication: follower side -------------------------------------------------------------

    pub(super) fn handle_append_entries(&mut self, from: usize, m: AppendEntries) {
        if m.term < self.term {
            // Its round is not one of this term's leader: the rejection carries none.
            let reply = self.rejection(m.prev_log_index);
            self.send(from, Message::AppendEntriesReply(reply));
            self.give_entry_buffer(m.entries);
            return;
        }
        assert!(
            m.term == self.term,
            "node {} term {}: an AppendEntries of term {} after term handling",
            self.id,
            self.term,
            m.term
        );
        self.follow_leader(from);
        let round = m.round;
        let mut reply = self.maybe_append(m);
        reply.round = round;
        if reply.success && self.hooks.has(Bug::AckBeforeDurable) {
            self.outbox.push((from, Message::AppendEntriesReply(reply)));
            return;
        }
        self.send(from, Message::AppendEntriesReply(reply));
    }

    /// Follows `from`, which sent a leader's message of this node's term: it leads this term.
    pub(super) fn follow_leader(&mut self, from: usize) {
        assert!(
            self.role != Role::Leader,
            "node {} term {}: two leaders in one term",
            self.id,
            self.term
        );
        self.become_follower(self.term, Some(from));
        self.leader_contact = self.now;
    }

    /// The consistency check and append of Figure 2, receiver rules 2 to 5. Keeps the message's
    /// entry buffer for reuse.
    fn maybe_append(&mut self, mut m: AppendEntries) -> AppendEntriesReply {
        let reply = self.check_and_append(&mut m);
        self.give_entry_buffer(m.entries);
        reply
    }

    /// [`Core::maybe_append`], leaving `m.entries` empty if they were appended.
    fn check_and_append(&mut self, m: &mut AppendEntries) -> AppendEntriesReply {
        let mut reply = self.rejection(m.prev_log_index);
        let offset = self.log.offset();
        if m.prev_log_index < offset {
            // The entries up to the snapshot are committed, so they match the leader's: skip them
            // and check from the snapshot's last entry on.
            let covered = (offset - m.prev_log_index) as usize;
            if covered >= m.entries.len() {
                reply.success = true;
                reply.index = m.prev_log_index + m.entries.len() as u64;
                return reply;
            }
            m.entries.drain(..covered);
            m.prev_log_index = offset;
            m.prev_log_term = self.log.term(offset).expect("the snapshot's last term");
        }
        match self.log.term(m.prev_log_index) {
            None => {
                // Our log is too short: the leader should continue from our end.
                reply.conflict_index = self.log.last_index() + 1;
                return reply;
            }
            Some(term) if term != m.prev_log_term => {
                // Hint the whole conflicting term, so the leader skips it in one round trip.
                reply.conflict_term = term;
                reply.conflict_index = self.log.first_index_of_term(term);
                return reply;
            }
            Some(_) => {}
        }
        // From here the logs agree up to `prev_log_index`, which this follower's log holds.
        assert!(
            self.role == Role::Follower && m.prev_log_index >= offset,
            "node {} term {}: appending after index {} as {:?} with log offset {}",
            self.id,
            self.term,
            m.prev_log_index,
            self.role,
            offset
        );
        if self.hooks.has(Bug::TruncateWithoutConflict) {
            self.truncate_log_from(m.prev_log_index + 1);
        }
        // Skip entries we already hold; truncate only at a real conflict (rule 3), then append
        // the rest, moving them out of the message rather than cloning them.
        let mut index = m.prev_log_index;
        let mut held = 0;
        for entry in &m.entries {
            match self.log.term(index + 1) {
                Some(term) if term == entry.term => {
                    index += 1;
                    held += 1;
                }
                Some(_) => {
                    assert!(
                        index + 1 > self.commit_index,
                        "node {} term {}: truncating committed index {} (commit_index {})",
                        self.id,
                        self.term,
                        index + 1,
                        self.commit_index
                    );
                    self.truncate_log_from(index + 1);
                    break;
                }
                None => break,
            }
        }
        let last_new = m.prev_log_index + m.entries.len() as u64;
        if m.entries.len() > held {
            self.log_dirty_from = self.log_dirty_from.min(index + 1);
        }
        // The last configuration entry among those appended is in force at once (thesis §4.1).
        let config = m.entries[held..]
            .iter()
            .rposition(|e| e.kind == EntryKind::Config)
            .map(|at| index + 1 + at as u64);
        self.log.append(&mut m.entries, held);
        if let Some(at) = config {
            let (membership, at) = self.find_membership(at);
            self.set_membership(membership, at);
        }
        if self.hooks.has(Bug::CommitBeyondNewEntries) && m.leader_commit > self.commit_index {
            self.set_commit(m.leader_commit.min(self.log.last_index()));
        }
        if m.leader_commit > self.commit_index {
            self.set_commit(m.leader_commit.min(last_new));
        }
        reply.success = true;
        reply.index = last_new;
        reply
    }

    /// Removes the log's entries from `from` on, noting that storage must drop them too and that
    /// they are no longer durable.
    fn truncate_log_from(&mut self, from: u64) {
        if from > self.log.last_index() {
            return;
        }
        assert!(
            self.role != Role::Leader,
            "node {} term {}: a leader truncating its own log from index {}",
            self.id,
            self.term,
            from
        );
        self.log.truncate_from(from);
        if from <= self.membership_index {
            // The configuration in force is gone: the latest one left is.
            self.refresh_membership();
        }
        self.log_dirty_from = self.log_dirty_from.min(from);
        self.durable_index = self.durable_index.min(from - 1);
        for (_, last) in &mut self.writing {
            *last = (*last).min(from - 1);
        }
    }

    /// A rejection of the AppendEntries at `prev_log_index`, with no conflict hint (yet).
    pub(super) fn rejection(&self, prev_log_index: u64) -> AppendEntriesReply {
        AppendEntriesReply {
            term: self.term,
            success: false,
            index: prev_log_index,
            conflict_term: 0,
            conflict_index: 0,
            round: 0,
        }
    }

    fn set_commit(&mut self, index: u64) {
        if index <= self.commit_index {
            return;
        }
        assert!(
            index <= self.log.last_index(),
            "node {} term {}: committing index {} beyond the last index {}",
            self.id,
            self.term,
            index,
            self.log.last_index()
        );
        self.commit_index = index;
    }

    // ---- replication: leader side ---------------------------------------------------------------

    pub(super) fn handle_append_reply(&mut self, from: usize, m: AppendEntriesReply) {
        if m.term != self.term {
            return; // a stale reply from an earlier term
        }
        self.assert_role(Role::Leader);
        self.assert_peer(from);
        self.note_round(from, m.round);
        if m.success {
            if self.progress[from].on_ack(m.index) {
                self.maybe_commit();
                if self.role != Role::Leader {
                    return; // it removed itself, and this acknowledgement committed that
                }
                // An acknowledgement that arrives after the commit notice it could have used
                // (this follower was not needed for the majority) would otherwise wait for the
                // next heartbeat to learn what it may commit.
                let pr = &self.progress[from];
                if self.commit_notify_deadline.is_none()
                    && pr.commit_sent < self.commit_index.min(pr.match_index)
                {
                    self.commit_notify_deadline = Some(self.now + self.config.commit_notify_delay);
                }
            }
            self.send_appends_to(from);
            self.maybe_send_timeout_now(from);
        } else if m.conflict_index == 0 {
            // Rejected for its term, not for the follower's log: the request came from this
            // node's leadership of an earlier term, and the follower, now in ours, answered with
            // our term. It says nothing about where the logs diverge; believing it would step
            // `next_index` back to `match_index + 1` and re-send entries the follower holds.
        } else {
            let hint = self.next_from_hint(&m);
            if self.progress[from].maybe_decr_to(m.index, hint) {
                tracing::trace!(
                    node = self.id,
                    term = self.term,
                    peer = from,
                    next = hint,
                    "backing up"
                );
                self.send_appends_to(from);
            }
        }
    }

    /// Where to probe next after a rejection: past the leader's last entry of the follower's
    /// conflicting term if the leader holds that term, else the first index of that term on the
    /// follower (only the latter with [`Backtrack::FollowerTerm`]). Either way one round trip
    /// skips a whole term (§5.3).
    ///
    /// Example: the follower holds terms `[1 1 4 4 4]` and the leader `[1 1 5 5 5 5]`. A probe at
    /// prev 5 is rejected with (conflict_term 4, conflict_index 3); the leader holds no term 4,
    /// so the next probe is at prev 2, which matches.
    fn next_from_hint(&self, m: &AppendEntriesReply) -> u64 {
        // Conflict term 0: the follower's log is too short and ends at `conflict_index - 1`.
        // No leader holds term 0, so both ways resume there.
        if m.conflict_term == 0 || self.config.backtrack == Backtrack::FollowerTerm {
            return m.conflict_index;
        }
        match self.log.last_index_of_term(m.conflict_term) {
            Some(last) => last + 1,
            None => m.conflict_index,
        }
    }

    /// Commits the highest index held by a majority, if it belongs to the current term. Entries
    /// of earlier terms are never committed by counting replicas (Figure 8, §5.4.2): such an
    /// entry can still be overwritten by a leader of a term in between. They become committed
    /// with the first current-term entry after them.
    pub(super) fn maybe_commit(&mut self) {
        self.assert_role(Role::Leader);
        // The leader holds what its own storage has made durable (thesis §10.2.1).
        let me = self.id;
        let candidate = self.commit_quorum().quorum_value(|id| {
            if id == me {
                self.durable_index
            } else {
                self.progress[id].match_index
            }
        });
        if self.hooks.has(Bug::CommitPreviousTerm) && candidate > self.commit_index {
            self.set_commit(candidate);
        }
        if candidate > self.commit_index && self.log.term(candidate) == Some(self.term) {
            let first_of_term = !self.committed_in_term();
            self.set_commit(candidate);
            if self.commit_notify_deadline.is_none() {
                self.commit_notify_deadline = Some(self.now + self.config.commit_notify_delay);
            }
            self.after_commit_membership();
            if self.role != Role::Leader {
                return; // it removed itself
            }
            if first_of_term && !self.pending_reads.is_empty() {
                // Reads registered before now can take their index: the commit index now
                // covers everything earlier leaders committed.
                for read in self.pending_reads.iter_mut() {
                    read.index = self.commit_index;
                }
                self.confirm_rounds();
            }
        }
    }

    /// Sends an empty AppendEntries, carrying the commit index, to each follower in Replicate
    /// state that has not been sent the current commit index and holds entries it could commit.
    pub(super) fn broadcast_commit(&mut self) {
        self.assert_role(Role::Leader);
        self.commit_notify_deadline = None;
        for peer in self.others() {
            let pr = &self.progress[peer];
            if pr.state == ProgressState::Replicate
                && pr.next_index > self.log.offset()
                && pr.commit_sent < self.commit_index
                && pr.commit_sent < pr.match_index
            {
                self.send_heartbeat(peer);
            }
        }
    }

    /// Starts a new heartbeat round and sends every follower an AppendEntries (or snapshot
    /// chunk) that carries it.
    pub(super) fn broadcast_heartbeat(&mut self) {
        self.assert_role(Role::Leader);
        self.heartbeat_deadline = self.now + self.config.heartbeat_interval;
        self.commit_notify_deadline = None;
        self.round += 1;
        if self.lease_round.is_none() {
            self.lease_round = Some((self.round, self.now));
        }
        for peer in self.others() {
            let pr = &mut self.progress[peer];
            match pr.state {
                ProgressState::Probe => {
                    // Re-probe: the last probe or its answer may have been lost.
                    pr.retry_at_heartbeat();
                    let _ = self.send_append(peer);
                }
                ProgressState::Snapshot => {
                    // Send the chunk again: it or its answer may have been lost.
                    pr.retry_at_heartbeat();
                    self.send_snapshot(peer);
                }
                ProgressState::Replicate => {
                    if pr.lost_at_heartbeat() {
                        tracing::trace!(
                            node = self.id,
                            term = self.term,
                            peer,
                            next = pr.next_index,
                            "nothing acknowledged for a heartbeat interval: probing"
                        );
                        // Nothing is in flight after the switch to Probe: it sends.
                        let _ = self.send_append(peer);
                    } else {
                        self.send_heartbeat(peer);
                    }
                }
            }
        }
    }

    pub(super) fn broadcast_append(&mut self) {
        for peer in self.others() {
            self.send_appends_to(peer);
        }
    }

    /// Sends `peer` everything it lacks, as far as its state, its window of messages and its
    /// bound on bytes in flight allow.
    pub(super) fn send_appends_to(&mut self, peer: usize) {
        self.assert_peer(peer);
        while !self.progress[peer].is_paused()
            && self.progress[peer].next_index <= self.log.last_index()
            && self.send_append(peer)
        {}
    }

    /// Sends one AppendEntries from `next_index`, with as many entries as the limits allow, or
    /// the next chunk of the snapshot if the follower needs entries compacted away. Returns
    /// false, sending nothing, when the follower streams (Replicate) and the next entry would
    /// take the bytes in flight to it past [`CoreConfig::max_inflight_bytes`]: the stream waits
    /// for acknowledgements.
    ///
    /// Bytes are the entries' command bytes. A batch carries at most
    /// [`CoreConfig::max_append_bytes`], and, while batches are in flight to a follower that
    /// streams, no more than what they leave of the bound; with nothing in flight it always
    /// carries at least one entry, however large, so that progress never stops. So a
    /// follower that answers slowly is never sent more than the bound (or one entry larger than
    /// it) before it answers.
    fn send_append(&mut self, peer: usize) -> bool {
        self.assert_role(Role::Leader);
        self.assert_peer(peer);
        let pr = &self.progress[peer];
        let next = pr.next_index;
        if next <= self.log.offset() || pr.state == ProgressState::Snapshot {
            self.send_snapshot(peer);
            return true;
        }
        // While batches are in flight, the next must fit in what they leave of the bound.
        let streaming = pr.state == ProgressState::Replicate && !pr.inflights.is_empty();
        let room = (self.config.max_inflight_bytes as u64).saturating_sub(pr.inflights.bytes());
        let limit = room.min(self.config.max_append_bytes as u64);
        let last = self
            .log
            .last_index()
            .min(next + self.config.max_append_entries as u64 - 1);
        let mut entries = self.log.slice(next, last);
        let mut bytes = 0;
        let mut fit = 0;
        for entry in entries {
            let with = bytes + entry.command.len() as u64;
            if with > limit && (fit > 0 || streaming) {
                break;
            }
            (bytes, fit) = (with, fit + 1);
            if with > limit {
                break; // one entry larger than the limit, alone in a batch
            }
        }
        if fit == 0 && !entries.is_empty() {
            return false; // waits for acknowledgements to make room
        }
        entries = &entries[..fit];
        let carried = !entries.is_empty();
        let sent_to = next - 1 + entries.len() as u64;
        let mut buffer = if carried {
            self.spare_buffers.pop().unwrap_or_default()
        } else {
            Vec::new()
        };
        buffer.extend_from_slice(entries);
        let prev_term = self
            .log
            .term(next - 1)
            .expect("next_index is within log + 1");
        // Before `sent`, which may advance `next_index`.
        self.push_append(peer, next - 1, prev_term, buffer);
        self.progress[peer].sent(sent_to, carried, bytes);
        true
    }

    /// A heartbeat (or commit notice) to a follower in Replicate state: no entries, previous
    /// index its `match_index`, which it holds, so the follower accepts it even when it overtook
    /// batches still on their way, and commits up to the least of the commit index and its match
    /// (as etcd's heartbeats carry min(match, commit)). Lost batches are found by
    /// [`Progress::lost_at_heartbeat`] instead.
    ///
    /// If the leader compacted its log past the match index since, the heartbeat names the
    /// index just before `next_index` instead (the follower may refuse it if the batches before
    /// it are still on their way, and is then probed); only a follower whose `next_index` is
    /// itself compacted away is sent the snapshot.
    pub(super) fn send_heartbeat(&mut self, peer: usize) {
        self.assert_role(Role::Leader);
        self.assert_peer(peer);
        let pr = &self.progress[peer];
        let prev = match self.log.term(pr.match_index) {
            Some(term) => (pr.match_index, term),
            None => match self.log.term(pr.next_index - 1) {
                Some(term) => (pr.next_index - 1, term),
                None => {
                    self.send_snapshot(peer);
                    return;
                }
            },
        };
        self.push_append(peer, prev.0, prev.1, Vec::new());
    }

    /// Queues an AppendEntries to `peer` carrying `entries` after `prev` (of term `prev_term`)
    /// and the commit index, and records what it lets the follower commit. Leaves `next_index`
    /// alone.
    fn push_append(&mut self, peer: usize, prev: u64, prev_term: u64, entries: Vec<Entry>) {
        self.assert_peer(peer);
        debug_assert!(
            prev_term <= self.term
                && entries
                    .first()
                    .is_none_or(|e| prev_term <= e.term && e.term <= self.term),
            "node {} term {}: sending entries after index {prev} of term {prev_term}",
            self.id,
            self.term
        );
        let last = prev + entries.len() as u64;
        let msg = AppendEntries {
            term: self.term,
            prev_log_index: prev,
            prev_log_term: prev_term,
            entries,
            leader_commit: self.commit_index,
            round: self.round,
        };
        self.progress[peer].note_commit_sent(self.commit_index.min(last));
        self.outbox.push((peer, Message::AppendEntries(msg)));
    }
}
