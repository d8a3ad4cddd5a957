//! Idle cost: a 5-node cluster with a leader and nothing to do (heartbeats only) must use under
//! 1% of one core. Alone in its binary, so that the process CPU clock sees only this cluster.
//! Measured over 3 s (30 heartbeat rounds) by default, 10 s with `ZERORAFT_LONG=1`
//! (`ZERORAFT_IDLE_SECONDS=N` sets it).

use std::time::{Duration, Instant};

use zeroraft::Config;
use zeroraft_harness::load::LoadCluster;
use zeroraft_harness::scale;

#[test]
fn idle_five_node_cluster_uses_under_one_percent_of_a_core() {
    let cluster = LoadCluster::new(5, Config::default());
    // Let the election settle before measuring.
    std::thread::sleep(Duration::from_secs(1));
    let (wall0, cpu0) = (Instant::now(), cpu_time::ProcessTime::now());
    // The measurement itself: seconds of heartbeats.
    let seconds = scale::size("ZERORAFT_IDLE_SECONDS", 3, 10);
    std::thread::sleep(Duration::from_secs(seconds));
    let (wall, cpu) = (wall0.elapsed(), cpu0.elapsed());
    let share = cpu.as_secs_f64() / wall.as_secs_f64();
    println!(
        "idle 5-node cluster: {:.3} ms CPU over {:.1} s = {:.3}% of one core",
        cpu.as_secs_f64() * 1e3,
        wall.as_secs_f64(),
        share * 100.0
    );
    assert!(
        share < 0.01,
        "idle cluster used {:.3}% of one core",
        share * 100.0
    );
    // Still a leader after the measurement: leader() panics if there is none within 10 s.
    cluster.leader();
}
