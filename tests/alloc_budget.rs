//! Allocation budget at steady state: a 3-node cluster committing bursts of proposals must
//! allocate at most 0.1 times per committed entry, counting every thread (clients, nodes,
//! network). Payloads are static, so the client's own payload creation is not counted. A
//! follower appending entries it received allocates nothing but the amortized growth of its log.
//!
//! Alone in its binary: the counting allocator sees every thread of the process.

use std::alloc::System;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use zeroraft::Config;
use zeroraft::bench::BenchCluster;
use zeroraft::engine::core::{AppendEntries, Core, CoreConfig, Entry, Message, RequestVoteReply};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const BUDGET_PER_ENTRY: f64 = 0.1;

/// The counters are process-wide: tests in this binary measure one at a time.
static MEASURING: Mutex<()> = Mutex::new(());

fn allocations_per_entry(cluster: &BenchCluster, burst: u64, count: u64) -> f64 {
    let payload = Bytes::from_static(&[9u8; 16]);
    // Warm up: grow logs, queues and buffers to their steady-state sizes.
    cluster.bursts(count, burst, &payload);
    let region = Region::new(GLOBAL);
    cluster.bursts(count, burst, &payload);
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
    let cluster = BenchCluster::new(3, config);
    for burst in [64, 1024] {
        let per_entry = allocations_per_entry(&cluster, burst, 200_000);
        println!("bursts of {burst}: {per_entry:.4} allocations per committed entry (all threads)");
        assert!(
            per_entry <= BUDGET_PER_ENTRY,
            "bursts of {burst}: {per_entry:.4} allocations per committed entry, budget {BUDGET_PER_ENTRY}"
        );
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
            entries: (0..batch)
                .map(|_| Entry {
                    term: 1,
                    command: payload.clone(),
                })
                .collect(),
            leader_commit: b * batch,
        })
        .collect();
    let region = Region::new(GLOBAL);
    for m in messages {
        follower.step(0, 0, Message::AppendEntries(m));
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
