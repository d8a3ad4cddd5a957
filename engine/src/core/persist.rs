//! Persist before you speak: what the driver must make durable, and which messages wait for it.
//!
//! A node's term, vote and log must be on stable storage before it tells anyone about them: a
//! vote granted and then forgotten in a crash lets the node vote twice in one term; an entry
//! acknowledged and then lost can make a committed entry disappear. So the core keeps what it
//! changed (hard state, appended and truncated entries) as pending work that the driver takes
//! with [`Core::take_persist`], writes, and reports with [`Core::persisted`]. Every message that
//! reports this node's state (votes, AppendEntries replies, RequestVotes, which carry a term and
//! vote the node must not forget) is held back until the state it was produced in is durable;
//! [`Core::take_messages`] hands out only what may go now. A leader's AppendEntries go at once,
//! without waiting for its own write of the entries they carry (Raft thesis §10.2.1): the leader
//! counts itself toward a majority only for entries its storage has made durable
//! ([`Core::durable_index`]).
//!
//! Writes are numbered (generations) and must be reported durable in the order they were taken,
//! but the driver may take the next before the previous one is durable (a pipelined writer).
//! The deterministic simulator does; the node thread writes each one before stepping again.
//!
//! # Invariants
//!
//! - `durable_gen <= taken_gen`, and the writes under way are generations
//!   `durable_gen + 1 ..= taken_gen`, in order.
//! - A held message waits for a generation above `durable_gen`; generations never decrease
//!   along the queue, so releasing a prefix releases messages in the order they were made.
//! - `durable_index <= last index`: a truncation lowers it, and what the writes under way will
//!   make durable, at once.

use super::{
    Core, EntryKind, HardState, Hooks, Membership, MembershipError, Message, Recovered, Role,
    Update,
};

/// A write the driver must make durable: what changed in the core since the previous one.
/// See [`Core::take_persist`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Persist {
    /// Numbers the writes of one core, from 1; report it to [`Core::persisted`].
    pub generation: u64,
    /// The new term and vote, if they changed.
    pub hard_state: Option<HardState>,
    /// Whether the core's snapshot ([`Core::snapshot`]) is new and to be stored.
    pub snapshot: bool,
    /// Stored entries from this index on are to be dropped, if the log was truncated.
    pub truncate_from: Option<u64>,
    /// The log's entries `first_index..=last_index` are to be stored (none if `first_index >
    /// last_index`).
    pub first_index: u64,
    /// See `first_index`. Also the log's last index when the write was taken.
    pub last_index: u64,
}

/// Why a recovered state cannot be one a core of the cluster wrote (see
/// [`check_recovered_state`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoveredStateError {
    /// The snapshot's last entry is of a term above the current term.
    SnapshotTermAboveCurrent {
        /// The term of the snapshot's last entry.
        snapshot_term: u64,
        /// The recovered current term.
        current_term: u64,
    },
    /// The first entry after the snapshot is of a lower term than the snapshot's last entry.
    LogTermBelowSnapshot {
        /// The term of the first entry after the snapshot.
        first_term: u64,
        /// The term of the snapshot's last entry.
        snapshot_term: u64,
    },
    /// The node voted for a node that is not in the cluster.
    VoteOutsideCluster {
        /// The node it voted for.
        voted_for: usize,
        /// The size of the cluster.
        peers: usize,
    },
    /// The entry at `index` is of a lower term than the entry before it.
    LogTermGoesDown {
        /// The index of the entry.
        index: u64,
        /// Its term.
        term: u64,
        /// The term of the entry before it.
        previous_term: u64,
    },
    /// The last entry is of a term above the current term.
    EntryTermAboveCurrent {
        /// The term of the last entry.
        entry_term: u64,
        /// The recovered current term.
        current_term: u64,
    },
    /// A configuration (the entry's at `index`, or the snapshot's, at its index) is unreadable.
    BadConfiguration {
        /// The index of the entry, or of the snapshot.
        index: u64,
        /// What is wrong with it.
        problem: MembershipError,
    },
    /// A configuration (the entry's at `index`, or the snapshot's) names a node outside the
    /// cluster.
    ConfigurationOutsideCluster {
        /// The index of the entry, or of the snapshot.
        index: u64,
        /// The node it names.
        node: usize,
        /// The size of the cluster.
        peers: usize,
    },
}

impl std::fmt::Display for RecoveredStateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::SnapshotTermAboveCurrent {
                snapshot_term,
                current_term,
            } => write!(
                f,
                "its snapshot is of term {snapshot_term} above its current term {current_term}"
            ),
            Self::LogTermBelowSnapshot {
                first_term,
                snapshot_term,
            } => write!(
                f,
                "the term of its log goes down after its snapshot \
                 ({first_term} after {snapshot_term})"
            ),
            Self::VoteOutsideCluster { voted_for, peers } => write!(
                f,
                "it voted for node {voted_for}, which is not in a cluster of {peers}"
            ),
            Self::LogTermGoesDown {
                index,
                term,
                previous_term,
            } => write!(
                f,
                "the term of its log goes down at index {index} ({term} after {previous_term})"
            ),
            Self::EntryTermAboveCurrent {
                entry_term,
                current_term,
            } => write!(
                f,
                "its log holds an entry of term {entry_term} above its current term {current_term}"
            ),
            Self::BadConfiguration { index, problem } => {
                write!(
                    f,
                    "the configuration at index {index} is unreadable: {problem}"
                )
            }
            Self::ConfigurationOutsideCluster { index, node, peers } => write!(
                f,
                "the configuration at index {index} names node {node}, which is not in a \
                 cluster of {peers}"
            ),
        }
    }
}

impl std::error::Error for RecoveredStateError {}

/// Checks that a recovered state can be one a core of a `peers`-node cluster wrote, as
/// [`Core::restore`] requires.
///
/// # Errors
///
/// The first problem found, in the order of [`RecoveredStateError`]'s variants: a snapshot or
/// entry of a term above the current term, terms going down along the log or after the
/// snapshot, a vote for a node outside the cluster, or a configuration (the snapshot's or an
/// entry's) that is unreadable or names a node outside the cluster.
pub fn check_recovered_state(peers: usize, state: &Recovered) -> Result<(), RecoveredStateError> {
    let (hard_state, entries) = (&state.hard_state, &state.entries);
    if let Some(snapshot) = &state.snapshot {
        if snapshot.term > hard_state.term {
            return Err(RecoveredStateError::SnapshotTermAboveCurrent {
                snapshot_term: snapshot.term,
                current_term: hard_state.term,
            });
        }
        if let Some(first) = entries.first()
            && first.term < snapshot.term
        {
            return Err(RecoveredStateError::LogTermBelowSnapshot {
                first_term: first.term,
                snapshot_term: snapshot.term,
            });
        }
    }
    if let Some(v) = hard_state.voted_for
        && v >= peers
    {
        return Err(RecoveredStateError::VoteOutsideCluster {
            voted_for: v,
            peers,
        });
    }
    if let Some(i) = entries.windows(2).position(|w| w[1].term < w[0].term) {
        return Err(RecoveredStateError::LogTermGoesDown {
            index: state.first_index() + i as u64 + 1,
            term: entries[i + 1].term,
            previous_term: entries[i].term,
        });
    }
    if let Some(last) = entries.last()
        && last.term > hard_state.term
    {
        return Err(RecoveredStateError::EntryTermAboveCurrent {
            entry_term: last.term,
            current_term: hard_state.term,
        });
    }
    let snapshot_config = state
        .snapshot
        .as_ref()
        .and_then(|s| Some((s.index, s.config.as_ref()?)));
    let entry_configs = (state.first_index()..)
        .zip(entries)
        .filter(|(_, e)| e.kind == EntryKind::Config)
        .map(|(index, e)| (index, &e.command));
    for (index, bytes) in snapshot_config.into_iter().chain(entry_configs) {
        let membership = Membership::decode(bytes)
            .map_err(|problem| RecoveredStateError::BadConfiguration { index, problem })?;
        if let Some(node) = membership.members().iter().find(|&id| id >= peers) {
            return Err(RecoveredStateError::ConfigurationOutsideCluster { index, node, peers });
        }
    }
    Ok(())
}

impl<H: Hooks> Core<H> {
    /// Messages produced since the last call, as `(to, message)`. The buffer is reused: drain it.
    pub fn take_messages(&mut self) -> std::vec::Drain<'_, (usize, Message)> {
        self.outbox.drain(..)
    }

    /// Whether there are messages to send.
    pub fn has_messages(&self) -> bool {
        !self.outbox.is_empty()
    }

    /// The highest index whose entry is on stable storage (as [`Core::persisted`] reported).
    pub fn durable_index(&self) -> u64 {
        self.durable_index
    }

    /// The term and vote to keep on stable storage.
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            voted_for: self.voted_for,
        }
    }

    /// The write `persist` describes, as a storage takes it: entries read from the log, the
    /// snapshot from [`Core::snapshot`]. Call it before stepping the core again.
    pub fn update(&self, persist: &Persist) -> Update<'_> {
        Update {
            hard_state: persist.hard_state,
            snapshot: self.snapshot.as_ref().filter(|_| persist.snapshot),
            truncate_from: persist.truncate_from,
            first_index: persist.first_index,
            entries: self.log.slice(persist.first_index, persist.last_index),
        }
    }

    /// Whether messages are waiting for a write to become durable.
    pub fn has_held_messages(&self) -> bool {
        !self.held.is_empty()
    }

    /// Takes what changed since the last call and must now be made durable, if anything did.
    /// The driver writes [`Core::update`] of it (before stepping the core again: the entries it
    /// names are the log's as they are now) and reports it with [`Core::persisted`].
    pub fn take_persist(&mut self) -> Option<Persist> {
        if !self.is_dirty() {
            return None;
        }
        self.taken_gen += 1;
        let last = self.log.last_index();
        let first = self
            .log_dirty_from
            .max(self.log.first_index())
            .min(last + 1);
        let persist = Persist {
            generation: self.taken_gen,
            hard_state: self.hard_state_dirty.then(|| self.hard_state()),
            snapshot: self.snapshot_dirty,
            truncate_from: (self.log_dirty_from <= self.stored_last).then_some(self.log_dirty_from),
            first_index: first,
            last_index: last,
        };
        self.hard_state_dirty = false;
        self.snapshot_dirty = false;
        self.log_dirty_from = u64::MAX;
        self.stored_last = last;
        self.writing.push_back((self.taken_gen, last));
        self.debug_check_invariants();
        Some(persist)
    }

    /// Records that the write of `generation` (and every earlier one) is durable: releases the
    /// messages that waited for it and, on a leader, counts the entries toward commitment.
    ///
    /// # Panics
    ///
    /// If `generation` was not taken, or an earlier write is still outstanding.
    pub fn persisted(&mut self, generation: u64) {
        let Some(&(next, last)) = self.writing.front() else {
            panic!(
                "node {}: write {generation} reported durable, none outstanding",
                self.id
            );
        };
        assert_eq!(
            next, generation,
            "node {}: writes must become durable in order",
            self.id
        );
        self.writing.pop_front();
        debug_assert!(
            last <= self.log.last_index(),
            "node {}: write {generation} made durable up to {last}, past the log's end",
            self.id
        );
        self.durable_gen = generation;
        self.durable_index = last;
        while self.held.front().is_some_and(|&(g, ..)| g <= generation) {
            let (_, to, msg) = self.held.pop_front().expect("checked");
            self.outbox.push((to, msg));
        }
        if self.role == Role::Leader {
            self.maybe_commit();
        }
        self.debug_check_invariants();
    }

    /// Whether anything changed since the last [`Core::take_persist`].
    fn is_dirty(&self) -> bool {
        self.hard_state_dirty || self.snapshot_dirty || self.log_dirty_from != u64::MAX
    }

    /// Queues a message that reports this node's state: it goes out once every change made so
    /// far is durable (see the module docs).
    pub(super) fn send(&mut self, to: usize, msg: Message) {
        self.assert_peer(to);
        let needed = self.taken_gen + u64::from(self.is_dirty());
        if needed <= self.durable_gen {
            self.outbox.push((to, msg));
        } else {
            // `taken_gen` never decreases, so neither do the generations along `held`.
            debug_assert!(self.held.back().is_none_or(|&(g, ..)| g <= needed));
            self.held.push_back((needed, to, msg));
        }
    }
}
