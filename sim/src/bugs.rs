//! Proof that the checker catches classic Raft bugs: each is switched on in every core of a
//! simulation, and one of the first 200 seeds must report a violation. Two of them only a crash
//! exposes, one only a snapshot.
//!
//! The hooks that switch a bug on ([`Injected`]) exist only in this crate's own test build:
//! no library, example, benchmark or binary can build a core with them. Every other build runs
//! [`NoBugs`](zeroraft_engine::core::NoBugs), whose hooks compile away.

use zeroraft_engine::core::{Bug, Hooks};

use crate::{Options, Report, Simulation};

/// Hooks with at most one bug switched on.
#[derive(Clone, Copy, Debug, Default)]
struct Injected(Option<Bug>);

impl Hooks for Injected {
    fn has(&self, bug: Bug) -> bool {
        self.0 == Some(bug)
    }
}

/// Runs `seed` with `bug` switched on in every core (restarted ones included).
fn with_bug(seed: u64, bug: Bug, options: &Options) -> Report {
    let mut sim = Simulation::<Injected>::with_hooks(seed, options);
    sim.adjust_cores(move |core| core.hooks_mut().0 = Some(bug));
    sim.run()
}

/// Asserts that one of seeds 0..200 reports a violation when `bug` is injected.
fn caught_within_200(bug: Bug, options: &Options) {
    let caught = (0..200).find(|&seed| with_bug(seed, bug, options).outcome.is_err());
    assert!(
        caught.is_some(),
        "{} not caught within 200 seeds ({options:?})",
        bug.name()
    );
}

/// Three-node clusters, their other parameters drawn from the seed.
fn three_nodes() -> Options {
    Options {
        nodes: Some(3),
        ..Options::default()
    }
}

#[test]
fn catches_commit_of_previous_term_entry() {
    caught_within_200(Bug::CommitPreviousTerm, &Options::default());
}

#[test]
fn catches_double_vote() {
    caught_within_200(Bug::DoubleVote, &Options::default());
}

#[test]
fn catches_truncation_without_conflict() {
    caught_within_200(Bug::TruncateWithoutConflict, &Options::default());
}

#[test]
fn catches_accepting_stale_replies() {
    // In three-node clusters one late vote is a majority: a candidate that counts a grant from
    // an earlier term becomes a second leader of its term, or a leader missing committed
    // entries. Larger clusters need several such votes at once, which the swarm rarely draws.
    // Even so about one three-node seed in 150 catches it; a fault phase of 20 000 ticks, twice
    // the longest drawn, holds twice the elections (one seed in 70).
    let options = Options {
        fault_ticks: Some(20_000),
        ..three_nodes()
    };
    caught_within_200(Bug::AcceptStaleReplies, &options);
}

#[test]
fn catches_commit_beyond_last_new_entry() {
    // It takes a follower that accepts an AppendEntries ending before entries of its own that the
    // leader does not hold, from a leader whose commit index is past them. A leader backing up
    // with `Backtrack::LeaderTerm` never sends one: it resumes exactly where the logs diverge.
    // One backing up with `Backtrack::FollowerTerm` (a third of the seeds) resumes at the start
    // of the conflicting term, and sends one when it shares more of that term with the follower
    // than an AppendEntries carries. Of seeds 0..200, five three-node runs catch it.
    caught_within_200(Bug::CommitBeyondNewEntries, &three_nodes());
}

#[test]
fn catches_vote_sent_before_durable() {
    // Harmless until the voter crashes before its vote is on its disk: it restarts without the
    // vote, free to vote again in that term. Crash-time checks see the lost vote; a second
    // leader of the term needs a split vote whose other RequestVote arrives after the restart.
    caught_within_200(Bug::VoteBeforeDurable, &Options::default());
}

#[test]
fn catches_acknowledgement_sent_before_durable() {
    // Harmless until the follower crashes before the entries are on its disk: the leader has
    // counted entries the follower no longer holds, possibly toward a commit.
    caught_within_200(Bug::AckBeforeDurable, &Options::default());
}

#[test]
fn catches_discarding_suffix_on_install() {
    // Harmless unless the follower holds entries after the snapshot's last index that it
    // acknowledged: typically a node restarted with its commit index back at its own snapshot,
    // to which a leader's snapshot arrives late. Its leader then counts entries it dropped.
    caught_within_200(Bug::DiscardSuffixOnInstall, &Options::default());
}

#[test]
fn bug_reports_name_seed_invariant_and_events() {
    let report = (0..200)
        .map(|seed| with_bug(seed, Bug::DoubleVote, &Options::default()))
        .find(|r| r.outcome.is_err())
        .expect("a double vote is caught");
    let v = report.outcome.expect_err("a violation");
    let text = v.to_string();
    assert!(
        text.starts_with(&format!("seed {}: ", report.seed)),
        "{text}"
    );
    assert!(text.contains(v.invariant.name()), "{text}");
    assert!(!v.nodes.is_empty(), "{text}");
    assert!(!v.recent.is_empty(), "{text}");
}

#[test]
fn catches_a_leader_that_leads_on_without_a_quorum() {
    let options = Options {
        check_quorum: true,
        ..Options::default()
    };
    caught_within_200(Bug::LeadWithoutQuorum, &options);
}

#[test]
fn catches_a_read_index_served_without_a_heartbeat_round() {
    let options = Options {
        no_op: true,
        reads: true,
        ..Options::default()
    };
    caught_within_200(Bug::ReadWithoutRound, &options);
}

#[test]
fn catches_a_lease_read_after_the_lease_expired() {
    let options = Options {
        no_op: true,
        reads: true,
        ..Options::production()
    };
    caught_within_200(Bug::LeaseAfterExpiry, &options);
}
