//! One driver step: the order in which whoever drives a [`Core`] takes its outputs, written
//! once and used by both drivers, the node's thread ([`crate::Raft`]) and the deterministic
//! simulator. A driver feeds the core its inputs (messages, ticks, proposals, reads, completed
//! writes), then calls [`advance`], which hands every output to the driver's [`Io`] in this
//! order:
//!
//! 1. **Completed writes** ([`Io::poll_write`]): each is reported to the core
//!    ([`Core::persisted`]), which releases the messages that waited for it and, on a leader,
//!    counts the entries toward commitment.
//! 2. **Messages that may go now** ([`Io::send`]), before this step's write: a leader's
//!    AppendEntries need not wait for its own disk (Raft thesis §10.2.1), while everything that
//!    reports this node's state is held by the core until its write is durable.
//! 3. **This step's write** ([`Io::write`]): everything the core changed since the last one, as
//!    one write (group commit), if the driver can take one now ([`Io::can_write`]). A write that
//!    is durable as soon as it returns is reported at once, and the messages it released go out.
//! 4. **The service**: a snapshot it must restore first ([`Io::restore`]), then the committed
//!    entries not yet applied, in order ([`Io::apply`]).
//! 5. **Reads** the core confirmed or refused ([`Io::read_outcome`]), once the entries before
//!    them are applied.
//! 6. **Compaction**: a snapshot of the service to replace the log up to an applied index, if
//!    the driver has one ([`Io::snapshot`]: the runtime's may have been serialized on another
//!    thread while later entries were applied), and the write that stores it (as in 3).
//!
//! The order matters in two places. Messages go out in 2 before the write of 3 starts, so a
//! leader's replication overlaps its own `fdatasync`; and entries are applied in 4 only after
//! 1 reported what became durable, so a single node applies what it wrote in the same step.

use bytes::Bytes;

use crate::core::{Core, Hooks, Message, NoBugs, Persist, ReadOutcome, Snapshot};

/// What a driver does with a core's outputs: the I/O [`advance`] asks for, in its order.
pub trait Io<H: Hooks = NoBugs> {
    /// Why the node must stop (a write that failed, a snapshot the service refused). [`advance`]
    /// returns it at once, leaving the rest of the step undone.
    type Error;

    /// Sends `msg` to node `to`.
    ///
    /// # Errors
    ///
    /// Whatever the driver makes of a message it must not send (the simulator's checker does).
    fn send(&mut self, to: usize, msg: Message) -> Result<(), Self::Error>;

    /// The generation of a write that completed since the last call, if one did (writes
    /// complete in the order they were started).
    ///
    /// # Errors
    ///
    /// The write failed: whether it reached stable storage is unknown.
    fn poll_write(&mut self) -> Result<Option<u64>, Self::Error>;

    /// Whether a write may start now: a driver that writes one at a time answers no while one
    /// is under way.
    fn can_write(&self) -> bool;

    /// Starts the write `persist` describes, reading its entries and snapshot from `core` now
    /// ([`Core::update`]). Returns whether it is durable already (a write made on the caller's
    /// thread); otherwise [`Io::poll_write`] returns its generation later.
    ///
    /// # Errors
    ///
    /// The write failed.
    fn write(&mut self, core: &Core<H>, persist: Persist) -> Result<bool, Self::Error>;

    /// Hands the service the snapshot it must restore before any later entry: one a leader
    /// installed here, or the one the node restarted from.
    ///
    /// # Errors
    ///
    /// The service cannot restore it.
    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), Self::Error>;

    /// Applies the committed entries `from..=to` of `core`'s log, in order.
    ///
    /// # Errors
    ///
    /// Whatever the driver makes of what it found (the simulator's checker compares the entries
    /// with what was committed).
    fn apply(&mut self, core: &Core<H>, from: u64, to: u64) -> Result<(), Self::Error>;

    /// A read the core confirmed (with its read index) or refused; `leader` is the leader this
    /// node knows of, for a refusal to name.
    ///
    /// # Errors
    ///
    /// Whatever the driver makes of it (the simulator checks the read index).
    fn read_outcome(
        &mut self,
        outcome: ReadOutcome,
        leader: Option<usize>,
    ) -> Result<(), Self::Error>;

    /// The service's snapshot to compact the log with, `(index, data)` with `index` applied,
    /// if one is ready. `index` may lie behind the last applied index (a snapshot serialized
    /// while later entries were applied: they stay in the log), and below the log's offset (a
    /// snapshot installed from a leader overtook it: [`Core::compact`] ignores it). `None` by
    /// default.
    ///
    /// # Errors
    ///
    /// The service failed to make it.
    fn snapshot(&mut self, core: &Core<H>) -> Result<Option<(u64, Bytes)>, Self::Error> {
        let _ = core;
        Ok(None)
    }
}

/// One driver step after the core took its inputs: hands every output to `io`, in the order
/// the module documentation gives.
///
/// # Errors
///
/// The first error `io` returns; the rest of the step is not done (the node is to stop).
pub fn advance<H: Hooks, D: Io<H>>(core: &mut Core<H>, io: &mut D) -> Result<(), D::Error> {
    while let Some(generation) = io.poll_write()? {
        core.persisted(generation);
    }
    send(core, io)?;
    write(core, io)?;
    if let Some(snapshot) = core.snapshot_to_apply() {
        io.restore(snapshot)?;
        core.snapshot_applied();
    }
    if let Some((from, to)) = core.apply_range() {
        io.apply(core, from, to)?;
        core.advance_applied(to);
    }
    let leader = core.leader();
    for outcome in core.take_read_outcomes() {
        io.read_outcome(outcome, leader)?;
    }
    if let Some((index, data)) = io.snapshot(core)?
        && core.compact(index, data)
    {
        write(core, io)?;
    }
    Ok(())
}

/// Sends every message the core may send now.
fn send<H: Hooks, D: Io<H>>(core: &mut Core<H>, io: &mut D) -> Result<(), D::Error> {
    for (to, msg) in core.take_messages() {
        io.send(to, msg)?;
    }
    Ok(())
}

/// Starts the write of what the core changed, if anything did and the driver can take a write;
/// one that completed at once is reported, and what it released is sent.
fn write<H: Hooks, D: Io<H>>(core: &mut Core<H>, io: &mut D) -> Result<(), D::Error> {
    if !io.can_write() {
        return Ok(());
    }
    let Some(persist) = core.take_persist() else {
        return Ok(());
    };
    let generation = persist.generation;
    if io.write(core, persist)? {
        core.persisted(generation);
        send(core, io)?;
    }
    Ok(())
}
