//! Why a node stopped on its own ([`NodeFailure`]), and why a state machine refused a snapshot
//! ([`RestoreError`]).
//!
//! A node stops by itself only when going on could break a promise it made: a write its storage
//! could not make durable (the node cannot tell what reached the disk), a snapshot its state
//! machine cannot restore (later entries would apply to the wrong state), or a panic on its
//! thread (a state machine's, or a broken invariant of the engine's own). The failure is kept:
//! [`crate::Raft::failure`] returns it, and [`crate::StartError::Failed`] and
//! [`crate::ReadError::Failed`] carry it, so a caller can match on what happened; its
//! `Display` is the text an operator reads (also in [`crate::Status::failure`]).

use std::error::Error;
use std::fmt;
use std::sync::Arc;

use zeroraft_storage::StorageError;

/// Why a node stopped on its own. Cheap to clone: the storage error and the restore error are
/// shared.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum NodeFailure {
    /// The storage could not make a write durable.
    Storage(Arc<StorageError>),
    /// The writer thread that writes to storage has stopped (its storage panicked).
    WriterStopped,
    /// The state machine refused the snapshot at `index` ([`crate::StateMachine::restore`]).
    RestoreRefused {
        /// The snapshot's last index.
        index: u64,
        /// What the state machine said.
        error: RestoreError,
    },
    /// The state machine panicked (in `apply`, `flush`, `snapshot`, `snapshot_view` or
    /// `restore`, or while a deferred snapshot view was serialized).
    StateMachinePanic {
        /// The panic's message.
        message: String,
    },
    /// The node's thread panicked outside the state machine: an invariant of the engine broke.
    Panic {
        /// The panic's message.
        message: String,
    },
}

impl NodeFailure {
    /// Whether the storage failed because the disk is full.
    pub fn is_storage_full(&self) -> bool {
        matches!(self, Self::Storage(e) if e.is_storage_full())
    }
}

impl fmt::Display for NodeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Storage(e) => write!(f, "storage failed: {e}"),
            Self::WriterStopped => write!(f, "storage failed: its writer thread has stopped"),
            Self::RestoreRefused { index, error } => {
                write!(
                    f,
                    "the state machine cannot restore snapshot {index}: {error}"
                )
            }
            Self::StateMachinePanic { message } => {
                write!(f, "the state machine panicked: {message}")
            }
            Self::Panic { message } => write!(f, "the node's thread panicked: {message}"),
        }
    }
}

impl Error for NodeFailure {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Storage(e) => Some(&**e),
            Self::RestoreRefused { error, .. } => Some(error),
            Self::WriterStopped | Self::StateMachinePanic { .. } | Self::Panic { .. } => None,
        }
    }
}

/// Two failures are equal when they are of the same kind and say the same.
impl PartialEq for NodeFailure {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Storage(a), Self::Storage(b)) => {
                Arc::ptr_eq(a, b) || a.to_string() == b.to_string()
            }
            (Self::WriterStopped, Self::WriterStopped) => true,
            (
                Self::RestoreRefused { index, error },
                Self::RestoreRefused {
                    index: other_index,
                    error: other_error,
                },
            ) => index == other_index && error == other_error,
            (Self::StateMachinePanic { message: a }, Self::StateMachinePanic { message: b })
            | (Self::Panic { message: a }, Self::Panic { message: b }) => a == b,
            _ => false,
        }
    }
}

impl Eq for NodeFailure {}

/// Why a state machine cannot restore a snapshot ([`crate::StateMachine::restore`]): any error
/// of the state machine's own, or a message.
///
/// ```
/// use zeroraft_engine::RestoreError;
///
/// let refused = RestoreError::new("not a snapshot of this service");
/// assert_eq!(refused.to_string(), "not a snapshot of this service");
/// let parsed: Result<u32, _> = "x".parse::<u32>();
/// let refused = RestoreError::new(parsed.unwrap_err());
/// assert_eq!(refused.to_string(), "invalid digit found in string");
/// ```
#[derive(Clone)]
pub struct RestoreError(Arc<dyn Error + Send + Sync>);

impl RestoreError {
    /// A refusal for `reason`: an error value, or a message (`&str` or `String`).
    pub fn new(reason: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self(Arc::from(reason.into()))
    }
}

impl fmt::Debug for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RestoreError").field(&self.0).finish()
    }
}

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Error for RestoreError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.source()
    }
}

/// Two refusals are equal when they say the same.
impl PartialEq for RestoreError {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}

impl Eq for RestoreError {}
