//! Membership change (Raft thesis §4): the configuration in force (appended, truncated,
//! recovered, snapshotted), learners, joint consensus and its automatic exit, a removed leader
//! and a removed node, and what a leader refuses.

use super::*;

fn members(voters: &[usize], learners: &[usize]) -> Membership {
    Membership::new(voters.iter().copied(), learners.iter().copied()).expect("a configuration")
}

fn config_entry(term: u64, membership: &Membership) -> Entry {
    Entry {
        term,
        kind: EntryKind::Config,
        command: membership.encode(),
    }
}

impl Sim {
    /// `peers` cores that start with `initial` in force.
    fn with_membership(peers: usize, config: &CoreConfig, initial: Membership) -> Self {
        let mut sim = Self::with_config(peers, config);
        for core in &mut sim.cores {
            core.set_initial_membership(initial);
        }
        sim
    }

    /// Node `leader` proposes `target` and everything is delivered, messages to or from a node
    /// in `isolated` lost. Returns the index of the entry proposed.
    fn change(&mut self, leader: usize, target: &Membership, isolated: &[usize]) -> u64 {
        let now = self.now;
        let index = self.cores[leader]
            .propose_membership(now, target)
            .expect("the change starts");
        self.collect();
        self.settle(isolated);
        index
    }

    /// Node `leader`'s next heartbeat round, delivered but to or from `isolated`.
    fn heartbeat(&mut self, leader: usize, isolated: &[usize]) {
        self.now = self.now.max(self.cores[leader].heartbeat_deadline);
        let now = self.now;
        self.cores[leader].tick(now);
        self.collect();
        self.settle(isolated);
    }

    /// Node `leader` proposes one command, delivered but to or from `isolated`. Returns its index.
    fn command(&mut self, leader: usize, isolated: &[usize]) -> u64 {
        let now = self.now;
        let (index, _) = self.cores[leader]
            .propose(now, commands(1))
            .expect("a leader");
        self.collect();
        self.settle(isolated);
        index
    }
}

/// Nodes 0..3 vote, nodes 3 and 4 (of 5) are added as learners: they get the log, their
/// acknowledgements never commit anything (with them, the leader and both learners would be
/// three of five), and they never campaign.
#[test]
fn a_learner_gets_the_log_but_never_commits_nor_campaigns() {
    let mut sim = Sim::with_membership(5, &CoreConfig::default(), members(&[0, 1, 2], &[]));
    let term = sim.elect_first(0);
    sim.command(0, &[]);
    // Not a member yet: it is sent nothing, and its timer starts no election.
    assert!(
        sim.cores[3].log().is_empty(),
        "a non-member is sent nothing"
    );
    sim.fire(3);
    assert!(sim.queue.is_empty() && sim.cores[3].term() == 0);

    let with_learner = members(&[0, 1, 2], &[3, 4]);
    let index = sim.change(0, &with_learner, &[]);
    assert_eq!(
        index, 2,
        "only learners change: the target itself, no joint phase"
    );
    // A heartbeat round carries the commit index to everyone.
    sim.heartbeat(0, &[]);
    for core in &sim.cores {
        assert_eq!(*core.membership(), with_learner, "node {}", core.id());
        assert_eq!(core.membership_index(), 2, "node {}", core.id());
        assert_eq!(core.commit_index(), 2, "node {}", core.id());
    }

    // With both other voters cut off, the learners' acknowledgements commit nothing.
    let lone = sim.command(0, &[1, 2]);
    for learner in [3, 4] {
        assert_eq!(
            sim.cores[learner].log().last_index(),
            lone,
            "learner {learner} holds it"
        );
        assert_eq!(
            sim.cores[0].progress(learner).map(|p| p.match_index),
            Some(lone),
            "and has acknowledged it"
        );
    }
    assert_eq!(
        sim.cores[0].commit_index(),
        2,
        "a learner's ack commits nothing"
    );

    // Its election timer never starts an election (nor, with PreVote, a pre-vote).
    for _ in 0..5 {
        sim.fire(3);
        assert!(
            sim.queue.is_empty(),
            "a learner sends nothing when its timer fires"
        );
    }
    assert_eq!(sim.cores[3].term(), term);
    assert_eq!(sim.cores[3].stats().elections_started, 0);
}

/// A learner's vote counts for nothing: a candidate of voters {0,1,2} with learner 3 asks the
/// learner too (so that it learns the term: it may be a voter of a later configuration), but a
/// grant from it does not make it leader; node 4, not a member, is not asked.
#[test]
fn a_candidate_tells_learners_its_term_and_a_learners_grant_counts_for_nothing() {
    let mut core = new_core(0, 5);
    core.set_initial_membership(members(&[0, 1, 2], &[3]));
    campaign_to_with_requests(&mut core, 1, &[1, 2, 3]);
    core.step(0, 3, vote(1, true));
    assert_eq!(
        core.role(),
        Role::Candidate,
        "the learner's grant is not counted"
    );
    core.step(0, 1, vote(1, true));
    assert_eq!(core.role(), Role::Leader, "a majority of the voters");
}

/// Lets `core`'s election timer fire until it is a candidate in `term`, checking that its
/// RequestVote went to `asked` only.
fn campaign_to_with_requests(core: &mut Core, term: u64, asked: &[usize]) {
    let deadline = core.next_deadline();
    core.tick(deadline);
    assert_eq!((core.term(), core.role()), (term, Role::Candidate));
    let mut to: Vec<usize> = drain(core)
        .into_iter()
        .filter(|(_, m)| matches!(m, Message::RequestVote(_)))
        .map(|(to, _)| to)
        .collect();
    to.sort_unstable();
    assert_eq!(to, asked, "RequestVote sent to the members only");
}

/// Voters {0,1,2} become {0,3,4}: the joint configuration goes first; while only the old
/// voters acknowledge it, it is not committed; once it is, the leader appends the new
/// configuration by itself, and a majority of the new voters commits it.
#[test]
fn a_change_of_voters_goes_through_joint_and_the_old_majority_alone_commits_nothing() {
    let mut sim = Sim::with_membership(5, &CoreConfig::default(), members(&[0, 1, 2], &[]));
    sim.elect_first(0);
    sim.command(0, &[]);
    sim.change(0, &members(&[0, 1, 2], &[3, 4]), &[]);
    sim.command(0, &[]); // carries the commit index to the learners

    let target = members(&[0, 3, 4], &[]);
    let joint = members(&[0, 1, 2], &[]).enter_joint(&target).unwrap();
    // The new voters are cut off: only the old majority {0,1,2} acknowledges.
    let joint_index = sim.change(0, &target, &[3, 4]);
    let leader = &sim.cores[0];
    assert_eq!(*leader.membership(), joint, "in force once appended");
    assert_eq!(leader.log().last_index(), joint_index);
    for follower in [1, 2] {
        assert_eq!(
            leader.progress(follower).map(|p| p.match_index),
            Some(joint_index),
            "node {follower} holds the joint configuration"
        );
    }
    assert!(
        leader.commit_index() < joint_index,
        "held by the old majority only: not committed ({} < {joint_index})",
        leader.commit_index()
    );
    // A command behind it is not committed either.
    let behind = sim.command(0, &[3, 4]);
    assert!(sim.cores[0].commit_index() < joint_index.min(behind));

    // The new voters come back: the joint configuration commits, the leader appends the new
    // one by itself, and it commits.
    sim.heartbeat(0, &[]);
    sim.heartbeat(0, &[]);
    let leader = &sim.cores[0];
    assert_eq!(*leader.membership(), target);
    assert!(
        leader.membership_index() > behind,
        "appended after the command"
    );
    assert!(leader.commit_index() >= leader.membership_index());
    for core in &sim.cores[1..] {
        // Nodes 1 and 2 are no longer members: the leader stopped sending to them once the new
        // configuration was in force, so they may still hold the joint one.
        let want = if [3, 4].contains(&core.id()) {
            target
        } else {
            joint
        };
        assert_eq!(*core.membership(), want, "node {}", core.id());
    }
}

/// A leader that removes itself: it keeps leading (and does not count itself) until the
/// configuration without it commits, then steps down and never campaigns again; the
/// remaining voters elect a leader among themselves.
#[test]
fn a_removed_leader_steps_down_once_the_new_configuration_commits() {
    let mut sim = Sim::with_membership(3, &CoreConfig::default(), members(&[0, 1, 2], &[]));
    sim.elect_first(0);
    sim.command(0, &[]);
    let target = members(&[1, 2], &[]);
    // Node 2 is cut off: the joint configuration is held by {0,1}, a majority of the old
    // voters {0,1,2} but not of the new {1,2}: not committed.
    let joint_index = sim.change(0, &target, &[2]);
    assert!(sim.cores[0].commit_index() < joint_index);
    // Node 2 catches up while node 1 is cut off: the joint configuration commits, the leader
    // appends `target`, which node 2 alone of the new voters holds: not committed, and the
    // leader, no voter of it, counts for nothing. It goes on leading meanwhile. (The second
    // round finds what the first lost to node 2.)
    sim.heartbeat(0, &[1]);
    sim.heartbeat(0, &[1]);
    let leader = &sim.cores[0];
    assert!(leader.commit_index() >= joint_index);
    assert_eq!(*leader.membership(), target);
    let new_index = leader.membership_index();
    assert!(new_index > joint_index);
    assert_eq!(leader.role(), Role::Leader);
    assert!(
        leader.commit_index() < new_index,
        "{{0,2}} is no quorum of {{1,2}}"
    );
    // Node 1 back: the new configuration commits, and the leader steps down.
    sim.heartbeat(0, &[]);
    sim.heartbeat(0, &[]);
    let old = &sim.cores[0];
    assert_eq!(old.role(), Role::Follower, "stepped down");
    assert!(old.commit_index() >= new_index);
    assert_eq!(old.stats().step_downs, 1);
    // Its timer never starts an election again; the others elect one of themselves.
    let term = old.term();
    sim.run_until(sim.now + 3_000 * MS, &[], |_| {});
    assert_eq!(sim.cores[0].stats().elections_started, 1, "only its first");
    let leaders = sim.leaders();
    assert_eq!(leaders.len(), 1, "one leader: {leaders:?}");
    assert!(leaders[0] == 1 || leaders[0] == 2);
    assert!(sim.cores[leaders[0]].term() > term);
}

/// A node removed while it still holds the joint configuration (the leader stops sending to it
/// once the new one is in force) keeps running: its timer fires, but with PreVote the others,
/// which hear from their leader, refuse it, and with CheckQuorum they ignore its RequestVote.
/// The leader keeps its term either way.
#[test]
fn a_removed_node_cut_off_does_not_disrupt_the_cluster() {
    // (pre_vote, check_quorum)
    for (case, (pre_vote, check_quorum)) in [(true, false), (false, true), (true, true)]
        .into_iter()
        .enumerate()
    {
        let config = config_with(pre_vote, check_quorum);
        let mut sim = Sim::with_membership(3, &config, members(&[0, 1, 2], &[]));
        let term = sim.elect_first(0);
        sim.change(0, &members(&[0, 1], &[]), &[]);
        sim.heartbeat(0, &[]);
        assert_eq!(sim.cores[0].membership().voters().count(), 2, "case {case}");
        assert!(
            sim.cores[2].membership().is_voter(2),
            "case {case}: node 2 still holds the joint configuration"
        );
        // Many of node 2's election timeouts, its messages delivered to the others.
        sim.run_until(sim.now + 5_000 * MS, &[], |sim| {
            assert_eq!(sim.leaders(), vec![0], "case {case}");
            assert_eq!(sim.cores[0].term(), term, "case {case}");
            assert_eq!(sim.cores[1].term(), term, "case {case}");
        });
        assert!(
            sim.cores[2].stats().elections_started > 0 || pre_vote,
            "case {case}: node 2 did try"
        );
    }
}

/// No two leaders in one term while a five-node cluster moves from {0,1,2} through the joint
/// configuration to {2,3,4}, with the leader cut off and partitions along the way.
#[test]
fn no_two_leaders_in_one_term_across_old_joint_and_new() {
    for seed in 0..20u64 {
        // With PreVote and CheckQuorum: a node removed before it learned so (node 1 below, when
        // cut off) cannot depose the leaders of the new configuration for ever.
        let config = CoreConfig::production();
        let mut sim = Sim::with_membership(5, &config, members(&[0, 1, 2], &[]));
        for (i, core) in sim.cores.iter_mut().enumerate() {
            *core = Core::new(i, 5, config.clone(), seed * 10 + i as u64, 0);
            core.set_initial_membership(members(&[0, 1, 2], &[]));
        }
        let mut leaders: std::collections::HashMap<u64, usize> = Default::default();
        let mut watch = |sim: &Sim| {
            for core in &sim.cores {
                if core.role() == Role::Leader {
                    let first = *leaders.entry(core.term()).or_insert(core.id());
                    assert_eq!(
                        first,
                        core.id(),
                        "seed {seed}: two leaders in term {}",
                        core.term()
                    );
                }
            }
        };
        sim.elect_first(0);
        sim.command(0, &[]);
        sim.change(0, &members(&[0, 1, 2], &[3, 4]), &[]);
        sim.command(0, &[]);
        let target = members(&[2, 3, 4], &[]);
        // The joint configuration reaches some nodes only, then the leader is cut off.
        let cut: &[usize] = match seed % 3 {
            0 => &[3, 4],
            1 => &[1, 4],
            _ => &[1],
        };
        sim.change(0, &target, cut);
        let until = sim.now + 2_000 * MS;
        sim.run_until(until, &[0], &mut watch);
        let until = sim.now + 2_000 * MS;
        sim.run_until(until, &[seed as usize % 5], &mut watch);
        let until = sim.now + 3_000 * MS;
        sim.run_until(until, &[], &mut watch);
        let leader = sim.leaders();
        assert_eq!(leader.len(), 1, "seed {seed}: {leader:?}");
        let leader = &sim.cores[leader[0]];
        assert!(
            leader.membership().is_voter(leader.id()),
            "seed {seed}: a leader is a voter"
        );
        assert!(
            !leader.membership().is_joint() || leader.membership_index() > leader.commit_index(),
            "seed {seed}: a settled leader has left the joint configuration"
        );
    }
}

/// A follower uses a configuration as soon as it is appended, and the one before once the
/// entry is truncated away.
#[test]
fn a_follower_uses_a_configuration_once_appended_and_drops_it_when_truncated() {
    let mut core = new_core(1, 4);
    let learner = members(&[0, 1, 2], &[3]);
    let entries = vec![
        Entry::new(1, cmd(1, 1)),
        config_entry(1, &learner),
        Entry::new(1, cmd(1, 3)),
    ];
    core.step(
        0,
        0,
        Message::AppendEntries(AppendEntries {
            term: 1,
            prev_log_index: 0,
            prev_log_term: 0,
            entries,
            leader_commit: 1,
            round: 0,
        }),
    );
    assert!(the_append_reply(&drain(&mut core), 0).success);
    assert_eq!(*core.membership(), learner, "in force uncommitted");
    assert_eq!(core.membership_index(), 2);
    // A leader of term 2 overwrites index 2 on: back to the initial configuration.
    core.step(0, 2, append(2, (1, 1), &[2], 1));
    assert!(the_append_reply(&drain(&mut core), 2).success);
    assert_eq!(*core.membership(), Membership::initial(4));
    assert_eq!(core.membership_index(), 0);
}

/// The configuration survives a restart from the log, is recorded in a snapshot taken after
/// it, survives a restart from that snapshot, and comes with a snapshot installed from a
/// leader (and from the old format, which records none: the initial one).
#[test]
fn the_configuration_survives_restarts_snapshots_and_installs() {
    let learner = members(&[0, 1, 2], &[3]);
    let mut follower = new_core(1, 4);
    let entries = vec![Entry::new(1, cmd(1, 1)), config_entry(1, &learner)];
    follower.step(
        0,
        0,
        Message::AppendEntries(AppendEntries {
            term: 1,
            prev_log_index: 0,
            prev_log_term: 0,
            entries: entries.clone(),
            leader_commit: 2,
            round: 0,
        }),
    );
    drain(&mut follower);

    // A restart from the log alone.
    let from_log = Recovered {
        hard_state: HardState {
            term: 1,
            voted_for: None,
        },
        snapshot: None,
        entries,
    };
    let restarted = Core::restore(1, 4, CoreConfig::default(), 1, 0, from_log.clone());
    assert_eq!(
        (*restarted.membership(), restarted.membership_index()),
        (learner, 2)
    );

    // A snapshot taken at 2 records it; a restart from the snapshot alone uses it.
    follower.advance_applied(2);
    assert!(follower.compact(2, Bytes::from_static(b"state")));
    let snapshot = follower.snapshot().cloned().expect("a snapshot");
    assert_eq!(snapshot.config, Some(learner.encode()));
    let from_snapshot = Recovered {
        snapshot: Some(snapshot.clone()),
        entries: Vec::new(),
        ..from_log
    };
    let restarted = Core::restore(1, 4, CoreConfig::default(), 1, 0, from_snapshot.clone());
    assert_eq!(
        (*restarted.membership(), restarted.membership_index()),
        (learner, 2)
    );

    // A snapshot taken before any configuration entry records none.
    let mut plain = new_core(1, 3);
    give_log(&mut plain, 0, &[1, 1]);
    plain.step(0, 0, append(1, (2, 1), &[], 2));
    drain(&mut plain);
    plain.advance_applied(2);
    assert!(plain.compact(2, Bytes::from_static(b"state")));
    assert_eq!(plain.snapshot().and_then(|s| s.config.clone()), None);

    // Installed from a leader: with a configuration, and without one (the initial one).
    for (case, config, want) in [
        (0, Some(learner.encode()), (learner, 5)),
        (1, None, (Membership::initial(4), 0)),
    ] {
        let mut fresh = new_core(2, 4);
        fresh.set_initial_membership(Membership::initial(4));
        fresh.step(
            0,
            0,
            Message::InstallSnapshot(InstallSnapshot {
                term: 1,
                last_included_index: 5,
                last_included_term: 1,
                offset: 0,
                data: Bytes::from_static(b"state"),
                done: true,
                round: 0,
                config,
            }),
        );
        drain(&mut fresh);
        assert_eq!(
            (*fresh.membership(), fresh.membership_index()),
            want,
            "case {case}"
        );
    }

    // A recovered configuration that names a node outside the cluster is refused.
    let outside = Recovered {
        entries: vec![config_entry(1, &members(&[0, 1, 2], &[5]))],
        ..from_snapshot
    };
    assert_eq!(
        check_recovered_state(4, &outside),
        Err(RecoveredStateError::ConfigurationOutsideCluster {
            index: 3,
            node: 5,
            peers: 4
        })
    );
}

/// What a leader refuses: a change while one is under way, nodes it cannot reach, a voter that
/// is not a caught-up learner, a voter turned learner in one change, and from a follower.
/// Leadership goes to voters only.
#[test]
fn a_leader_refuses_what_it_cannot_change_safely() {
    let mut sim = Sim::with_membership(5, &CoreConfig::default(), members(&[0, 1, 2], &[]));
    sim.elect_first(0);
    sim.command(0, &[]);
    let now = sim.now;
    // (target, want)
    let cases = [
        (
            members(&[0, 1, 2, 3], &[]),
            MembershipChangeError::NotCaughtUp(3),
        ),
        (
            members(&[0, 1, 2], &[7]),
            MembershipChangeError::UnknownNode(7),
        ),
        (
            members(&[0, 1], &[2]),
            MembershipChangeError::Invalid(MembershipError::LearnerIsVoter(2)),
        ),
    ];
    for (case, (target, want)) in cases.into_iter().enumerate() {
        assert_eq!(
            sim.cores[0].propose_membership(now, &target),
            Err(want),
            "case {case}"
        );
    }
    assert_eq!(
        sim.cores[1].propose_membership(now, &members(&[0, 1], &[])),
        Err(MembershipChangeError::NotLeader)
    );
    assert_eq!(
        sim.cores[0].transfer_leadership(now, 3),
        Err(TransferError::BadTarget),
        "not a voter"
    );

    // Learner 3 is added; with node 3 cut off it falls behind, and cannot be promoted.
    sim.change(0, &members(&[0, 1, 2], &[3]), &[3]);
    sim.command(0, &[3]);
    assert_eq!(
        sim.cores[0].propose_membership(now, &members(&[0, 1, 2, 3], &[])),
        Err(MembershipChangeError::NotCaughtUp(3))
    );
    // Caught up, it can; and no second change starts while the first is under way.
    sim.heartbeat(0, &[]);
    let joint = sim.cores[0]
        .propose_membership(now, &members(&[0, 1, 2, 3], &[]))
        .expect("a caught-up learner is promoted");
    assert!(sim.cores[0].membership().is_joint());
    assert_eq!(
        sim.cores[0].propose_membership(now, &members(&[0, 1, 2, 3], &[4])),
        Err(MembershipChangeError::ChangeInProgress)
    );
    assert_eq!(sim.cores[0].log().last_index(), joint, "nothing appended");
}

/// A leader told not to leave joint by itself (as the runtime's is) says when it is due, and
/// leaves when asked; not before the joint configuration commits.
#[test]
fn a_driver_can_take_over_leaving_joint() {
    let mut sim = Sim::with_membership(4, &CoreConfig::default(), members(&[0, 1, 2], &[]));
    for core in &mut sim.cores {
        core.set_leave_joint_automatically(false);
    }
    sim.elect_first(0);
    sim.command(0, &[]);
    sim.change(0, &members(&[0, 1, 2], &[3]), &[]);
    sim.command(0, &[]);
    let target = members(&[0, 1, 2, 3], &[]);
    let now = sim.now;
    sim.cores[0].propose_membership(now, &target).unwrap();
    assert!(!sim.cores[0].leave_joint_due(), "not committed yet");
    assert_eq!(sim.cores[0].propose_leave_joint(now), None);
    sim.collect();
    sim.settle(&[]);
    assert!(sim.cores[0].leave_joint_due(), "committed");
    assert!(
        sim.cores[0].membership().is_joint(),
        "and left to the driver"
    );
    let index = sim.cores[0].propose_leave_joint(now).expect("due");
    assert!(!sim.cores[0].leave_joint_due());
    sim.collect();
    sim.settle(&[]);
    assert_eq!(*sim.cores[0].membership(), target);
    assert!(sim.cores[0].commit_index() >= index);
}

/// A removed leader steps down on the acknowledgement that commits the configuration without
/// it, even with entries still to send to that follower (a window of one keeps a command
/// proposed after that configuration from going out with it): it sends nothing more.
#[test]
fn a_removed_leader_steps_down_with_entries_still_to_send() {
    let config = CoreConfig {
        max_inflight: 1,
        ..CoreConfig::default()
    };
    let mut sim = Sim::with_membership(3, &config, members(&[0, 1, 2], &[]));
    sim.elect_first(0);
    sim.command(0, &[]);
    let target = members(&[1, 2], &[]);
    let now = sim.now;
    sim.cores[0].propose_membership(now, &target).unwrap();
    sim.collect();
    // Deliver one message at a time until the leader has appended `target`.
    while *sim.cores[0].membership() != target {
        let (from, to, msg) = sim.queue.pop_front().expect("messages under way");
        sim.cores[to].step(now, from, msg);
        sim.collect();
    }
    let (after, _) = sim.cores[0].propose(now, commands(1)).expect("still leads");
    sim.collect();
    sim.settle(&[]);
    let old = &sim.cores[0];
    assert_eq!(old.role(), Role::Follower);
    assert!(old.commit_index() >= old.membership_index());
    assert!(old.log().last_index() >= after);
}

/// A leader that removes itself and loses its leadership before the configuration without it
/// reaches anyone is still needed: voters {0, 1} with learner 2 move to voters {1, 2}; the joint
/// configuration commits, node 0 appends `C_new` while cut off, and is deposed. Nodes 1 and 2,
/// still joint, need node 0's vote in the outgoing half, which it refuses to their shorter logs.
/// Node 0 campaigns (its removal is not committed), wins with the votes of `C_new`, commits it
/// with an entry of its term although the leader no-op is off, and steps down: the cluster
/// elects a leader of `C_new`. Without either rule no leader could ever be elected again.
#[test]
fn a_removed_leader_deposed_before_its_removal_commits_campaigns_and_commits_it() {
    let mut sim = Sim::with_membership(3, &CoreConfig::default(), members(&[0, 1], &[2]));
    sim.elect_first(0);
    sim.command(0, &[]);
    sim.cores[0].set_leave_joint_automatically(false);
    let target = members(&[1, 2], &[]);
    sim.change(0, &target, &[]);
    sim.heartbeat(0, &[]);
    for core in &sim.cores {
        assert!(core.membership().is_joint(), "node {}: joint", core.id());
    }
    // `C_new`, appended by node 0 alone.
    sim.cores[0].set_leave_joint_automatically(true);
    let now = sim.now;
    let at = sim.cores[0]
        .propose_leave_joint(now)
        .expect("the joint configuration is committed");
    // From here on as in the runtime, which leaves joint itself: the rule holds there too.
    for core in &mut sim.cores {
        core.set_leave_joint_automatically(false);
    }
    sim.collect();
    sim.settle(&[0]);
    assert_eq!(*sim.cores[0].membership(), target);
    assert!(sim.cores[1].membership().is_joint() && sim.cores[2].membership().is_joint());
    // Node 1 campaigns: node 2 grants, node 0 refuses (its log is longer) and follows.
    sim.fire(1);
    sim.settle(&[]);
    assert!(sim.leaders().is_empty(), "no joint majority without node 0");
    assert_eq!(sim.cores[0].role(), Role::Follower);
    // Node 0, not a voter of its configuration in force but needed, campaigns and wins.
    sim.fire(0);
    sim.settle(&[]);
    for core in &sim.cores {
        assert_eq!(*core.membership(), target, "node {}", core.id());
    }
    assert!(
        sim.cores[0].commit_index() > at,
        "C_new at {at} and an entry of node 0's term committed: commit index {}",
        sim.cores[0].commit_index()
    );
    assert!(sim.leaders().is_empty(), "node 0 stepped down");
    // A voter of C_new is elected by C_new alone, and tells the others the commit index.
    sim.fire(2);
    sim.settle(&[]);
    assert_eq!(sim.leaders(), vec![2]);
    sim.heartbeat(2, &[]);
    for core in &sim.cores[1..] {
        assert!(core.commit_index() > at, "node {}", core.id());
    }
}
