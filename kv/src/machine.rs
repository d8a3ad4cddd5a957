//! The [`StateMachine`] of a node of the service: applies committed commands
//! (the `command` module) to the store (the `store` module: the map and the client sessions)
//! held in the shared [`KvState`] that a [`crate::KvServer`] reads, and records each entry's
//! outcome there for the request that proposed it.

use std::sync::Arc;

use bytes::Bytes;
use zeroraft_engine::storage::Snapshot;
use zeroraft_engine::{RestoreError, SnapshotView, StateMachine};

use crate::members::MemberChange;
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
        match outcome {
            Outcome::Malformed(e) => {
                tracing::warn!(index, term, error = %e, "skipping a committed entry that is not a command");
            }
            Outcome::Member {
                change,
                admitted: true,
            } => {
                tracing::info!(index, ?change, "address book changed");
                self.state.member_changed(&change);
            }
            Outcome::Member {
                change,
                admitted: false,
            } => {
                tracing::warn!(index, ?change, "refused addresses for a removed node id");
            }
            _ => {}
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
        let changes: Vec<MemberChange> = store
            .book()
            .members()
            .map(|(id, addrs)| MemberChange::Set { id, addrs: *addrs })
            .chain(store.book().removed().map(|id| MemberChange::Retire { id }))
            .collect();
        self.state.set_applied(snapshot.index, Some(store));
        for change in &changes {
            self.state.member_changed(change);
        }
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
                config: None,
            })
            .unwrap();
        assert_eq!(other.applied_index(), 4);
        assert_eq!(other.get(b"k"), Some(Bytes::from_static(b"v")));
        assert_eq!(other.session_ack(2), Some(1));
        let garbage = Snapshot {
            index: 5,
            term: 1,
            data: Bytes::from_static(b"nope"),
            config: None,
        };
        assert!(restored.restore(&garbage).is_err());
        assert_eq!(
            other.applied_index(),
            4,
            "a refused snapshot changes nothing"
        );
    }

    /// Address-book commands reach the hook as they are applied, a removed id gets no
    /// addresses again, and the book travels in the snapshot (format 3) to a node that restores
    /// it, whose hook is told the whole book; a store without a book still writes format 2.
    #[test]
    fn the_address_book_is_applied_told_and_kept_in_snapshots() {
        use crate::command::encode_member;
        use crate::members::MemberAddrs;
        use std::sync::Mutex;

        let told = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new(KvState::new());
        {
            let told = told.clone();
            assert!(state.on_member(move |c| told.lock().unwrap().push(*c)));
        }
        let mut machine = state.machine();
        machine.apply(1, 1, &Bytes::new());
        assert_eq!(
            machine.snapshot().unwrap()[0],
            crate::command::FORMAT_VERSION,
            "no book: format 2"
        );
        let addrs = |port: u16| MemberAddrs {
            peer: ([127, 0, 0, 1], port).into(),
            client: ([127, 0, 0, 1], port + 1).into(),
        };
        let changes = [
            MemberChange::Set {
                id: 3,
                addrs: addrs(7003),
            },
            MemberChange::Retire { id: 0 },
            // Refused: 0 was removed.
            MemberChange::Set {
                id: 0,
                addrs: addrs(7000),
            },
        ];
        for (i, change) in changes.iter().enumerate() {
            machine.apply(2 + i as u64, 1, &encode_member(9, change));
        }
        machine.flush(4);
        assert_eq!(
            *told.lock().unwrap(),
            changes[..2].to_vec(),
            "the admitted changes, in order"
        );
        let book = state.address_book();
        assert_eq!(book.get(3), Some(&addrs(7003)));
        assert!(book.is_removed(0) && book.get(0).is_none());

        let data = machine.snapshot().unwrap();
        assert_eq!(data[0], 3, "a book: format 3");
        let other = Arc::new(KvState::new());
        let told_other = Arc::new(Mutex::new(Vec::new()));
        {
            let told = told_other.clone();
            other.on_member(move |c| told.lock().unwrap().push(*c));
        }
        other
            .machine()
            .restore(&Snapshot {
                index: 4,
                term: 1,
                data,
                config: None,
            })
            .unwrap();
        assert_eq!(other.address_book(), book);
        assert_eq!(*told_other.lock().unwrap(), changes[..2].to_vec());
    }
}
