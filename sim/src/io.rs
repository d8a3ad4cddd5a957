//! [`SimIo`]: one node's side of a driver step in the simulation. The simulator drives every
//! core with the same [`driver::advance`](zeroraft_engine::driver::advance) as the node's
//! thread, so it checks the order of calls that ships; only the I/O differs: messages go on the
//! simulated network (each checked against what the node has made durable), writes go to the
//! node's simulated disk and complete later, and the checker plays the service, comparing
//! every snapshot restored and every entry applied with what was committed.

use std::collections::HashMap;

use bytes::Bytes;
use zeroraft_engine::core::{Core, Hooks, Message, Persist, ReadOutcome, Role, Snapshot};
use zeroraft_engine::driver::Io;

use crate::Nanos;
use crate::checker::{self, Checker, Failure, Invariant};
use crate::event::{EventKind, EventLog, MsgSummary};
use crate::network::{Network, Sent};
use crate::scenario::Snapshots;
use crate::storage::{Disk, DiskLatency};

/// Node `i`'s side of one driver step: the parts of the simulation it touches, borrowed for
/// the step.
pub(crate) struct SimIo<'a> {
    pub i: usize,
    pub now: Nanos,
    /// The node's term and role in this step (a driver step changes neither), for reports.
    pub term: u64,
    pub role: Role,
    /// The write that completed, to report to the core, if the step is for one.
    pub completed: Option<u64>,
    /// Whether the step started a write.
    pub wrote: bool,
    pub disk: &'a mut Disk,
    pub latency: &'a DiskLatency,
    pub snapshots: Option<Snapshots>,
    /// The snapshot the node's service is serializing: (done at, index, data).
    pub serializing: &'a mut Option<(Nanos, u64, Bytes)>,
    pub rng: &'a mut fastrand::Rng,
    pub net: &'a mut Network,
    pub checker: &'a mut Checker,
    pub log: &'a mut EventLog,
    /// Reads asked for and not yet answered: id -> (node asked, highest index committed
    /// anywhere when asked).
    pub reads: &'a mut HashMap<u64, (usize, u64)>,
    /// Reads asked, confirmed, and confirmed under a lease.
    pub read_counts: &'a mut [u64; 3],
}

impl<H: Hooks> Io<H> for SimIo<'_> {
    type Error = Failure;

    /// Checks that the node has made durable what the message tells (persist before you
    /// speak), then puts it on the network.
    fn send(&mut self, to: usize, msg: Message) -> Result<(), Failure> {
        let i = self.i;
        self.checker.sent(i, to, &msg, self.disk.hard_state())?;
        let summary = MsgSummary::of(&msg);
        if let Sent::Dropped(reason) = self.net.send(self.rng, self.now, i, to, msg) {
            self.log.push(
                self.now,
                EventKind::Drop {
                    from: i,
                    to,
                    msg: summary,
                    reason,
                },
            );
        }
        Ok(())
    }

    fn poll_write(&mut self) -> Result<Option<u64>, Failure> {
        Ok(self.completed.take())
    }

    /// A simulated disk takes writes while earlier ones are still in progress (a pipelined
    /// writer), and completes them in order.
    fn can_write(&self) -> bool {
        true
    }

    fn write(&mut self, core: &Core<H>, persist: Persist) -> Result<bool, Failure> {
        let update = core.update(&persist);
        self.disk.start(
            persist.generation,
            &update,
            self.now,
            self.latency,
            self.rng,
        );
        self.wrote = true;
        Ok(false)
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), Failure> {
        let (node, index) = (self.i, snapshot.index);
        self.log.push(self.now, EventKind::Install { node, index });
        self.checker.restore(self.i, snapshot)
    }

    fn apply(&mut self, core: &Core<H>, from: u64, to: u64) -> Result<(), Failure> {
        self.checker.apply(self.i, core, from, to)
    }

    /// Checks a confirmed read: its index covers every index committed anywhere when the read
    /// was asked for.
    fn read_outcome(
        &mut self,
        outcome: ReadOutcome,
        _leader: Option<usize>,
    ) -> Result<(), Failure> {
        let i = self.i;
        let Some((asked, committed)) = self.reads.remove(&outcome.id) else {
            return Ok(());
        };
        self.log.push(
            self.now,
            EventKind::ReadDone {
                node: i,
                id: outcome.id,
                index: outcome.index,
            },
        );
        debug_assert_eq!(asked, i);
        let Some(index) = outcome.index else {
            return Ok(());
        };
        self.read_counts[1] += 1;
        if index < committed {
            let (term, role) = (self.term, self.role);
            return Err(Failure {
                invariant: Invariant::ReadFreshness,
                nodes: vec![i],
                detail: format!(
                    "node {i} (term {term}, {role:?}) confirmed read #{} at index {index}, but \
                     index {committed} was committed before the read was asked for",
                    outcome.id
                ),
            });
        }
        Ok(())
    }

    /// The node's service snapshots what it applied every [`Snapshots::every`] entries: data
    /// the checker can verify when another node installs it. It takes the view at the index
    /// applied now and hands it over [`Snapshots::delay`] later; none is taken while one is
    /// being serialized.
    fn snapshot(&mut self, core: &Core<H>) -> Result<Option<(u64, Bytes)>, Failure> {
        let Some(snapshots) = self.snapshots else {
            return Ok(None);
        };
        if let Some((done_at, ..)) = self.serializing {
            if *done_at > self.now {
                return Ok(None);
            }
            let (_, index, data) = self.serializing.take().expect("checked above");
            return Ok(Some((index, data)));
        }
        let applied = core.last_applied();
        if applied < core.log().offset() + snapshots.every {
            return Ok(None);
        }
        let hash = self.checker.applied_hash(self.i);
        let data = checker::snapshot_data(applied, hash, snapshots.padding);
        if snapshots.delay == 0 {
            return Ok(Some((applied, data)));
        }
        *self.serializing = Some((self.now + snapshots.delay, applied, data));
        Ok(None)
    }
}
