//! The [`StateMachine`] of a node of the service: applies committed commands
//! (the `command` module) to the store (the `store` module: the map and the client sessions)
//! held in the shared [`KvState`] that a [`crate::KvServer`] reads, and records each entry's
//! outcome there for the request that proposed it.

use std::sync::Arc;

use bytes::Bytes;
use zeroraft_engine::storage::Snapshot;
use zeroraft_engine::{RestoreError, SnapshotView, StateMachine};

use crate::state::KvState;
use crate::store::{Outcome, Store};

/// The [`StateMachine`] of a node of the service: applies committed commands to the
/// [`KvState`] it was made from ([`KvState::machine`]), on the node's thread, and tells the
/// server's threads waiting in that state how far it has applied once per batch.
#[derive(Debug)]
pub struct KvMachine {
    state: Arc<KvState>,
}

impl KvState {
    /// The state machine to start this node's [`zeroraft_engine::Raft`] with
    /// ([`zeroraft_engine::Builder::start_with_state_machine`]): it applies committed commands to
    /// this state.
    pub fn machine(self: &Arc<Self>) -> KvMachine {
        KvMachine {
            state: self.clone(),
        }
    }
}

impl StateMachine for KvMachine {
    fn apply(&mut self, index: u64, term: u64, command: &Bytes) {
        let outcome = self.state.lock().store.apply(index, command);
        self.state.record_entry(index, term, &outcome);
        if let Outcome::Malformed(e) = outcome {
            tracing::warn!(index, term, error = %e, "skipping a committed entry that is not a command");
        }
    }

    fn flush(&mut self, last_index: u64) {
        self.state.set_applied(last_index, None);
    }

    fn snapshot(&mut self) -> Option<Bytes> {
        Some(self.state.lock().store.snapshot())
    }

    /// A copy-on-write view of the store, taken under the state's lock for as long as it takes
    /// to count 256 references (one per shard of the map) and copy the sessions; serialized on the
    /// node's snapshot thread, without the lock.
    fn snapshot_view(&mut self) -> Option<SnapshotView> {
        let view = self.state.lock().store.view();
        Some(SnapshotView::deferred(move || view.snapshot()))
    }

    fn restore(&mut self, snapshot: &Snapshot) -> Result<(), RestoreError> {
        let store = Store::restore(snapshot.data.clone()).map_err(|e| {
            RestoreError::new(format!("not a snapshot of the key-value service: {e}"))
        })?;
        self.state.set_applied(snapshot.index, Some(store));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SessionOptions;
    use crate::command::{Command, Op, encode_register};

    fn put(seq: u64, key: &str, value: &str) -> Bytes {
        Command {
            op: if seq.is_multiple_of(3) {
                Op::Append
            } else {
                Op::Put
            },
            session: 1,
            seq,
            ack: seq,
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
        }
        .encode(seq)
    }

    /// A view taken at an index serializes the state at that index, however much is applied
    /// while it is serialized on another thread.
    #[test]
    fn a_snapshot_view_is_the_state_at_its_index_while_writes_go_on() {
        let state = Arc::new(KvState::new());
        let mut machine = state.machine();
        let register = encode_register(0, &SessionOptions::default(), &mut Default::default());
        machine.apply(1, 1, &register);
        for seq in 1..=2_000u64 {
            machine.apply(
                1 + seq,
                1,
                &put(seq, &format!("k{}", seq % 500), &seq.to_string()),
            );
        }
        machine.flush(2_001);
        let at_view = state.lock().store.snapshot();
        let view = machine
            .snapshot_view()
            .expect("the service always snapshots");
        let serializer = std::thread::spawn(move || view.serialize());
        // Writes go on: every key changes, new keys come, while the view is serialized.
        for seq in 2_001..=6_000u64 {
            let index = 1 + seq;
            machine.apply(index, 2, &put(seq, &format!("k{}", seq % 700), "later"));
        }
        machine.flush(6_001);
        let data = serializer.join().unwrap();
        let expected = Store::restore(at_view).unwrap();
        assert_eq!(
            Store::restore(data).unwrap(),
            expected,
            "the state at the view"
        );
        assert_eq!(expected.get(b"k1"), Some(&b"1501"[..]));
        assert!(state.get(b"k1").unwrap().starts_with(b"later"));
        assert_eq!(state.len(), 700);
    }

    #[test]
    fn the_machine_applies_publishes_and_restores_through_the_shared_state() {
        let state = Arc::new(KvState::new());
        let mut machine = state.machine();
        let put = Command {
            op: Op::Put,
            session: 2,
            seq: 1,
            ack: 1,
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"v"),
        };
        machine.apply(1, 1, &Bytes::new());
        let register = encode_register(1, &SessionOptions::default(), &mut Default::default());
        machine.apply(2, 1, &register);
        machine.apply(3, 1, &put.encode(2));
        machine.apply(4, 1, &Bytes::from_static(b"garbage"));
        machine.flush(4);
        assert_eq!(state.applied_index(), 4);
        assert_eq!(state.get(b"k"), Some(Bytes::from_static(b"v")));
        assert_eq!(state.session_ack(2), Some(1));
        assert_eq!(state.session_count(), 1);
        let data = machine.snapshot().unwrap();

        let other = Arc::new(KvState::new());
        let mut restored = other.machine();
        restored
            .restore(&Snapshot {
                index: 4,
                term: 1,
                data,
            })
            .unwrap();
        assert_eq!(other.applied_index(), 4);
        assert_eq!(other.get(b"k"), Some(Bytes::from_static(b"v")));
        assert_eq!(other.session_ack(2), Some(1));
        let garbage = Snapshot {
            index: 5,
            term: 1,
            data: Bytes::from_static(b"nope"),
        };
        assert!(restored.restore(&garbage).is_err());
        assert_eq!(
            other.applied_index(),
            4,
            "a refused snapshot changes nothing"
        );
    }
}
