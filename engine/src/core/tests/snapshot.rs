//! Snapshots: compaction, the chunked transfer to a follower behind the leader's log, and
//! installing (keeping a matching suffix, dropping a conflicting log).

use super::*;

/// Applies everything `core` committed, as a driver does, after handing it any snapshot first.
fn apply_all(core: &mut Core) {
    core.snapshot_applied();
    if let Some((_, to)) = core.apply_range() {
        core.advance_applied(to);
    }
}

/// The InstallSnapshot messages in `msgs` addressed to `to`, in order.
fn snapshots_to(msgs: &[(usize, Message)], to: usize) -> Vec<InstallSnapshot> {
    msgs.iter()
        .filter_map(|(t, m)| match m {
            Message::InstallSnapshot(s) if *t == to => Some(s.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn compaction_drops_the_log_up_to_an_applied_index_and_stores_the_snapshot() {
    let mut leader = replicating_leader(3, CoreConfig::default());
    leader.propose(0, commands(10));
    persist(&mut leader);
    leader.step(0, 1, ack(1, 10));
    assert_eq!(leader.commit_index(), 10);
    apply_all(&mut leader);
    assert!(
        !leader.compact(11, Bytes::from_static(b"s")),
        "not beyond what was applied"
    );
    assert!(leader.compact(6, Bytes::from_static(b"state at 6")));
    assert!(
        !leader.compact(6, Bytes::from_static(b"again")),
        "not the same index twice"
    );
    assert!(
        !leader.compact(4, Bytes::from_static(b"older")),
        "nor an older one"
    );
    assert_eq!((leader.log().offset(), leader.log().len()), (6, 4));
    let write = leader.take_persist().expect("the snapshot to store");
    assert!(write.snapshot);
    let update = leader.update(&write);
    assert_eq!(update.snapshot.map(|s| (s.index, s.term)), Some((6, 1)));
    assert!(update.entries.is_empty(), "entries unchanged");
    leader.persisted(write.generation);
    assert_eq!(
        leader.snapshot_to_apply(),
        None,
        "its own snapshot is not applied again"
    );
}

#[test]
fn a_heartbeat_after_compaction_past_the_match_index_sends_no_snapshot() {
    // Follower 2 has acknowledged index 2 of the 8 streamed to it when the leader compacts to 5
    // (follower 1 holds everything): its heartbeat names index 8, the end of what was sent,
    // rather than sending the snapshot it does not need.
    let mut leader = replicating_leader(3, CoreConfig::default());
    let due = leader.next_deadline();
    leader.propose(0, commands(8));
    persist(&mut leader);
    leader.step(0, 1, ack(1, 8));
    leader.step(0, 2, ack(1, 2));
    apply_all(&mut leader);
    assert!(leader.compact(5, Bytes::from_static(b"state at 5")));
    drain(&mut leader);
    leader.tick(due);
    let sent = drain(&mut leader);
    assert!(snapshots_to(&sent, 2).is_empty(), "{sent:?}");
    let heartbeat = appends_to(&sent, 2);
    assert_eq!(heartbeat.len(), 1, "{sent:?}");
    assert!(heartbeat[0].entries.is_empty());
    assert_eq!(heartbeat[0].prev_log_index, 8);
    assert_eq!(
        leader.progress(2).map(|p| p.state),
        Some(ProgressState::Replicate)
    );
}

#[test]
fn a_follower_behind_the_snapshot_gets_it_in_chunks_one_at_a_time() {
    let config = CoreConfig {
        max_snapshot_chunk: 4,
        ..CoreConfig::default()
    };
    let mut leader = replicating_leader(3, config);
    leader.propose(0, commands(8));
    persist(&mut leader);
    leader.step(0, 1, ack(1, 8));
    apply_all(&mut leader);
    assert!(leader.compact(5, Bytes::from_static(b"0123456789")));
    drain(&mut leader);

    // Follower 2 knew nothing: its rejection sends it back before the snapshot.
    let mut follower = new_core(2, 3);
    leader.step(0, 2, reject(1, 8, 0, 1));
    let sent = drain(&mut leader);
    let chunks = snapshots_to(&sent, 2);
    assert_eq!(chunks.len(), 1, "one chunk at a time: {sent:?}");
    assert_eq!(
        leader.progress(2).map(|p| p.state),
        Some(ProgressState::Snapshot)
    );
    let mut offsets = Vec::new();
    let mut chunk = chunks[0].clone();
    loop {
        offsets.push((chunk.offset, chunk.data.len(), chunk.done));
        assert_eq!(
            (chunk.last_included_index, chunk.last_included_term),
            (5, 1)
        );
        follower.step(0, 0, Message::InstallSnapshot(chunk.clone()));
        let replies = drain(&mut follower);
        let [(0, Message::InstallSnapshotReply(reply))] = replies.as_slice() else {
            panic!("expected one InstallSnapshotReply: {replies:?}");
        };
        assert_eq!(reply.installed, chunk.done);
        leader.step(0, 2, Message::InstallSnapshotReply(reply.clone()));
        let sent = drain(&mut leader);
        if chunk.done {
            // Installed: the leader probes from just after the snapshot.
            let appends = appends_to(&sent, 2);
            assert_eq!(appends.len(), 1, "{sent:?}");
            assert_eq!(
                (appends[0].prev_log_index, appends[0].prev_log_term),
                (5, 1)
            );
            assert_eq!(entry_terms(&appends[0].entries), [1, 1, 1]);
            break;
        }
        chunk = snapshots_to(&sent, 2).pop().expect("the next chunk");
    }
    assert_eq!(offsets, [(0, 4, false), (4, 4, false), (8, 2, true)]);
    assert_eq!(follower.commit_index(), 5);
    let snapshot = follower.snapshot_to_apply().expect("for the service");
    assert_eq!(
        (snapshot.index, &snapshot.data[..]),
        (5, &b"0123456789"[..])
    );
    assert_eq!(
        follower.apply_range(),
        None,
        "nothing applied before the snapshot"
    );
    follower.snapshot_applied();
    assert_eq!(follower.last_applied(), 5);
}

#[test]
fn install_keeps_a_matching_suffix_and_drops_a_conflicting_log() {
    let snapshot = |term| {
        Message::InstallSnapshot(InstallSnapshot {
            term: 3,
            last_included_index: 3,
            last_included_term: term,
            offset: 0,
            data: Bytes::from_static(b"s"),
            done: true,
            round: 0,
            config: None,
        })
    };
    // (follower log, snapshot's last term, want log after, want a truncation stored)
    type Case<'a> = (&'a [u64], u64, &'a [u64], Option<u64>);
    let cases: [Case<'_>; 3] = [
        (&[1, 1, 1, 2, 2], 1, &[2, 2], None),
        (&[1, 1, 2, 2, 2], 1, &[], Some(4)),
        (&[1], 1, &[], None),
    ];
    for (case, (log, snapshot_term, want, truncation)) in cases.into_iter().enumerate() {
        let mut follower = new_core(1, 3);
        give_log(&mut follower, 2, log);
        follower.step(0, 0, snapshot(snapshot_term));
        let write = follower.take_persist().expect("the snapshot to store");
        assert!(write.snapshot, "case {case}");
        assert_eq!(write.truncate_from, truncation, "case {case}: truncation");
        assert!(
            !follower.has_messages(),
            "case {case}: no answer before it is durable"
        );
        follower.persisted(write.generation);
        let replies: Vec<_> = follower.take_messages().collect();
        assert!(
            matches!(replies.as_slice(), [(0, Message::InstallSnapshotReply(r))] if r.installed),
            "case {case}: {replies:?}"
        );
        assert_eq!(follower.log().offset(), 3, "case {case}");
        let kept: Vec<u64> = (4..=follower.log().last_index())
            .map(|i| follower.log().term(i).expect("held"))
            .collect();
        assert_eq!(kept, want, "case {case}: log after the snapshot");
    }
}

#[test]
fn a_snapshot_a_follower_has_committed_past_is_not_installed() {
    let mut follower = new_core(1, 2);
    give_log(&mut follower, 0, &[1, 1, 1, 1]);
    follower.step(0, 0, append(1, (4, 1), &[], 4));
    drain(&mut follower);
    follower.step(
        0,
        0,
        Message::InstallSnapshot(InstallSnapshot {
            term: 1,
            last_included_index: 3,
            last_included_term: 1,
            offset: 0,
            data: Bytes::from_static(b"old"),
            done: true,
            round: 0,
            config: None,
        }),
    );
    let replies = drain(&mut follower);
    assert!(
        matches!(replies.as_slice(), [(0, Message::InstallSnapshotReply(r))] if r.installed),
        "{replies:?}"
    );
    assert_eq!(
        (follower.log().offset(), follower.log().last_index()),
        (0, 4)
    );
    assert_eq!(follower.snapshot_to_apply(), None);
}

#[test]
fn a_chunk_out_of_order_asks_for_the_one_needed() {
    let chunk = |offset, data: &'static [u8], done| {
        Message::InstallSnapshot(InstallSnapshot {
            term: 1,
            last_included_index: 9,
            last_included_term: 1,
            offset,
            data: Bytes::from_static(data),
            done,
            round: 0,
            config: None,
        })
    };
    let next_offset = |follower: &mut Core| match drain(follower).as_slice() {
        [(0, Message::InstallSnapshotReply(r))] => (r.next_offset, r.installed),
        other => panic!("expected one InstallSnapshotReply: {other:?}"),
    };
    let mut follower = new_core(1, 2);
    follower.step(0, 0, chunk(4, b"4567", false));
    assert_eq!(
        next_offset(&mut follower),
        (0, false),
        "a transfer starts at 0"
    );
    follower.step(0, 0, chunk(0, b"0123", false));
    assert_eq!(next_offset(&mut follower), (4, false));
    follower.step(0, 0, chunk(0, b"0123", false));
    assert_eq!(
        next_offset(&mut follower),
        (4, false),
        "a duplicate changes nothing"
    );
    follower.step(0, 0, chunk(8, b"89", true));
    assert_eq!(next_offset(&mut follower), (4, false), "a gap asks again");
    follower.step(0, 0, chunk(4, b"4567", false));
    follower.step(0, 0, chunk(8, b"89", true));
    let replies = drain(&mut follower);
    assert_eq!(replies.len(), 2);
    let data = follower
        .snapshot_to_apply()
        .expect("installed")
        .data
        .clone();
    assert_eq!(&data[..], b"0123456789");
}

#[test]
fn chunks_of_another_leaders_snapshot_do_not_mix() {
    let chunk = |term, offset, data: &'static [u8], done| {
        Message::InstallSnapshot(InstallSnapshot {
            term,
            last_included_index: 9,
            last_included_term: 1,
            offset,
            data: Bytes::from_static(data),
            done,
            round: 0,
            config: None,
        })
    };
    let mut follower = new_core(2, 3);
    follower.step(0, 0, chunk(1, 0, b"abcd", false));
    drain(&mut follower);
    // Leader 1 of term 2 sends the same snapshot (index and term), serialized otherwise: its
    // second chunk must not complete leader 0's first.
    follower.step(0, 1, chunk(2, 4, b"WXYZ", true));
    let replies = drain(&mut follower);
    assert!(
        matches!(
            replies.as_slice(),
            [(1, Message::InstallSnapshotReply(r))] if r.next_offset == 0 && !r.installed
        ),
        "{replies:?}"
    );
    follower.step(0, 1, chunk(2, 0, b"STUV", false));
    follower.step(0, 1, chunk(2, 4, b"WXYZ", true));
    drain(&mut follower);
    let data = follower
        .snapshot_to_apply()
        .expect("installed")
        .data
        .clone();
    assert_eq!(&data[..], b"STUVWXYZ");
}

#[test]
fn an_append_reaching_back_before_the_snapshot_checks_from_it() {
    let mut follower = new_core(1, 2);
    give_log(&mut follower, 0, &[1, 1, 1, 1]);
    follower.step(0, 0, append(1, (4, 1), &[], 4));
    drain(&mut follower);
    apply_all(&mut follower);
    assert!(follower.compact(3, Bytes::from_static(b"s")));
    drain(&mut follower);
    // A late AppendEntries from index 1 carrying entries 2 to 6.
    follower.step(0, 0, append(1, (1, 1), &[1, 1, 1, 1, 1], 4));
    let reply = the_append_reply(&drain(&mut follower), 0);
    assert_eq!((reply.success, reply.index), (true, 6));
    assert_eq!(follower.log().last_index(), 6);
    // One entirely below the snapshot.
    follower.step(0, 0, append(1, (0, 0), &[1, 1], 4));
    let reply = the_append_reply(&drain(&mut follower), 0);
    assert_eq!((reply.success, reply.index), (true, 2));
}

/// A leader of 3 with 4 entries, compacted into a snapshot holding `data`, which it sends in
/// chunks of 4 bytes to follower 2, who holds nothing: its first chunk is sent and drained.
fn leader_sending_snapshot_to_2(data: &'static [u8]) -> Core {
    let config = CoreConfig {
        max_snapshot_chunk: 4,
        ..CoreConfig::default()
    };
    let mut leader = replicating_leader(3, config);
    leader.propose(0, commands(4));
    persist(&mut leader);
    leader.step(0, 1, ack(1, 4));
    apply_all(&mut leader);
    assert!(leader.compact(4, Bytes::from_static(data)));
    drain(&mut leader);
    leader.step(0, 2, reject(1, 4, 0, 1));
    assert_eq!(snapshots_to(&drain(&mut leader), 2).len(), 1);
    leader
}

#[test]
fn a_heartbeat_sends_the_outstanding_chunk_again() {
    let mut leader = leader_sending_snapshot_to_2(b"abcdefgh");
    assert!(quiet(&mut leader), "one chunk outstanding: nothing more");
    // Well past the heartbeat deadline.
    leader.tick(60_000 * MS);
    let again = snapshots_to(&drain(&mut leader), 2);
    assert_eq!(again.len(), 1, "the chunk again, as a heartbeat");
    assert_eq!(again[0].offset, 0);
}

#[test]
fn duplicated_chunk_replies_send_no_extra_chunks() {
    let mut leader = leader_sending_snapshot_to_2(b"abcdefghij");
    let has = |next_offset| {
        Message::InstallSnapshotReply(InstallSnapshotReply {
            term: 1,
            last_included_index: 4,
            next_offset,
            installed: false,
            round: 0,
        })
    };
    // The first chunk's answer, three times over (the network duplicated it): one next chunk.
    let mut sent = Vec::new();
    for _ in 0..3 {
        leader.step(0, 2, has(4));
        sent.extend(snapshots_to(&drain(&mut leader), 2));
    }
    let offsets: Vec<u64> = sent.iter().map(|c| c.offset).collect();
    assert_eq!(offsets, [4], "one chunk per answer that moves the transfer");
    // The follower restarted and lost the chunks: it asks from the start again.
    leader.step(0, 2, has(0));
    let again = snapshots_to(&drain(&mut leader), 2);
    assert_eq!(again.iter().map(|c| c.offset).collect::<Vec<_>>(), [0]);
}

#[test]
fn a_node_restarts_from_its_snapshot() {
    let recovered = Recovered {
        hard_state: HardState {
            term: 3,
            voted_for: None,
        },
        snapshot: Some(Snapshot {
            index: 10,
            term: 2,
            data: Bytes::from_static(b"state at 10"),
            config: None,
        }),
        entries: vec![Entry::new(3, cmd(3, 11)); 2],
    };
    let mut core = Core::restore(1, 3, CoreConfig::default(), 5, 0, recovered);
    assert_eq!((core.log().offset(), core.log().last_index()), (10, 12));
    assert_eq!((core.commit_index(), core.last_applied()), (10, 10));
    assert_eq!(
        core.snapshot_to_apply().map(|s| &s.data[..]),
        Some(&b"state at 10"[..])
    );
    core.snapshot_applied();
    assert_eq!(core.snapshot_to_apply(), None);
    // The leader's AppendEntries right after the snapshot matches its last term.
    core.step(0, 0, append(3, (10, 2), &[3, 3, 3], 12));
    let reply = the_append_reply(&drain(&mut core), 0);
    assert_eq!((reply.success, reply.index), (true, 13));
    assert_eq!(core.apply_range(), Some((11, 12)));
}
