//! Allocation budget at steady state: a 3-node cluster committing bursts of proposals must
//! allocate at most 0.01 times per committed entry, counting every thread (clients, nodes,
//! network). Payloads are static, so the client's own payload creation is not counted. The
//! proposal queue is allocated once, when a node starts, and replication, leader and followers
//! trading entry buffers, allocates nothing: what is left is the amortized growth of the logs
//! (0.0000 to 0.0003 per entry). An allocation per AppendEntries would add 2 per burst of 64
//! (0.031), and an unbounded proposal queue's block per 31 proposals 0.032: either breaks the
//! budget.
//!
//! Alone in its binary: the counting allocator sees every thread of the process.

use std::alloc::System;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use zeroraft::Config;
use zeroraft::engine::core::{
    AppendEntries, Core, CoreConfig, Entry, Message, RequestVoteReply, Role,
};
use zeroraft_harness::load::LoadCluster;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const BUDGET_PER_ENTRY: f64 = 0.01;

/// The counters are process-wide: tests in this binary measure one at a time.
static MEASURING: Mutex<()> = Mutex::new(());

/// Allocations per committed entry over `count` entries proposed in bursts of `burst`, each
/// proposal's payload from `payload()`, after a warm-up round of the same.
fn allocations_per_entry(
    cluster: &LoadCluster,
    burst: u64,
    count: u64,
    mut payload: impl FnMut() -> Bytes,
) -> f64 {
    // Warm up: grow logs, queues and buffers to their steady-state sizes.
    cluster.bursts_with(count, burst, &mut payload);
    let region = Region::new(GLOBAL);
    cluster.bursts_with(count, burst, &mut payload);
    let stats = region.change();
    stats.allocations as f64 / count as f64
}

#[test]
fn cluster_allocations_per_committed_entry() {
    let _alone = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let config = Config {
        heartbeat_interval: Duration::from_millis(100),
        ..Config::default()
    };
    let cluster = LoadCluster::new(3, config);
    let payload = Bytes::from_static(&[9u8; 16]);
    for burst in [64, 1024] {
        let per_entry = allocations_per_entry(&cluster, burst, 200_000, || payload.clone());
        println!("bursts of {burst}: {per_entry:.4} allocations per committed entry (all threads)");
        assert!(
            per_entry <= BUDGET_PER_ENTRY,
            "bursts of {burst}: {per_entry:.4} allocations per committed entry, budget {BUDGET_PER_ENTRY}"
        );
    }
}

/// Compacting every 10 000 entries (20 compactions per node in the measured round) stays within
/// the budget, counting reallocations too: the log keeps its room from one compaction to the
/// next, and the vector the dropped entries leave in comes back from the freer, emptied a slice
/// per round, as the next compaction's spare, so a compaction reallocates nothing once both have grown. What is
/// left is each compaction's snapshot and the like, a few allocations per node per compaction.
#[test]
fn compacting_allocates_within_the_budget() {
    let _alone = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let config = Config {
        compaction: zeroraft::Compaction {
            every_entries: Some(10_000),
            above_bytes: None,
        },
        ..Config::default()
    };
    let cluster = LoadCluster::new(3, config);
    let payload = Bytes::from_static(&[9u8; 16]);
    let count = 200_000;
    // Two warm-up rounds: the log's vectors reach their steady size.
    cluster.bursts_with(count, 1024, || payload.clone());
    cluster.bursts_with(count, 1024, || payload.clone());
    let snapshots = |c: &LoadCluster| (0..3).map(|i| c.node(i).status().snapshot_index).min();
    let before = snapshots(&cluster);
    let region = Region::new(GLOBAL);
    cluster.bursts_with(count, 1024, || payload.clone());
    let stats = region.change();
    let after = snapshots(&cluster);
    assert!(
        after.zip(before).is_some_and(|(a, b)| a >= b + count / 2),
        "every node compacted during the round: snapshot index {before:?} -> {after:?}"
    );
    let allocations = stats.allocations as f64 / count as f64;
    let reallocations = stats.reallocations as f64 / count as f64;
    println!(
        "compacting every 10 000 entries, bursts of 1024: {allocations:.4} allocations and \
         {reallocations:.4} reallocations per committed entry (all threads)"
    );
    assert!(
        allocations + reallocations <= BUDGET_PER_ENTRY,
        "{allocations:.4} allocations + {reallocations:.4} reallocations per committed entry, \
         budget {BUDGET_PER_ENTRY}"
    );
}

/// A client that builds every command (`Bytes::copy_from_slice`) allocates it once; the engine
/// then shares it between the leader's log and its messages, and `bytes` allocates the shared
/// reference count at the first clone of a vector-backed `Bytes`. Reported apart from the engine's
/// own allocations: the client's share is measured by building the same payloads alone.
#[test]
fn allocations_with_payloads_built_per_command() {
    let _alone = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = LoadCluster::new(3, Config::default());
    let source = [7u8; 16];
    let count = 200_000;
    let region = Region::new(GLOBAL);
    let built: Vec<Bytes> = (0..count)
        .map(|_| Bytes::copy_from_slice(&source))
        .collect();
    let client = (region.change().allocations as f64 - 1.0) / count as f64; // minus the Vec
    drop(built);
    let total = allocations_per_entry(&cluster, 64, count, || Bytes::copy_from_slice(&source));
    let engine = total - client;
    println!(
        "bursts of 64, payload built per command: {total:.4} allocations per committed entry: \
         {client:.4} building the payload, {engine:.4} in the engine"
    );
    assert!(
        (client - 1.0).abs() < 0.01,
        "copy_from_slice allocates once: {client:.4}"
    );
    // The reference count of each shared payload, plus the same budget as static payloads.
    assert!(
        engine <= 1.0 + BUDGET_PER_ENTRY,
        "{engine:.4} engine allocations per committed entry, budget {}",
        1.0 + BUDGET_PER_ENTRY
    );
}

/// Three cores stepped on one thread, the follower's entry buffers handed back to the leader as
/// the runtime does: after a warm-up, replicating and committing allocates nothing but the
/// amortized growth of the logs.
#[test]
fn replication_round_trip_allocates_only_log_growth() {
    let _alone = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let mut cores: Vec<Core> = (0..3)
        .map(|i| Core::new(i, 3, CoreConfig::default(), i as u64, 0))
        .collect();
    let mut now = 0;
    while !cores.iter().any(|c| c.role() == Role::Leader) {
        now = cores
            .iter()
            .map(Core::next_deadline)
            .min()
            .expect("three cores");
        for core in &mut cores {
            core.tick(now);
        }
        deliver_all(&mut cores, now, &mut Vec::new());
    }
    let leader = cores
        .iter()
        .position(|c| c.role() == Role::Leader)
        .expect("a leader");
    let payload = Bytes::from_static(&[1u8; 16]);
    let (batch, batches) = (64u64, 2_000u64);
    let mut queue = Vec::with_capacity(64);
    let mut round = |cores: &mut Vec<Core>| {
        cores[leader].propose(now, (0..batch).map(|_| payload.clone()));
        deliver_all(cores, now, &mut queue);
        for i in (0..cores.len()).filter(|&i| i != leader) {
            while let Some(buffer) = cores[i].take_entry_buffer() {
                cores[leader].give_entry_buffer(buffer);
            }
        }
    };
    for _ in 0..batches {
        round(&mut cores);
    }
    let region = Region::new(GLOBAL);
    for _ in 0..batches {
        round(&mut cores);
    }
    let stats = region.change();
    let last = cores[leader].log().last_index();
    assert_eq!(cores[leader].commit_index(), last, "every batch committed");
    for core in &cores {
        // A follower learns of the last batch's commit with the next message.
        assert_eq!(
            core.log().last_index(),
            last,
            "node {}: replicated",
            core.id()
        );
        assert!(
            core.commit_index() + batch >= last,
            "node {}: committed up to the previous batch",
            core.id()
        );
    }
    let entries = batch * batches;
    let allocations = stats.allocations + stats.reallocations;
    // About log2 of the log's size per core; one per message would be 4 000.
    let bound = entries / 1000;
    println!("replication round trip: {allocations} allocations for {entries} entries");
    assert!(
        allocations <= bound as usize,
        "{allocations} allocations for {entries} entries replicated in {batches} batches; at most {bound} allowed"
    );
}

/// Delivers messages between `cores` until none is left, through `queue`.
fn deliver_all(cores: &mut [Core], now: u64, queue: &mut Vec<(usize, usize, Message)>) {
    loop {
        for (from, core) in cores.iter_mut().enumerate() {
            while let Some(write) = core.take_persist() {
                core.persisted(write.generation);
            }
            queue.extend(core.take_messages().map(|(to, m)| (from, to, m)));
        }
        if queue.is_empty() {
            return;
        }
        for (from, to, m) in queue.drain(..) {
            cores[to].step(now, from, m);
        }
    }
}

#[test]
fn follower_append_allocates_only_log_growth() {
    let _alone = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let config = CoreConfig::default();
    let mut follower = Core::new(1, 2, config.clone(), 1, 0);
    // Term 1 from node 0, as a leader would start it.
    follower.step(
        0,
        0,
        Message::RequestVoteReply(RequestVoteReply {
            term: 1,
            granted: false,
        }),
    );
    let batch = 64u64;
    let batches = 2_000u64;
    let payload = Bytes::from_static(&[1u8; 16]);
    let messages: Vec<AppendEntries> = (0..batches)
        .map(|b| AppendEntries {
            term: 1,
            prev_log_index: b * batch,
            prev_log_term: if b == 0 { 0 } else { 1 },
            entries: (0..batch).map(|_| Entry::new(1, payload.clone())).collect(),
            leader_commit: b * batch,
            round: 0,
        })
        .collect();
    let region = Region::new(GLOBAL);
    for m in messages {
        follower.step(0, 0, Message::AppendEntries(m));
        let write = follower.take_persist().expect("entries to write");
        follower.persisted(write.generation);
        follower.take_messages().for_each(drop);
    }
    let stats = region.change();
    let entries = batch * batches;
    assert_eq!(follower.log().last_index(), entries);
    // The log doubles its capacity as it grows: about log2(entries) allocations in all. One
    // allocation per message (2 000) or per entry (128 000) would blow this bound by far; the
    // slack covers the test harness's own threads, which the global counter also sees.
    let allocations = stats.allocations + stats.reallocations;
    let bound = entries / 1000;
    println!("follower append: {allocations} allocations for {entries} entries");
    assert!(
        allocations <= bound as usize,
        "{allocations} allocations for {entries} entries appended in {batches} messages; at most {bound} allowed"
    );
}
