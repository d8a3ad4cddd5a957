//! Elections: the election timer, the three roles' transitions, votes, PreVote, CheckQuorum
//! and leader stickiness (§5.2 of the extended Raft paper; Raft thesis §9.6, §6.2, §4.2.3).
//!
//! A follower that hears from no leader for a randomized election timeout becomes a candidate
//! of the next term, votes for itself and asks every other member, learners too (their
//! answers count for nothing; see `other_members`), for its vote; a majority of grants makes it
//! leader. A message of a later term makes a node a follower of that term without restarting
//! its election timer (`adopt_term`). A node grants at most one vote per term, and only to a candidate
//! whose log is at least as up to date as its own (§5.4.1), which is what keeps every
//! committed entry in the log of every later leader.
//!
//! A candidate tallies grants and refusals alike (`VoteTally`, asked of the configuration in
//! `quorum.rs`). Once so many have refused that the rest cannot make a majority, it has lost,
//! and it becomes a follower of its term at once rather than at its election timeout; a
//! pre-candidate does the same (see `step_back_after_losing` for why).
//!
//! # PreVote and CheckQuorum
//!
//! Both are off by default ([`CoreConfig::pre_vote`], [`CoreConfig::check_quorum`]) and on in
//! [`CoreConfig::production`].
//!
//! With PreVote (Raft thesis §9.6) a node whose election timeout fires becomes a pre-candidate:
//! still a follower of its term, it sends [`Message::PreVote`] with `term + 1` and its last log
//! index and term. A receiver grants it as it would grant a RequestVote of that term (log at
//! least as up to date; a higher term, or this term with no vote for another node) unless it
//! leads or heard from its leader within `election_timeout_min`; it changes neither its term
//! nor its vote nor its election timer. Only with a majority of grants does the pre-candidate
//! increment its term and start a real election. Pre-vote messages never make anyone adopt a
//! term, except a refusal, which carries the refuser's real term: a pre-candidate behind
//! learns the cluster's term from it. So a node cut off from the others keeps its term while
//! isolated, and when it comes back its pre-votes are refused by nodes that hear from their
//! leader: it follows the leader without disturbing it.
//!
//! With CheckQuorum a leader checks once per `election_timeout_min` that it heard (any message
//! not of an earlier term) from a majority, itself included, since the last check, and steps
//! down to follower in the same term if not. A leader cut off from the majority so stops
//! within two minimum election timeouts. CheckQuorum also turns on leader stickiness: a leader,
//! or a follower that heard from its leader within `election_timeout_min`, ignores RequestVote
//! whatever its term: no vote, no new term, no reply. Stickiness comes with CheckQuorum, not
//! with PreVote, because it is safe for liveness only when leaders that lost the majority step
//! down: otherwise a leader that can still send to some followers but hear from none would
//! keep them sticky, and the rest of the cluster might never gather a majority of votes.
//! PreVote alone already keeps a node whose log is behind or which is cut off from starting
//! elections; stickiness covers the remaining case of a real candidate (one that won its
//! pre-votes) reaching nodes that still hear from their leader.
//!
//! # Invariants
//!
//! - The term never decreases, and a node votes at most once per term (its vote is durable
//!   before the grant goes out: see `persist.rs`).
//! - A candidate and a leader voted for themselves; a leader names itself leader, and no other
//!   node does.
//! - A candidate's or pre-candidate's tally is pending: won makes it leader (or, after
//!   pre-votes, candidate) and lost a follower, both at once. A leader's tally is won.
//! - A pre-candidate is a follower that knows no leader.

#[cfg(doc)]
use super::CoreConfig;
use super::quorum::{NodeSet, VoteResult, VoteTally};
use super::{Bug, Hooks};
use super::{Core, Entry, Message, Progress, ReadOutcome, RequestVote, RequestVoteReply, Role};
use bytes::Bytes;

impl<H: Hooks> Core<H> {
    pub(super) fn reset_election_timer(&mut self) {
        let timeout = self
            .rng
            .u64(self.config.election_timeout_min..self.config.election_timeout_max);
        self.election_deadline = self.now + timeout;
    }

    pub(super) fn become_follower(&mut self, term: u64, leader: Option<usize>) {
        assert!(
            term >= self.term,
            "node {}: term going back from {} to {}",
            self.id,
            self.term,
            term
        );
        if term > self.term {
            self.term = term;
            self.voted_for = None;
            self.hard_state_dirty = true;
        }
        if self.role == Role::Leader {
            self.stats.step_downs += 1;
            self.transfer = None;
            let refused = self.pending_reads.drain(..).map(|read| ReadOutcome {
                id: read.id,
                index: None,
            });
            self.read_outcomes.extend(refused);
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.pre_voting = false;
        self.reset_election_timer();
    }

    /// A message of a later term makes this node a follower of that term, with no vote and no
    /// leader known yet. Its election timer runs on: only a leader's message or a vote granted
    /// restarts it (§5.2), not a candidate it refuses. Otherwise a candidate that cannot win
    /// (its log is behind) and times out first would restart every other timer with each of its
    /// requests, and win every race to the next term, so that no other node could ever ask for
    /// its vote in a term it has not already voted in. A leader's timer did not run while it
    /// led: it starts afresh.
    pub(super) fn adopt_term(&mut self, term: u64) {
        let deadline = self.election_deadline;
        let led = self.role == Role::Leader;
        self.become_follower(term, None);
        if !led {
            self.election_deadline = deadline;
        }
    }

    /// Starts a pre-vote round (§9.6): asks every other node whether it would vote for this one
    /// in `term + 1`, changing neither term nor vote. A candidate whose election failed runs one
    /// too, as a follower of its term. A majority of grants starts the real election.
    pub(super) fn pre_campaign(&mut self) {
        assert!(
            self.role != Role::Leader,
            "node {} term {}: a leader starting a pre-vote",
            self.id,
            self.term
        );
        self.become_follower(self.term, None);
        self.pre_voting = true;
        self.votes = VoteTally::new(self.id);
        tracing::debug!(node = self.id, term = self.term, "starting a pre-vote");
        if self.quorum.vote_result(&self.votes) == VoteResult::Won {
            self.campaign(false);
            return;
        }
        let request = RequestVote {
            term: self.term + 1,
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
            transfer: false,
        };
        for peer in self.other_voters() {
            // Promises nothing and reports no state to keep: it need not wait for a write.
            self.outbox.push((peer, Message::PreVote(request.clone())));
        }
    }

    /// Starts an election in the next term. `transfer`: this node's leader handed it
    /// leadership, so voters that still hear from that leader vote anyway.
    pub(super) fn campaign(&mut self, transfer: bool) {
        assert!(
            self.role != Role::Leader,
            "node {} term {}: a leader starting an election",
            self.id,
            self.term
        );
        self.pre_voting = false;
        self.term += 1;
        self.role = Role::Candidate;
        self.leader = None;
        self.voted_for = Some(self.id);
        self.hard_state_dirty = true;
        self.votes = VoteTally::new(self.id);
        self.stats.elections_started += 1;
        self.reset_election_timer();
        tracing::debug!(node = self.id, term = self.term, "starting an election");
        if self.quorum.vote_result(&self.votes) == VoteResult::Won {
            self.become_leader();
            return;
        }
        let request = RequestVote {
            term: self.term,
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
            transfer,
        };
        for peer in self.other_members() {
            self.send(peer, Message::RequestVote(request.clone()));
        }
    }

    fn become_leader(&mut self) {
        self.assert_role(Role::Candidate);
        assert!(
            self.quorum.vote_result(&self.votes) == VoteResult::Won,
            "node {} term {}: becoming leader without winning its tally {:?}",
            self.id,
            self.term,
            self.votes
        );
        debug_assert!(self.leader.is_none() && !self.pre_voting);
        tracing::debug!(node = self.id, term = self.term, "became leader");
        self.role = Role::Leader;
        self.leader = Some(self.id);
        self.recent_active = NodeSet::single(self.id);
        self.quorum_deadline = self.now + self.config.election_timeout_min;
        self.stats.elections_won += 1;
        self.lease_round = None;
        self.lease_until = 0;
        self.lease_forfeited = false;
        let next = self.log.last_index() + 1;
        let max_inflight = self.config.max_inflight;
        for pr in self.progress.iter_mut() {
            *pr = Progress::new(next, max_inflight);
        }
        if self.config.leader_no_op || self.config_no_op_due() {
            self.log.push(Entry::new(self.term, Bytes::new()));
            self.log_dirty_from = self.log_dirty_from.min(next);
        }
        self.broadcast_heartbeat();
        // A joint configuration its predecessor committed but did not leave.
        self.after_commit_membership();
    }

    /// CheckQuorum: a leader that heard from no majority since the last check (one
    /// `election_timeout_min` ago) steps down, staying in its term; otherwise it starts counting
    /// again. Returns whether it stepped down.
    ///
    /// A leader cut off at time `t` may still count messages that arrived between the last check
    /// and `t`, so it keeps leading past the next check, but not past the one after: it steps
    /// down within two minimum election timeouts of `t`.
    pub(super) fn maybe_step_down(&mut self) -> bool {
        self.assert_role(Role::Leader);
        let mut heard = self.recent_active;
        heard.insert(self.id);
        let quorum = self.quorum.is_quorum(heard);
        let quorum = quorum || self.hooks.has(Bug::LeadWithoutQuorum);
        if quorum {
            self.recent_active = NodeSet::single(self.id);
            self.quorum_deadline = self.now + self.config.election_timeout_min;
            return false;
        }
        tracing::debug!(
            node = self.id,
            term = self.term,
            "stepping down: no majority heard from within an election timeout"
        );
        self.become_follower(self.term, None);
        true
    }

    /// Leader stickiness: whether to ignore `msg` from `from` unanswered, with no new term.
    /// With CheckQuorum, a node ignores a RequestVote (one not sent for a leadership transfer)
    /// while it leads, or within the minimum election timeout after it heard from a leader
    /// (or started, or restarted): its leader is alive, so the candidate is either cut off from
    /// it or impatient. By time alone, whatever its term, leader or role since: a stale reply of
    /// a higher term, say, may have made it a follower with no known leader, and the leader it
    /// answered (perhaps just before a restart) may still count on it for its lease.
    pub(super) fn ignores_request_vote(&self, from: usize, msg: &Message) -> bool {
        let ignored = self.config.check_quorum
            && matches!(msg, Message::RequestVote(m) if !m.transfer)
            && (self.role == Role::Leader
                || self.now
                    < self
                        .leader_contact
                        .saturating_add(self.config.election_timeout_min));
        if ignored {
            tracing::trace!(
                node = self.id,
                term = self.term,
                from,
                "ignoring a RequestVote: the leader is alive"
            );
        }
        ignored
    }

    /// Whether this node leads, or heard from the leader of its term within the minimum election
    /// timeout: then no election is needed, and it refuses pre-votes (and, with CheckQuorum,
    /// ignores RequestVote).
    fn hears_from_leader(&self) -> bool {
        match self.role {
            Role::Leader => true,
            Role::Candidate => false,
            Role::Follower => {
                self.leader.is_some()
                    && self.now < self.leader_contact + self.config.election_timeout_min
            }
        }
    }

    // ---- votes and pre-votes --------------------------------------------------------------------

    pub(super) fn handle_request_vote(&mut self, from: usize, m: RequestVote) {
        let granted = m.term == self.term
            && self.voted_for.is_none_or(|v| v == from)
            && self.log.is_up_to_date(m.last_log_index, m.last_log_term);
        let granted = granted
            || (self.hooks.has(Bug::DoubleVote)
                && m.term == self.term
                && self.log.is_up_to_date(m.last_log_index, m.last_log_term));
        assert!(
            !granted || m.term == self.term,
            "node {} term {}: granting a vote of term {}",
            self.id,
            self.term,
            m.term
        );
        if granted {
            self.hard_state_dirty |= self.voted_for != Some(from);
            self.voted_for = Some(from);
            self.reset_election_timer();
        }
        let reply = RequestVoteReply {
            term: self.term,
            granted,
        };
        if granted && self.hooks.has(Bug::VoteBeforeDurable) {
            self.outbox.push((from, Message::RequestVoteReply(reply)));
            return;
        }
        self.send(from, Message::RequestVoteReply(reply));
    }

    pub(super) fn handle_vote_reply(&mut self, from: usize, m: RequestVoteReply) {
        if m.term != self.term {
            return;
        }
        self.assert_role(Role::Candidate);
        assert!(
            self.votes.granted().contains(self.id),
            "node {} term {}: a candidate without its own vote in its tally",
            self.id,
            self.term
        );
        self.votes.record(from, m.granted);
        match self.quorum.vote_result(&self.votes) {
            VoteResult::Won => self.become_leader(),
            VoteResult::Lost => self.step_back_after_losing(),
            VoteResult::Pending => {}
        }
    }

    /// Answers a pre-vote (§9.6) as this node would answer a RequestVote of `m.term`, and
    /// refuses it if its leader is alive; changes nothing here, not even the election timer.
    ///
    /// It grants if `m.term` is above its term (it would adopt that term, with no vote yet) or
    /// equal to it with no vote for another node, the candidate's log is at least as up to date
    /// as its own, and it neither leads nor heard from its leader within the minimum election
    /// timeout. A grant carries `m.term` (the candidate matches it against the term it asks
    /// about); a refusal carries this node's term, which a pre-candidate behind adopts.
    pub(super) fn handle_pre_vote(&mut self, from: usize, m: RequestVote) {
        let granted = (m.term > self.term
            || (m.term == self.term && self.voted_for.is_none_or(|v| v == from)))
            && !self.hears_from_leader()
            && self.log.is_up_to_date(m.last_log_index, m.last_log_term);
        let reply = RequestVoteReply {
            term: if granted { m.term } else { self.term },
            granted,
        };
        // A refusal carries this node's term, which must be durable before it is told.
        self.send(from, Message::PreVoteReply(reply));
    }

    pub(super) fn handle_pre_vote_reply(&mut self, from: usize, m: RequestVoteReply) {
        // A grant echoes the term asked about; a refusal carries the voter's term, and one of a
        // later term has made this node a follower of it already (no longer a pre-candidate).
        // A refusal from a voter behind this node's term is not counted: nothing tells it from
        // the answer to a pre-vote round of an earlier term.
        let answers_this_round = if m.granted {
            m.term == self.term + 1
        } else {
            m.term == self.term
        };
        if !self.pre_voting || !answers_this_round {
            return;
        }
        assert!(
            self.role == Role::Follower && self.leader.is_none(),
            "node {} term {}: a pre-candidate as {:?} with leader {:?}",
            self.id,
            self.term,
            self.role,
            self.leader
        );
        self.votes.record(from, m.granted);
        match self.quorum.vote_result(&self.votes) {
            VoteResult::Won => self.campaign(false),
            VoteResult::Lost => self.step_back_after_losing(),
            VoteResult::Pending => {}
        }
    }

    /// A candidate or pre-candidate whose tally is lost (so many refused that the others cannot
    /// make a majority) becomes a follower of its term at once, instead of waiting out its
    /// election timeout. A candidate's vote for itself stands, so it still refuses every rival of
    /// its term, as it would have as a candidate. What changes is its timer: restarted from now,
    /// with a fresh random timeout, it gives the nodes that refused it (their logs are more up
    /// to date, they voted for a rival, or they hear from a leader) a whole timeout to elect one
    /// of their own before it tries again. Its role also stops claiming an election it lost.
    fn step_back_after_losing(&mut self) {
        assert!(
            (self.role == Role::Candidate || self.pre_voting)
                && self.quorum.vote_result(&self.votes) == VoteResult::Lost,
            "node {} term {}: stepping back as {:?} with tally {:?}",
            self.id,
            self.term,
            self.role,
            self.votes
        );
        tracing::debug!(
            node = self.id,
            term = self.term,
            pre_vote = self.pre_voting,
            "lost the election: back to follower"
        );
        self.become_follower(self.term, None);
    }
}
