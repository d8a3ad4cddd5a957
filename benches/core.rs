//! Micro-benchmarks of the sans-IO core, without threads or network: the leader appending a
//! batch, a follower handling an AppendEntries, and backtracking over a divergent follower log.

use std::cell::Cell;
use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use zeroraft_engine::core::{
    AppendEntries, AppendEntriesReply, Core, CoreConfig, Entry, Message, RequestVoteReply, Role,
};

/// What `core` sends once its changes are durable: its storage is taken to write instantly.
fn sent(core: &mut Core) -> std::vec::Drain<'_, (usize, Message)> {
    while let Some(write) = core.take_persist() {
        core.persisted(write.generation);
    }
    core.take_messages()
}

/// Delivers every queued message between cores until none is left; returns the number of
/// messages delivered.
fn settle(cores: &mut [Core], now: u64) -> usize {
    let mut delivered = 0;
    loop {
        let mut batch = Vec::new();
        for core in cores.iter_mut() {
            let from = core.id();
            batch.extend(sent(core).map(|(to, m)| (from, to, m)));
        }
        if batch.is_empty() {
            return delivered;
        }
        for (from, to, m) in batch {
            cores[to].step(now, from, m);
            delivered += 1;
        }
    }
}

/// Three cores with node 0 elected leader at time `now`.
fn cluster(now: &mut u64) -> Vec<Core> {
    let mut cores: Vec<Core> = (0..3)
        .map(|i| Core::new(i, 3, CoreConfig::default(), i as u64, 0))
        .collect();
    *now = CoreConfig::default().election_timeout_max;
    cores[0].tick(*now);
    settle(&mut cores, *now);
    assert_eq!(cores[0].role(), Role::Leader);
    cores
}

fn payloads(n: usize) -> Vec<Bytes> {
    (0..n).map(|_| Bytes::from_static(&[3u8; 16])).collect()
}

fn leader_append(c: &mut Criterion) {
    let mut g = c.benchmark_group("core/leader_append");
    for n in [1usize, 64, 1024] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            let mut now = 0;
            let mut cores = cluster(&mut now);
            b.iter_batched(
                || payloads(n),
                |batch| {
                    // Propose and build one AppendEntries per follower; acks keep the window open.
                    cores[0].propose(now, batch);
                    let sent: Vec<_> = sent(&mut cores[0]).collect();
                    let last = cores[0].log().last_index();
                    for (to, _) in sent {
                        let ack = AppendEntriesReply {
                            term: cores[0].term(),
                            success: true,
                            index: last,
                            conflict_term: 0,
                            conflict_index: 0,
                            round: 0,
                        };
                        cores[0].step(now, to, Message::AppendEntriesReply(ack));
                    }
                    black_box(cores[0].commit_index())
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn follower_append(c: &mut Criterion) {
    let mut g = c.benchmark_group("core/follower_append");
    for n in [1usize, 64, 1024] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            let mut now = 0;
            let mut cores = cluster(&mut now);
            let term = cores[0].term();
            let next_prev = Cell::new(cores[1].log().last_index());
            b.iter_batched(
                || {
                    let prev = next_prev.replace(next_prev.get() + n as u64);
                    let entries: Vec<Entry> = payloads(n)
                        .into_iter()
                        .map(|command| Entry::new(term, command))
                        .collect();
                    AppendEntries {
                        term,
                        prev_log_index: prev,
                        prev_log_term: if prev == 0 { 0 } else { term },
                        entries,
                        leader_commit: prev,
                        round: 0,
                    }
                },
                |ae| {
                    cores[1].step(now, 0, Message::AppendEntries(ae));
                    black_box(sent(&mut cores[1]).count())
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

/// Makes `core` leader of a term above `at_least`, with the vote of `voter` forged.
fn win(core: &mut Core, voter: usize, now: &mut u64, at_least: u64) {
    core.step(
        *now,
        voter,
        Message::RequestVoteReply(RequestVoteReply {
            term: at_least,
            granted: false,
        }),
    );
    *now += CoreConfig::default().election_timeout_max;
    core.tick(*now);
    let term = core.term();
    core.step(
        *now,
        voter,
        Message::RequestVoteReply(RequestVoteReply {
            term,
            granted: true,
        }),
    );
    assert_eq!(core.role(), Role::Leader);
    sent(core).for_each(drop);
}

/// A follower that holds 1 000 entries over 10 terms the leader never had, and a leader with
/// 1 000 entries of its own: measures the exchange until the follower's log matches.
fn backtracking(c: &mut Criterion) {
    let mut g = c.benchmark_group("core/backtrack");
    g.bench_function("1000_entries_10_terms", |b| {
        b.iter_batched(
            || {
                let mut now = 0;
                let mut follower = Core::new(1, 2, CoreConfig::default(), 2, 0);
                for _ in 0..10 {
                    let next_term = follower.term() + 1;
                    win(&mut follower, 0, &mut now, next_term);
                    follower.propose(now, payloads(100));
                    sent(&mut follower).for_each(drop);
                }
                let mut leader = Core::new(0, 2, CoreConfig::default(), 1, 0);
                win(&mut leader, 1, &mut now, 1);
                leader.propose(now, payloads(1000));
                sent(&mut leader).for_each(drop);
                win(&mut leader, 1, &mut now, 100);
                // The first heartbeat of term 101 probes at index 1000, where the logs differ.
                now += CoreConfig::default().heartbeat_interval;
                leader.tick(now);
                (vec![leader, follower], now)
            },
            |(mut cores, now)| {
                let messages = settle(&mut cores, now);
                assert_eq!(cores[1].log().last_index(), 1000);
                assert_eq!(cores[1].log().last_term(), cores[0].log().last_term());
                black_box(messages)
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1)).configure_from_args();
    targets = leader_append, follower_append, backtracking
}
criterion_main!(benches);
