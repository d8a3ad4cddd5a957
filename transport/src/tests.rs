//! Unit tests of the network: connectivity with the tester's semantics, checked at send and at
//! delivery; the reliable, unreliable and long-reordering fault models (their random choices
//! checked statistically with fixed seeds, and the network checked against those choices);
//! counters; inbox overflow; waking; shutdown.
//!
//! No test sleeps to let something happen: a test that needs the scheduler to have delivered a
//! message waits for a message it knows must come after it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use super::*;

/// A message that knows its kind and size, numbered so tests can tell messages apart.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Msg {
    request: bool,
    seq: u64,
    size: usize,
}

impl Message for Msg {
    fn wire_size(&self) -> usize {
        self.size
    }
    fn is_request(&self) -> bool {
        self.request
    }
}

fn request(seq: u64) -> Msg {
    Msg {
        request: true,
        seq,
        size: 40 + (seq % 13) as usize,
    }
}

fn reply(seq: u64) -> Msg {
    Msg {
        request: false,
        seq,
        size: 20 + (seq % 7) as usize,
    }
}

fn network(nodes: usize) -> Network<Msg> {
    Network::new(NetworkConfig::new(nodes)).expect("valid config")
}

/// A network of `nodes` nodes, all connected, with an endpoint per node (endpoint `i` seeded
/// with `i`).
fn connected(nodes: usize) -> (Network<Msg>, Vec<Endpoint<Msg>>) {
    let net = network(nodes);
    let endpoints = (0..nodes)
        .map(|i| net.endpoint(i, i as u64).expect("id in range"))
        .collect();
    for i in 0..nodes {
        net.connect(i);
    }
    (net, endpoints)
}

fn recv_all(endpoint: &Endpoint<Msg>) -> Vec<(NodeId, Msg)> {
    std::iter::from_fn(|| endpoint.try_recv()).collect()
}

/// Receives until `done` says the messages so far are enough, or fails after `limit`.
fn recv_until(
    endpoint: &Endpoint<Msg>,
    limit: Duration,
    mut done: impl FnMut(&[(NodeId, Msg, Instant)]) -> bool,
) -> Vec<(NodeId, Msg, Instant)> {
    let give_up = Instant::now() + limit;
    let mut got = Vec::new();
    while !done(&got) {
        assert!(
            Instant::now() < give_up,
            "node {}: gave up waiting after {} messages",
            endpoint.id(),
            got.len()
        );
        endpoint.wait(Some(give_up), Duration::ZERO, &|| false);
        while let Some((from, msg)) = endpoint.try_recv() {
            got.push((from, msg, Instant::now()));
        }
    }
    got
}

/// The generator endpoint `id` of a network seeded `net_seed` uses when made with `seed`.
fn replay_rng(net_seed: u64, seed: u64, id: NodeId) -> fastrand::Rng {
    endpoint_rng(net_seed ^ seed, id)
}

/// Waits until the scheduler has finished with everything already delivered on an unreliable
/// network, counters included: sends zero-size replies from `sender` to `sink` until the
/// replayed choices say one gets through, and waits for it. The scheduler thread updates the
/// counters of a delivery before it handles the next message, and the sink's inbox publishes the
/// marker to this thread.
fn settle_counters(sender: &mut Endpoint<Msg>, replay: &mut fastrand::Rng, sink: &Endpoint<Msg>) {
    let marker = Msg {
        request: false,
        seq: u64::MAX,
        size: 0,
    };
    loop {
        sender.send(sink.id(), marker.clone());
        if fault_delay(replay, false, false, false).is_some() {
            break;
        }
    }
    recv_until(sink, Duration::from_secs(5), |got| {
        got.iter().any(|(_, m, _)| *m == marker)
    });
}

/// Allowed distance of a count from its mean: five standard deviations of a binomial.
fn binomial_tolerance(n: u64, p: f64) -> f64 {
    5.0 * (n as f64 * p * (1.0 - p)).sqrt()
}

// ---- construction ------------------------------------------------------------------------------

#[test]
fn bad_configs_are_refused() {
    let cases = [
        (0, 16, NetworkError::NoNodes),
        (3, 0, NetworkError::ZeroInboxCapacity),
        (
            MAX_NODES + 1,
            16,
            NetworkError::TooManyNodes {
                nodes: MAX_NODES + 1,
                max: MAX_NODES,
            },
        ),
        (
            usize::MAX,
            16,
            NetworkError::TooManyNodes {
                nodes: usize::MAX,
                max: MAX_NODES,
            },
        ),
        (
            3,
            MAX_INBOX_CAPACITY + 1,
            NetworkError::InboxTooLarge {
                capacity: MAX_INBOX_CAPACITY + 1,
                max: MAX_INBOX_CAPACITY,
            },
        ),
        (
            3,
            usize::MAX,
            NetworkError::InboxTooLarge {
                capacity: usize::MAX,
                max: MAX_INBOX_CAPACITY,
            },
        ),
    ];
    for (case, (nodes, capacity, want)) in cases.into_iter().enumerate() {
        let config = NetworkConfig {
            nodes,
            seed: 0,
            inbox_capacity: capacity,
        };
        let err = Network::<Msg>::new(config).err();
        assert_eq!(err.as_ref(), Some(&want), "case {case}");
        assert!(!want.to_string().is_empty(), "case {case}: message");
    }
}

#[test]
fn endpoint_out_of_range_is_an_error() {
    let net = network(3);
    assert_eq!(net.nodes(), 3);
    for id in 0..3 {
        let ep = net.endpoint(id, 0).expect("in range");
        assert_eq!((ep.id(), ep.nodes()), (id, 3));
    }
    for id in [3, 4, usize::MAX] {
        let err = net.endpoint(id, 0).err();
        assert_eq!(err, Some(EndpointError::NoSuchNode { id, nodes: 3 }));
    }
}

#[test]
fn a_node_has_one_endpoint_at_a_time() {
    let net = network(2);
    let first = net.endpoint(1, 0).expect("free");
    for _ in 0..2 {
        let err = net.endpoint(1, 0).err().expect("claimed");
        assert_eq!(err, EndpointError::InUse { id: 1 });
        assert!(err.to_string().contains("already has an endpoint"), "{err}");
    }
    let other = net.endpoint(0, 0).expect("another node is free");
    drop(first);
    let second = net.endpoint(1, 0).expect("free once the first is dropped");
    assert_eq!(second.id(), 1);
    drop(other);
}

// ---- connectivity ------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Op {
    Connect(NodeId),
    Disconnect(NodeId),
}

#[test]
fn connected_nodes_form_a_clique_and_each_disconnected_node_is_alone() {
    const N: usize = 4;
    let net = network(N);
    let mut eps: Vec<_> = (0..N).map(|i| net.endpoint(i, 0).expect("id")).collect();
    // (operation, connected set after it)
    let script = [
        (Op::Connect(0), [true, false, false, false]),
        (Op::Connect(1), [true, true, false, false]),
        (Op::Connect(2), [true, true, true, false]),
        (Op::Connect(3), [true, true, true, true]),
        (Op::Disconnect(1), [true, false, true, true]),
        (Op::Disconnect(2), [true, false, false, true]), // 1 and 2 are each alone
        (Op::Connect(1), [true, true, false, true]),     // 1 rejoins the clique, not 2
        (Op::Disconnect(0), [false, true, false, true]),
        (Op::Disconnect(3), [false, true, false, false]),
        (Op::Connect(2), [false, true, true, false]),
        (Op::Disconnect(1), [false, false, true, false]),
        (Op::Disconnect(2), [false, false, false, false]),
    ];
    let mut seq = 0;
    for (step, (op, want)) in script.into_iter().enumerate() {
        match op {
            Op::Connect(i) => net.connect(i),
            Op::Disconnect(i) => net.disconnect(i),
        }
        for a in 0..N {
            assert_eq!(
                net.is_connected(a),
                want[a],
                "step {step} ({op:?}): node {a}"
            );
            for b in 0..N {
                let up = want[a] && want[b];
                assert_eq!(
                    net.link_up(a, b),
                    up,
                    "step {step} ({op:?}): link {a} -> {b}"
                );
                if a == b {
                    continue;
                }
                seq += 1;
                eps[a].send(b, request(seq));
                let got = recv_all(&eps[b]);
                let want_got = if up { vec![(a, request(seq))] } else { vec![] };
                assert_eq!(got, want_got, "step {step} ({op:?}): {a} -> {b} delivered");
            }
        }
    }
}

#[test]
fn two_disconnected_nodes_cannot_talk() {
    let (net, mut eps) = connected(3);
    net.disconnect(0);
    net.disconnect(1);
    eps[0].send(1, request(1));
    eps[1].send(0, request(2));
    eps[0].send(0, request(3));
    eps[2].send(0, reply(4));
    assert!(recv_all(&eps[0]).is_empty());
    assert!(recv_all(&eps[1]).is_empty());
    eps[2].send(2, request(5));
    assert_eq!(
        recv_all(&eps[2]),
        vec![(2, request(5))],
        "the connected node still works"
    );
    assert_eq!(net.rpc_total(), 4, "every request counts");
    assert_eq!((0..3).map(|i| net.rpc_count(i)).sum::<u64>(), 1);
}

#[test]
fn partition_and_single_links() {
    let (net, mut eps) = connected(5);
    net.partition(&[vec![0, 1], vec![2, 3]]);
    // (from, to, want delivered)
    let cases = [
        (0, 1, true),
        (1, 0, true),
        (2, 3, true),
        (0, 2, false),
        (3, 1, false),
        (4, 0, false), // in no group: alone
        (0, 4, false),
    ];
    for (case, (from, to, want)) in cases.into_iter().enumerate() {
        eps[from].send(to, request(case as u64));
        assert_eq!(
            recv_all(&eps[to]).len(),
            usize::from(want),
            "case {case}: {from} -> {to}"
        );
    }
    assert!(net.is_connected(0) && net.is_connected(3) && !net.is_connected(4));

    // A one-way link: 0 hears 1, 1 does not hear 0.
    net.set_link(0, 1, false);
    eps[0].send(1, request(100));
    eps[1].send(0, request(101));
    assert!(recv_all(&eps[1]).is_empty());
    assert_eq!(recv_all(&eps[0]), vec![(1, request(101))]);
}

#[test]
fn disconnect_drops_messages_already_delayed() {
    // Requests on an unreliable network wait up to 26 ms in the scheduler. Node 1 is cut off
    // right after they are sent: every one not due by then must be dropped at delivery. The
    // replayed random choices say which were due; a marker to node 2 with at least the longest
    // delay, sent after the cut, tells when the scheduler has dealt with all of them.
    for attempt in 0..5 {
        let (net, mut eps) = connected(3);
        net.set_reliable(false);
        let mut replay = replay_rng(0, 0, 0);

        let sent_at = Instant::now();
        let mut delays = Vec::new();
        for seq in 0..300 {
            eps[0].send(1, request(seq));
            delays.push(fault_delay(&mut replay, true, false, false));
        }
        net.disconnect(1);
        let cut_after = sent_at.elapsed();

        let longest = delays
            .iter()
            .flatten()
            .max()
            .copied()
            .expect("some not dropped");
        let mut marker = 1000;
        loop {
            eps[0].send(2, request(marker));
            if fault_delay(&mut replay, true, false, false).is_some_and(|d| d >= longest) {
                break;
            }
            marker += 1;
        }
        recv_until(&eps[2], Duration::from_secs(5), |got| {
            got.iter().any(|(_, m, _)| m.seq == marker)
        });

        let due_before_cut = delays.iter().flatten().filter(|&&d| d <= cut_after).count();
        let due_after_cut = delays.iter().flatten().count() - due_before_cut;
        if due_after_cut == 0 {
            continue; // this thread was too slow for the check to mean anything: try again
        }
        let delivered = recv_all(&eps[1]).len();
        assert_eq!(delivered as u64, net.rpc_count(1), "attempt {attempt}");
        assert!(
            delivered <= due_before_cut,
            "attempt {attempt}: {delivered} delivered, but only {due_before_cut} were due before \
             the cut ({due_after_cut} after it)"
        );
        assert_eq!(net.rpc_total(), 300 + (marker - 999), "attempt {attempt}");
        return;
    }
    panic!("the cut never came before the delayed messages were due");
}

// ---- fault model: the random choices -----------------------------------------------------------

#[test]
fn reliable_verdicts_deliver_everything_at_once() {
    let mut rng = fastrand::Rng::with_seed(1);
    for request in [true, false] {
        for _ in 0..1000 {
            assert_eq!(
                fault_delay(&mut rng, request, true, false),
                Some(Duration::ZERO),
                "request {request}"
            );
        }
    }
}

#[test]
fn unreliable_verdicts_drop_a_tenth_and_delay_requests_up_to_26_ms() {
    const N: u64 = 100_000;
    // (request, seed)
    let cases = [(true, 11), (false, 12), (true, 13)];
    for (case, (is_request, seed)) in cases.into_iter().enumerate() {
        let mut rng = fastrand::Rng::with_seed(seed);
        let verdicts: Vec<_> = (0..N)
            .map(|_| fault_delay(&mut rng, is_request, false, false))
            .collect();
        let dropped = verdicts.iter().filter(|v| v.is_none()).count() as f64;
        let tolerance = binomial_tolerance(N, 0.1);
        assert!(
            (dropped - 0.1 * N as f64).abs() <= tolerance,
            "case {case}: {dropped} of {N} dropped, want {} ± {tolerance:.0}",
            0.1 * N as f64
        );
        let delays: Vec<u64> = verdicts
            .iter()
            .flatten()
            .map(|d| d.as_millis() as u64)
            .collect();
        if !is_request {
            assert!(delays.iter().all(|&d| d == 0), "case {case}: replies wait");
            continue;
        }
        assert!(delays.iter().all(|&d| d <= 26), "case {case}: above 26 ms");
        for edge in [0, 26] {
            assert!(delays.contains(&edge), "case {case}: never {edge} ms");
        }
        // U{0..26}: mean 13, variance (27² - 1) / 12.
        let n = delays.len() as f64;
        let mean = delays.iter().sum::<u64>() as f64 / n;
        let tolerance = 5.0 * ((27.0f64 * 27.0 - 1.0) / 12.0 / n).sqrt();
        assert!(
            (mean - 13.0).abs() <= tolerance,
            "case {case}: mean delay {mean:.2} ms, want 13 ± {tolerance:.2}"
        );
    }
}

#[test]
fn long_reordering_verdicts_hold_two_thirds_of_replies_200_to_2199_ms() {
    const N: u64 = 100_000;
    // (reliable, seed, want share not dropped)
    let cases = [(true, 21, 1.0), (false, 22, 0.9)];
    for (case, (reliable, seed, kept)) in cases.into_iter().enumerate() {
        let mut rng = fastrand::Rng::with_seed(seed);
        let verdicts: Vec<_> = (0..N)
            .map(|_| fault_delay(&mut rng, false, reliable, true))
            .collect();
        let delivered: Vec<u64> = verdicts
            .iter()
            .flatten()
            .map(|d| d.as_millis() as u64)
            .collect();
        let dropped = N - delivered.len() as u64;
        assert!(
            (dropped as f64 - (1.0 - kept) * N as f64).abs() <= binomial_tolerance(N, 1.0 - kept),
            "case {case}: {dropped} dropped"
        );

        let held: Vec<u64> = delivered.iter().copied().filter(|&d| d > 0).collect();
        let n = delivered.len() as u64;
        let tolerance = binomial_tolerance(n, 2.0 / 3.0);
        assert!(
            (held.len() as f64 - n as f64 * 2.0 / 3.0).abs() <= tolerance,
            "case {case}: {} of {n} held back, want two thirds ± {tolerance:.0}",
            held.len()
        );
        assert!(
            held.iter().all(|d| (200..=2199).contains(d)),
            "case {case}: held outside 200..=2199 ms"
        );
        assert!(held.contains(&200), "case {case}: shortest hold never seen");
        assert!(
            held.iter().any(|&d| d > 2100),
            "case {case}: longest holds never seen"
        );

        // 200 + U[0, U[0, 1999]]: mean 200 + 1999/4, standard deviation about 441 ms, and
        // skewed to the short end: about 59.6% of holds are under 700 ms (a plain uniform
        // extra would give 25%).
        let h = held.len() as f64;
        let mean = held.iter().sum::<u64>() as f64 / h;
        let tolerance = 5.0 * 441.0 / h.sqrt();
        assert!(
            (mean - 699.75).abs() <= tolerance,
            "case {case}: mean hold {mean:.1} ms, want 699.75 ± {tolerance:.1}"
        );
        let short = held.iter().filter(|&&d| d < 700).count() as f64 / h;
        let tolerance = 5.0 * (0.5964 * 0.4036 / h).sqrt();
        assert!(
            (short - 0.5964).abs() <= tolerance,
            "case {case}: {short:.3} of holds under 700 ms, want 0.596 ± {tolerance:.3}"
        );
    }
}

#[test]
fn long_reordering_never_holds_requests() {
    let mut rng = fastrand::Rng::with_seed(5);
    for _ in 0..5000 {
        assert_eq!(
            fault_delay(&mut rng, true, true, true),
            Some(Duration::ZERO)
        );
    }
}

// ---- fault model: the network follows its choices ----------------------------------------------

#[test]
fn reliable_network_delivers_everything_at_once_in_order() {
    let (net, mut eps) = connected(3);
    let mut want = Vec::new();
    for seq in 0..3000 {
        let (from, msg) = match seq % 3 {
            0 => (0, request(seq)),
            1 => (2, reply(seq)),
            _ => (0, reply(seq)),
        };
        eps[from].send(1, msg.clone());
        want.push((from, msg));
    }
    // Delivered during the sends themselves: nothing to wait for.
    assert_eq!(recv_all(&eps[1]), want);
    assert_eq!(net.rpc_count(1), 1000);
    assert_eq!(net.traffic(1).delivered, 3000);
    assert_eq!(net.traffic(0).sent + net.traffic(2).sent, 3000);
}

#[test]
fn unreliable_network_follows_the_replayed_choices() {
    // (requests, network seed, endpoint seed)
    let cases = [(true, 0, 0), (false, 0, 0), (true, 77, 5)];
    for (case, (is_request, net_seed, seed)) in cases.into_iter().enumerate() {
        let net = Network::new(NetworkConfig {
            seed: net_seed,
            ..NetworkConfig::new(3)
        })
        .expect("config");
        let mut sender = net.endpoint(0, seed).expect("id");
        let receiver = net.endpoint(1, seed).expect("id");
        let sink = net.endpoint(2, seed).expect("id");
        for i in 0..3 {
            net.connect(i);
        }
        net.set_reliable(false);

        let mut replay = replay_rng(net_seed, seed, 0);
        let mut want = Vec::new();
        for seq in 0..2000 {
            let msg = if is_request { request(seq) } else { reply(seq) };
            let sent_at = Instant::now();
            sender.send(1, msg.clone());
            if let Some(delay) = fault_delay(&mut replay, is_request, false, false) {
                want.push((msg, sent_at + delay));
            }
        }
        let got = recv_until(&receiver, Duration::from_secs(5), |got| {
            got.len() >= want.len()
        });
        let got_seqs: HashSet<u64> = got.iter().map(|(_, m, _)| m.seq).collect();
        let want_seqs: HashSet<u64> = want.iter().map(|(m, _)| m.seq).collect();
        assert_eq!(
            got_seqs, want_seqs,
            "case {case}: the replayed ones are delivered"
        );
        assert_eq!(got.len(), want.len(), "case {case}: each once");
        for (from, msg, received_at) in &got {
            let due = want
                .iter()
                .find(|(m, _)| m.seq == msg.seq)
                .map(|(_, due)| *due)
                .expect("wanted");
            assert_eq!(*from, 0, "case {case}");
            assert!(
                *received_at >= due,
                "case {case}: seq {} came early",
                msg.seq
            );
        }
        if is_request {
            let in_order = got.windows(2).all(|w| w[0].1.seq < w[1].1.seq);
            assert!(!in_order, "case {case}: random delays reorder requests");
        }

        settle_counters(&mut sender, &mut replay, &sink);
        let (total, count, want_bytes): (u64, u64, u64) = if is_request {
            // Every request counts, and its bytes, at send; delivered ones count at node 1.
            let bytes = (0..2000).map(|s| request(s).size as u64).sum();
            (2000, want.len() as u64, bytes)
        } else {
            // Replies are no RPCs; only the delivered ones cost bytes.
            (0, 0, want.iter().map(|(m, _)| m.size as u64).sum())
        };
        assert_eq!(net.rpc_total(), total, "case {case}: rpc_total");
        assert_eq!(net.rpc_count(1), count, "case {case}: rpc_count");
        assert_eq!(net.bytes_total(), want_bytes, "case {case}: bytes");
    }
}

#[test]
fn network_seed_changes_the_choices() {
    let dropped = |net_seed: u64| -> Vec<u64> {
        let net = Network::new(NetworkConfig {
            seed: net_seed,
            ..NetworkConfig::new(2)
        })
        .expect("config");
        let mut sender = net.endpoint(0, 9).expect("id");
        let receiver = net.endpoint(1, 9).expect("id");
        net.connect(0);
        net.connect(1);
        net.set_reliable(false);
        for seq in 0..300 {
            sender.send(1, reply(seq));
        }
        let mut replay = replay_rng(net_seed, 9, 0);
        let kept = (0..300)
            .filter(|_| fault_delay(&mut replay, false, false, false).is_some())
            .count();
        let got = recv_until(&receiver, Duration::from_secs(5), |got| got.len() >= kept);
        let got: HashSet<u64> = got.iter().map(|(_, m, _)| m.seq).collect();
        (0..300).filter(|s| !got.contains(s)).collect()
    };
    let a = dropped(1);
    assert_eq!(a, dropped(1), "same seeds, same drops");
    assert_ne!(a, dropped(2), "the network seed matters");
}

#[test]
fn long_reordering_holds_back_replies_not_requests() {
    let (net, mut eps) = connected(2);
    net.set_long_reordering(true);
    let mut replay = replay_rng(0, 0, 0);
    let mut immediate = Vec::new();
    let mut held_bytes = 0;
    for seq in 0..60 {
        eps[0].send(1, request(seq));
        immediate.push((0, request(seq)));
        let _ = fault_delay(&mut replay, true, true, true);
        eps[0].send(1, reply(seq));
        match fault_delay(&mut replay, false, true, true) {
            Some(d) if d.is_zero() => immediate.push((0, reply(seq))),
            Some(d) => {
                assert!(d >= Duration::from_millis(200));
                held_bytes += reply(seq).size as u64;
            }
            None => unreachable!("a reliable network drops nothing"),
        }
    }
    // Everything not held back arrived during the sends; the held replies are at least 200 ms
    // away, so nothing else can have arrived yet.
    assert_eq!(recv_all(&eps[1]), immediate);
    assert!(held_bytes > 0, "some replies are held");
    let request_bytes: u64 = (0..60).map(|s| request(s).size as u64).sum();
    let delivered_reply_bytes: u64 = immediate
        .iter()
        .filter(|(_, m)| !m.request)
        .map(|(_, m)| m.size as u64)
        .sum();
    assert_eq!(
        net.bytes_total(),
        request_bytes + delivered_reply_bytes,
        "held replies are not counted until delivered"
    );
}

// ---- counters ----------------------------------------------------------------------------------

#[test]
fn counters_follow_the_tester() {
    let net = network(3);
    let mut eps: Vec<_> = (0..3).map(|i| net.endpoint(i, 0).expect("id")).collect();
    net.connect(0);
    net.connect(1);
    // (from, to, message, want rpc_total, want rpc_count of 0, 1, 2, want bytes)
    let script = [
        (0, 1, request(0), 1, [0, 1, 0], 40),
        (1, 0, reply(1), 1, [0, 1, 0], 61), // a delivered reply counts its bytes
        (0, 2, request(2), 2, [0, 1, 0], 103), // node 2 is disconnected: counted, not delivered
        (2, 0, reply(3), 2, [0, 1, 0], 103), // an undelivered reply costs nothing
        (2, 1, request(4), 3, [0, 1, 0], 147),
        (1, 0, request(5), 4, [1, 1, 0], 192),
        (0, 0, request(6), 5, [2, 1, 0], 238), // to itself
    ];
    for (step, (from, to, msg, total, counts, bytes)) in script.into_iter().enumerate() {
        eps[from].send(to, msg);
        assert_eq!(net.rpc_total(), total, "step {step}: rpc_total");
        for (i, &count) in counts.iter().enumerate() {
            assert_eq!(net.rpc_count(i), count, "step {step}: rpc_count({i})");
        }
        assert_eq!(net.bytes_total(), bytes, "step {step}: bytes_total");
    }
    assert_eq!(
        net.traffic(0),
        Traffic {
            sent: 3,
            delivered: 3
        }
    );
    assert_eq!(
        net.traffic(2),
        Traffic {
            sent: 2,
            delivered: 0
        }
    );
    assert_eq!(net.rpc_count(7), 0);
    assert_eq!(net.traffic(7), Traffic::default());

    // A new endpoint for node 1 restarts its delivered count, as a restarted server's.
    drop(eps.remove(1));
    eps.insert(1, net.endpoint(1, 0).expect("id"));
    assert_eq!(net.rpc_count(1), 0);
    eps[0].send(1, request(7));
    assert_eq!(net.rpc_count(1), 1);
    assert_eq!(
        recv_all(&eps[1]),
        vec![(0, request(7))],
        "nothing the old endpoint had reaches the new one"
    );
    assert_eq!(net.rpc_total(), 6, "the total does not restart");
}

#[test]
fn messages_on_their_way_never_reach_a_new_incarnation() {
    let net = Network::new(NetworkConfig::new(2)).expect("config");
    let mut eps: Vec<_> = (0..2).map(|i| net.endpoint(i, 0).expect("id")).collect();
    net.connect(0);
    net.connect(1);
    net.set_reliable(false); // requests delayed by up to 26 ms
    for seq in 0..100 {
        eps[0].send(1, request(seq));
        eps[1].send(0, request(1000 + seq));
    }
    // Node 1 restarts: its old endpoint goes, a new one comes.
    drop(eps.remove(1));
    eps.insert(1, net.endpoint(1, 0).expect("id"));
    // Longer than any delay of the unreliable network: whatever was on its way is due.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        recv_all(&eps[1]),
        vec![],
        "none of what was sent to the old incarnation reaches the new one"
    );
    let from_old = recv_all(&eps[0]).len();
    assert!(
        from_old < 90,
        "what the old incarnation sent was still on its way, and is dropped ({from_old} arrived)"
    );
    net.set_reliable(true);
    eps[1].send(0, request(501));
    assert_eq!(recv_all(&eps[0]), vec![(1, request(501))]);
}

#[test]
fn inbox_overflow_drops_are_counted() {
    let net = Network::new(NetworkConfig {
        inbox_capacity: 4,
        ..NetworkConfig::new(2)
    })
    .expect("config");
    let mut sender = net.endpoint(0, 0).expect("id");
    let receiver = net.endpoint(1, 0).expect("id");
    net.connect(0);
    net.connect(1);
    for seq in 0..10 {
        sender.send(1, request(seq));
    }
    assert_eq!(net.overflow_drops(), 6);
    assert_eq!(net.rpc_total(), 10);
    assert_eq!(net.rpc_count(1), 4, "only delivered requests count");
    let got: Vec<u64> = recv_all(&receiver).iter().map(|(_, m)| m.seq).collect();
    assert_eq!(got, vec![0, 1, 2, 3], "the first ones, in order");
    sender.send(1, reply(10));
    assert_eq!(recv_all(&receiver), vec![(0, reply(10))], "room again");
    assert_eq!(net.overflow_drops(), 6);
}

// ---- waking ------------------------------------------------------------------------------------

#[test]
fn waker_wakes_a_waiting_endpoint() {
    // The contract: publish the work (here a flag the owner's `has_work` reads), then wake.
    for case in 0..20 {
        let (_net, mut eps) = connected(2);
        let owner = eps.remove(1);
        let waker = owner.waker();
        let work = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let owner_work = work.clone();
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            while !owner_work.load(Ordering::Acquire) {
                owner.wait(
                    Some(start + Duration::from_secs(20)),
                    Duration::ZERO,
                    &|| owner_work.load(Ordering::Acquire),
                );
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "case {case}: never woken"
                );
            }
            tx.send(start.elapsed()).expect("main thread waits");
            owner
        });
        // Alternate between waking before and (probably) after the owner parks.
        if case % 2 == 1 {
            std::thread::sleep(Duration::from_millis(2));
        }
        work.store(true, Ordering::Release);
        waker.wake();
        let waited = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the waker did not wake the owner");
        assert!(
            waited < Duration::from_secs(10),
            "case {case}: woken, not timed out"
        );
        let owner = thread.join().expect("no panic");
        assert!(
            owner.try_recv().is_none(),
            "case {case}: a wake is not a message"
        );
    }
}

#[test]
fn a_message_wakes_a_waiting_endpoint() {
    let (_net, mut eps) = connected(2);
    let owner = eps.remove(1);
    let mut sender = eps.remove(0);
    let thread = std::thread::spawn(move || {
        let start = Instant::now();
        while !owner.has_messages() {
            owner.wait(
                Some(start + Duration::from_secs(20)),
                Duration::from_micros(50),
                &|| false,
            );
            assert!(start.elapsed() < Duration::from_secs(10), "never woken");
        }
        owner.try_recv()
    });
    sender.send(1, reply(1));
    let got = thread.join().expect("no panic");
    assert_eq!(got, Some((0, reply(1))));
}

#[test]
fn wait_returns_by_its_deadline() {
    let (_net, eps) = connected(1);
    let start = Instant::now();
    eps[0].wait(Some(start), Duration::ZERO, &|| false);
    eps[0].wait(
        Some(start + Duration::from_millis(10)),
        Duration::from_millis(2),
        &|| false,
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "wait outlived its deadline"
    );
}

// ---- shutdown ----------------------------------------------------------------------------------

#[test]
fn dropping_the_network_stops_its_scheduler() {
    let (net, mut eps) = connected(2);
    net.set_long_reordering(true);
    for seq in 0..50 {
        eps[0].send(1, reply(seq));
    }
    let before = recv_all(&eps[1]).len();
    assert!(before < 50, "some replies are held in the scheduler");

    // The endpoints still hold the shared state, so only the drop itself can stop the
    // scheduler. It joins the thread: if the thread did not end, the drop would not return.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        drop(net);
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("dropping the network did not stop its scheduler");

    // The network is gone: sends are accepted and lost, and the held replies never come.
    eps[0].send(1, request(99));
    assert!(recv_all(&eps[1]).is_empty());
    assert!(!eps[1].has_messages());
}
