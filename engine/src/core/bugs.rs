//! Deliberately broken variants of Raft rules, to prove that the deterministic simulator's
//! checker catches them.
//!
//! A core is generic over its [`Hooks`], which say whether a [`Bug`] is switched on; each hook
//! in the core is a short `if self.hooks.has(Bug::X)` next to the rule it breaks. The default,
//! [`NoBugs`], answers `false` from an `#[inline(always)]` function, so in `Core<NoBugs>` (every
//! core the runtime builds) each hook is a branch on the constant `false`, which the compiler
//! removes: the code is the code without hooks. Nothing in the engine switches a bug on; the
//! simulator's tests bring [`Hooks`] that do.

use super::quorum::JointMajority;
use super::{Core, Message};

/// A classic Raft bug the core can be told to reintroduce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bug {
    /// The leader commits an entry of an earlier term as soon as a majority holds it, the unsafe
    /// rule of Figure 8 (§5.4.2).
    CommitPreviousTerm,
    /// A node grants its vote to a second candidate in a term in which it already voted.
    DoubleVote,
    /// A follower truncates its log after `prev_log_index` on every AppendEntries, even when the
    /// entries it holds agree with the ones carried (a late, shorter AppendEntries then erases
    /// entries the follower already acknowledged).
    TruncateWithoutConflict,
    /// Candidates and leaders count RequestVote and AppendEntries replies sent in older terms
    /// as if they answered the current term. (The hook is in [`Core::step`], ahead of both reply
    /// handlers.)
    AcceptStaleReplies,
    /// A follower sets its commit index from `leader_commit` up to its last log index, not only
    /// up to the last entry the AppendEntries vouched for.
    CommitBeyondNewEntries,
    /// A node sends a vote it granted before the vote is on stable storage: a crash then lets
    /// it vote again in the same term.
    VoteBeforeDurable,
    /// A follower acknowledges an AppendEntries before the entries are on stable storage: a
    /// crash then loses entries the leader counted toward a commit.
    AckBeforeDurable,
    /// A follower installing a snapshot drops the entries after the snapshot's last index even
    /// though its log holds that entry, so they match the leader's: entries it acknowledged
    /// disappear.
    DiscardSuffixOnInstall,
    /// With CheckQuorum, a leader that heard from no majority within an election timeout goes
    /// on leading instead of stepping down.
    LeadWithoutQuorum,
    /// A leader confirms a ReadIndex read at once, without waiting for a majority to answer a
    /// heartbeat round started after the read: a deposed leader that does not know it yet
    /// serves a stale read.
    ReadWithoutRound,
    /// A leader serves lease reads after its lease expired.
    LeaseAfterExpiry,
    /// A leader counts its learners' acknowledgements toward the majority that commits an
    /// entry, as if they were voters: with as many learners as voters, it commits entries a
    /// majority of the voters never held.
    LearnerInQuorum,
    /// A leader appends the configuration that leaves a joint one right after the joint one,
    /// before the joint one is committed: the new voters alone then decide while nodes that
    /// have not heard of the change still follow the old ones.
    LeaveJointEarly,
    /// A leader changes a single voter in one step, without the joint configuration, and starts
    /// the next change while that one is not committed yet: two overlapping single-step
    /// changes can leave an old and a new configuration whose majorities do not meet.
    OverlappingSingleSteps,
    /// A follower installing a snapshot from its leader forgets the configuration the snapshot
    /// carries, and goes back to the initial one unless its kept log holds a later one.
    ForgetConfigOnInstall,
}

impl Bug {
    /// Every bug, in declaration order.
    pub const ALL: [Bug; 15] = [
        Bug::CommitPreviousTerm,
        Bug::DoubleVote,
        Bug::TruncateWithoutConflict,
        Bug::AcceptStaleReplies,
        Bug::CommitBeyondNewEntries,
        Bug::VoteBeforeDurable,
        Bug::AckBeforeDurable,
        Bug::DiscardSuffixOnInstall,
        Bug::LeadWithoutQuorum,
        Bug::ReadWithoutRound,
        Bug::LeaseAfterExpiry,
        Bug::LearnerInQuorum,
        Bug::LeaveJointEarly,
        Bug::OverlappingSingleSteps,
        Bug::ForgetConfigOnInstall,
    ];

    /// A short kebab-case name, for command lines and reports.
    pub fn name(self) -> &'static str {
        match self {
            Bug::CommitPreviousTerm => "commit-previous-term",
            Bug::DoubleVote => "double-vote",
            Bug::TruncateWithoutConflict => "truncate-without-conflict",
            Bug::AcceptStaleReplies => "accept-stale-replies",
            Bug::CommitBeyondNewEntries => "commit-beyond-new-entries",
            Bug::VoteBeforeDurable => "vote-before-durable",
            Bug::AckBeforeDurable => "ack-before-durable",
            Bug::DiscardSuffixOnInstall => "discard-suffix-on-install",
            Bug::LeadWithoutQuorum => "lead-without-quorum",
            Bug::ReadWithoutRound => "read-without-round",
            Bug::LeaseAfterExpiry => "lease-after-expiry",
            Bug::LearnerInQuorum => "learner-in-quorum",
            Bug::LeaveJointEarly => "leave-joint-early",
            Bug::OverlappingSingleSteps => "overlapping-single-steps",
            Bug::ForgetConfigOnInstall => "forget-config-on-install",
        }
    }

    /// The bug called `name` (see [`Bug::name`]).
    pub fn from_name(name: &str) -> Option<Bug> {
        Bug::ALL.into_iter().find(|b| b.name() == name)
    }
}

/// Which deliberately broken rules a core follows (see the module docs).
pub trait Hooks: Send + 'static {
    /// Whether `bug` is switched on now.
    fn has(&self, bug: Bug) -> bool;
}

/// The hooks of every real core: no bug, ever, at no cost.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoBugs;

impl Hooks for NoBugs {
    #[inline(always)]
    fn has(&self, _bug: Bug) -> bool {
        false
    }
}

impl<H: Hooks> Core<H> {
    /// The hooks this core follows.
    pub fn hooks(&self) -> &H {
        &self.hooks
    }

    /// The hooks this core follows, to switch bugs on or off if they allow it.
    pub fn hooks_mut(&mut self) -> &mut H {
        &mut self.hooks
    }

    /// The configuration whose majorities commit an entry: the one in force, or with
    /// [`Bug::LearnerInQuorum`] the same with its learners counted as voters of the incoming
    /// half.
    #[inline]
    pub(super) fn commit_quorum(&self) -> JointMajority {
        if self.hooks.has(Bug::LearnerInQuorum) {
            return self.membership.quorum_with_learners();
        }
        self.quorum
    }

    /// With [`Bug::AcceptStaleReplies`], a reply of an older term gets this node's term; any
    /// other message, or any message without that bug, is returned as it is.
    #[inline]
    pub(super) fn stale_reply_as_current(&self, mut msg: Message) -> Message {
        if self.hooks.has(Bug::AcceptStaleReplies) {
            match &mut msg {
                Message::RequestVoteReply(m) => m.term = m.term.max(self.term),
                Message::AppendEntriesReply(m) => m.term = m.term.max(self.term),
                Message::InstallSnapshotReply(m) => m.term = m.term.max(self.term),
                Message::RequestVote(_)
                | Message::PreVote(_)
                | Message::PreVoteReply(_)
                | Message::AppendEntries(_)
                | Message::InstallSnapshot(_)
                | Message::TimeoutNow(_) => {}
            }
        }
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bugs_have_names_and_no_bugs_has_none() {
        for (case, bug) in Bug::ALL.into_iter().enumerate() {
            assert_eq!(
                Bug::from_name(bug.name()),
                Some(bug),
                "case {case}: {bug:?}"
            );
            assert!(!NoBugs.has(bug), "case {case}: {bug:?} off");
        }
        assert_eq!(Bug::from_name("no-such-bug"), None);
    }
}
