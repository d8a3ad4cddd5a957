//! The [`StateMachine`] of a node of the service: applies committed commands
//! (the `command` module) to the store (the `store` module: the map and the client sessions)
//! held in the shared [`KvState`] that a [`crate::KvServer`] reads, and records each entry's
//! outcome there for the request that proposed it.

use std::sync::Arc;

use bytes::Bytes;
use zeroraft_engine::storage::Snapshot;
use zeroraft_engine::{RestoreError, StateMachine};

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
