//! The [`StateMachine`] of a node of the service: applies committed commands
//! (the `command` module) to the store (the `store` module) held in the shared [`KvState`] that a
//! [`crate::KvServer`] reads.

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
        let outcome = self.state.lock().store.apply(command);
        self.state.record_term(index, term);
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
    use crate::command::{Command, Op};

    fn command(op: Op, client: u64, seq: u64, key: &str, value: &str) -> Bytes {
        Command {
            op,
            client,
            seq,
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
        }
        .encode()
    }

    #[test]
    fn the_machine_applies_publishes_and_restores_through_the_shared_state() {
        let state = Arc::new(KvState::new());
        let mut machine = state.machine();
        machine.apply(1, 1, &Bytes::new());
        machine.apply(2, 1, &command(Op::Put, 1, 1, "k", "v"));
        machine.apply(3, 1, &Bytes::from_static(b"garbage"));
        machine.flush(3);
        assert_eq!(state.applied_index(), 3);
        assert_eq!(state.get(b"k"), Some(Bytes::from_static(b"v")));
        let data = machine.snapshot().unwrap();

        let other = Arc::new(KvState::new());
        let mut restored = other.machine();
        restored
            .restore(&Snapshot {
                index: 3,
                term: 1,
                data,
            })
            .unwrap();
        assert_eq!(other.applied_index(), 3);
        assert_eq!(other.get(b"k"), Some(Bytes::from_static(b"v")));
        assert_eq!(other.last_seq(1), Some(1));
        let garbage = Snapshot {
            index: 4,
            term: 1,
            data: Bytes::from_static(b"nope"),
        };
        assert!(restored.restore(&garbage).is_err());
        assert_eq!(
            other.applied_index(),
            3,
            "a refused snapshot changes nothing"
        );
    }
}
