//! Log replication (§5.3 of the extended Raft paper): the AppendEntries receiver, the leader,
//! pipelining, fast backtracking and stale replies, one file each; here, whole clusters.

use super::*;

mod backtracking;
mod follower;
mod inflight_bytes;
mod leader;
mod pipelining;

#[test]
fn three_nodes_elect_replicate_commit_and_apply() {
    let mut sim = Sim::new(3);
    sim.fire(1);
    sim.settle(&[]);
    assert_eq!(sim.leaders(), vec![1]);
    assert!(
        sim.cores
            .iter()
            .all(|c| c.term() == 1 && c.leader() == Some(1))
    );

    let batch = commands(3);
    assert_eq!(sim.cores[1].propose(sim.now, batch.clone()), Some((1, 3)));
    sim.collect();
    sim.settle(&[]);
    assert_eq!(sim.cores[1].commit_index(), 3, "leader commits");
    // Followers learn the commit index from the next AppendEntries.
    sim.fire(1);
    sim.settle(&[]);
    for core in &mut sim.cores {
        assert_eq!(core.commit_index(), 3, "node {}", core.id());
        assert_eq!(core.apply_range(), Some((1, 3)), "node {}", core.id());
        assert_eq!(log_commands(core), batch, "node {}", core.id());
        core.advance_applied(3);
    }
}

#[test]
fn the_same_inputs_give_the_same_outputs() {
    let run = || {
        let mut sim = Sim::new(5);
        let mut transcript = Vec::new();
        for round in 0..4 {
            let next = (0..5)
                .min_by_key(|&i| sim.cores[i].next_deadline())
                .expect("nodes");
            sim.fire(next);
            if let Some(&leader) = sim.leaders().first() {
                sim.cores[leader].propose(sim.now, commands(round + 1));
                sim.collect();
            }
            while let Some((from, to, msg)) = sim.queue.pop_front() {
                transcript.push((sim.now, from, to, msg.clone()));
                sim.cores[to].step(sim.now, from, msg);
                sim.collect();
            }
        }
        transcript
    };
    let first = run();
    assert!(
        first.len() > 10,
        "something happened: {} messages",
        first.len()
    );
    assert_eq!(first, run());
}
