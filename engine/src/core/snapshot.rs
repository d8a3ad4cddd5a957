//! Snapshots (§7 of the extended Raft paper, Figure 13): compaction, and sending and
//! installing a snapshot.
//!
//! The service compacts the log with [`Core::compact`]: a snapshot of its state machine up to an
//! applied index replaces the log's entries up to there. A leader that no longer holds the
//! entries a follower needs sends it the snapshot instead ([`Message::InstallSnapshot`]), in
//! chunks of [`CoreConfig::max_snapshot_chunk`] bytes, one at a time. A follower installs a
//! snapshot newer than its commit index: it keeps the entries after the snapshot if its log holds
//! the snapshot's last entry, and drops its log otherwise; either way the snapshot is written
//! before the follower says it installed it, and handed to the service
//! ([`Core::snapshot_to_apply`]) before any later entry is applied, so applied indices never go
//! back.
//!
//! # Invariants
//!
//! - Whenever the log's offset is above 0 the snapshot is present, ends at the offset, and
//!   has the term the log holds there.
//! - A snapshot holds only committed entries: `offset <= commit_index`. One taken here holds
//!   only applied entries; until one installed from a leader is given to the service, no entry
//!   is applied, and `last_applied` is not past it.
//! - Chunks of one leader's snapshot never mix with another's: two services may serialize the
//!   same state differently.

#[cfg(doc)]
use super::CoreConfig;
use super::{Bug, Hooks};
use super::{
    Core, Entry, InstallSnapshot, InstallSnapshotReply, Message, ProgressState, Role, Snapshot,
};
use bytes::{Bytes, BytesMut};

impl<H: Hooks> Core<H> {
    /// The latest snapshot (taken, installed or recovered), if any.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    /// The snapshot the service must be given before any further entry is applied (one a leader
    /// installed here, or the one this node restarted from), if there is one. Report it with
    /// [`Core::snapshot_applied`].
    pub fn snapshot_to_apply(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref().filter(|_| self.snapshot_to_apply)
    }

    /// Records that the service was given [`Core::snapshot_to_apply`]: entries after it are
    /// applied next.
    pub fn snapshot_applied(&mut self) {
        if let Some(snapshot) = self.snapshot.as_ref().filter(|_| self.snapshot_to_apply) {
            self.last_applied = self.last_applied.max(snapshot.index);
            self.snapshot_to_apply = false;
        }
        self.debug_check_invariants();
    }

    /// The vector a compaction left behind with the entries it dropped from the log, if it
    /// moved the kept ones into a vector given with [`Core::give_log_buffer`]: dropping the
    /// entries is then the driver's, off the thread that steps the core if it likes. See
    /// [`Log::compact_to`](super::Log::compact_to).
    pub fn take_retired_entries(&mut self) -> Option<Vec<Entry>> {
        self.log.take_retired()
    }

    /// Gives the log an empty vector to move the kept entries into at the next compaction,
    /// which then leaves the dropped ones to [`Core::take_retired_entries`] instead of dropping
    /// them itself. Its contents are dropped; the log keeps one such vector.
    pub fn give_log_buffer(&mut self, buffer: Vec<Entry>) {
        self.log.give_spare(buffer);
    }

    /// Compacts the log: the service's snapshot `data` of its state machine up to `index`
    /// replaces the log's entries up to there, and is stored with the next write. Returns
    /// whether it did; it does nothing for an index not above the current snapshot's or beyond
    /// what was applied.
    pub fn compact(&mut self, index: u64, data: Bytes) -> bool {
        let compacts =
            index > self.log.offset() && index <= self.last_applied && !self.snapshot_to_apply;
        if compacts {
            assert!(
                index <= self.commit_index,
                "node {} term {}: compacting to index {} beyond commit_index {}",
                self.id,
                self.term,
                index,
                self.commit_index
            );
            let term = self
                .log
                .term(index)
                .expect("an applied index after the offset is in the log");
            let config = self.snapshot_config(index);
            self.log.compact_to(index);
            self.snapshot = Some(Snapshot {
                index,
                term,
                data,
                config,
            });
            self.snapshot_dirty = true;
        }
        self.debug_check_invariants();
        compacts
    }

    /// Receives one chunk of a leader's snapshot (Figure 13), and installs the snapshot when it
    /// is whole.
    pub(super) fn handle_install_snapshot(&mut self, from: usize, m: InstallSnapshot) {
        let reply = |term, next_offset, installed| {
            Message::InstallSnapshotReply(InstallSnapshotReply {
                term,
                last_included_index: m.last_included_index,
                next_offset,
                installed,
                round: if term == m.term { m.round } else { 0 },
            })
        };
        if m.term < self.term {
            self.send(from, reply(self.term, 0, false));
            return;
        }
        assert!(
            m.term == self.term,
            "node {} term {}: an InstallSnapshot of term {} after term handling",
            self.id,
            self.term,
            m.term
        );
        self.follow_leader(from);
        let chunk_end = m.offset + m.data.len() as u64;
        if m.last_included_index <= self.commit_index {
            // Older than what is committed here: this node holds all of it already.
            self.incoming = None;
            self.send(from, reply(self.term, chunk_end, true));
            return;
        }
        let key = (m.term, m.last_included_index, m.last_included_term);
        if self
            .incoming
            .as_ref()
            .is_none_or(|&(term, index, last_term, _)| (term, index, last_term) != key)
        {
            if m.offset != 0 {
                self.send(from, reply(self.term, 0, false)); // start again
                return;
            }
            self.incoming = Some((key.0, key.1, key.2, BytesMut::new()));
        }
        let received = self
            .incoming
            .as_ref()
            .map_or(0, |(.., data)| data.len() as u64);
        if m.offset != received {
            // A chunk out of order (duplicated, or after a lost one): ask for the next one needed.
            self.send(from, reply(self.term, received, false));
            return;
        }
        let (.., mut data) = self.incoming.take().expect("set above");
        if !m.done {
            data.extend_from_slice(&m.data);
            self.incoming = Some((key.0, key.1, key.2, data));
            self.send(from, reply(self.term, chunk_end, false));
            return;
        }
        let data = if data.is_empty() {
            m.data // the whole snapshot in one chunk: no copy
        } else {
            data.extend_from_slice(&m.data);
            data.freeze()
        };
        self.install(m.last_included_index, m.last_included_term, data, m.config);
        // Goes out once the snapshot is durable, like an AppendEntries acknowledgement.
        self.send(from, reply(self.term, chunk_end, true));
    }

    /// Installs a snapshot up to `index` (of `term`) newer than the commit index: keeps the log's
    /// entries after it if the log holds its last entry, drops the log otherwise; the service gets
    /// it before any later entry.
    pub(super) fn install(&mut self, index: u64, term: u64, data: Bytes, config: Option<Bytes>) {
        assert!(
            self.role == Role::Follower && index > self.commit_index,
            "node {} term {}: installing a snapshot up to index {} as {:?} with commit_index {}",
            self.id,
            self.term,
            index,
            self.role,
            self.commit_index
        );
        let keep_suffix = self.log.term(index) == Some(term);
        let keep_suffix = keep_suffix && !self.hooks.has(Bug::DiscardSuffixOnInstall);
        if keep_suffix {
            self.log.compact_to(index);
        } else {
            self.log.reset(index, term);
            self.log_dirty_from = self.log_dirty_from.min(index + 1);
            self.durable_index = self.durable_index.min(index);
            for (_, last) in &mut self.writing {
                *last = (*last).min(index);
            }
        }
        tracing::debug!(
            node = self.id,
            term = self.term,
            index,
            kept = self.log.len(),
            "installed a snapshot"
        );
        let config = config.filter(|_| !self.hooks.has(Bug::ForgetConfigOnInstall));
        self.snapshot = Some(Snapshot {
            index,
            term,
            data,
            config,
        });
        // The snapshot's configuration, or a later one in the suffix kept.
        self.refresh_membership();
        self.snapshot_dirty = true;
        self.snapshot_to_apply = true;
        self.stats.snapshots_installed += 1;
        self.commit_index = self.commit_index.max(index);
    }

    /// Sends `peer` the next chunk of the snapshot, starting the transfer if it is not under way,
    /// unless a chunk is outstanding.
    pub(super) fn send_snapshot(&mut self, peer: usize) {
        self.assert_role(Role::Leader);
        self.assert_peer(peer);
        let pr = &mut self.progress[peer];
        if pr.state != ProgressState::Snapshot {
            let snapshot = self
                .snapshot
                .as_ref()
                .expect("a compacted log has a snapshot");
            pr.become_snapshot(
                snapshot.index,
                snapshot.term,
                snapshot.data.clone(),
                snapshot.config.clone(),
            );
        }
        let transfer = pr.snapshot.as_mut().expect("in Snapshot state");
        let Some((offset, data, done)) = transfer.next_chunk(self.config.max_snapshot_chunk) else {
            return;
        };
        let msg = InstallSnapshot {
            term: self.term,
            last_included_index: transfer.index,
            last_included_term: transfer.term,
            offset,
            data,
            done,
            round: self.round,
            config: transfer.config.clone(),
        };
        self.outbox.push((peer, Message::InstallSnapshot(msg)));
    }

    pub(super) fn handle_snapshot_reply(&mut self, from: usize, m: InstallSnapshotReply) {
        if m.term != self.term {
            return; // a stale reply from an earlier term
        }
        self.assert_role(Role::Leader);
        self.note_round(from, m.round);
        let pr = &mut self.progress[from];
        let done = pr.snapshot_reply(m.last_included_index, m.next_offset, m.installed);
        if done {
            tracing::debug!(
                node = self.id,
                term = self.term,
                peer = from,
                index = m.last_included_index,
                "follower installed the snapshot"
            );
            self.maybe_commit();
            if self.role != Role::Leader {
                return; // it removed itself, and this answer committed that
            }
        }
        self.send_appends_to(from);
    }
}
