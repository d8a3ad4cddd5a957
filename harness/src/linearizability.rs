//! A linearizability checker for histories of a replicated key-value service (Get, Put and
//! Append on string keys, as in MIT 6.824 lab 3), for Jepsen-style tests that record what their
//! clients saw under kills and partitions.
//!
//! A test records each client operation with [`Recorder`] (or builds [`Operation`]s itself): the
//! time it was invoked, and either what it returned and when, or that the client never learned
//! its outcome ([`Outcome::Unknown`]: a timeout, a crash, a partition). [`check_kv`] then decides
//! whether some total order of the operations respects real time (an operation that returned
//! before another was invoked comes first) and explains every result by a single copy of the
//! store. It answers [`Verdict::Linearizable`], [`Verdict::NotLinearizable`] with an [`Anomaly`]
//! to debug from, or [`Verdict::Unknown`] if its time budget ran out first (the problem is
//! NP-complete in general; real histories are usually easy).
//!
//! ```
//! use std::time::Duration;
//! use zeroraft_harness::linearizability::{KvInput, KvOutput, Recorder, Verdict, check_kv};
//!
//! let recorder = Recorder::new();
//! let put = recorder.invoke(1, KvInput::Put { key: "x".into(), value: "1".into() });
//! recorder.complete(put, KvOutput::Done);
//! // A read that starts after the Put returned, and misses it.
//! let get = recorder.invoke(2, KvInput::Get { key: "x".into() });
//! recorder.complete(get, KvOutput::Value(String::new()));
//!
//! match check_kv(&recorder.into_history(), Duration::from_secs(10)) {
//!     Verdict::NotLinearizable(anomaly) => assert_eq!(anomaly.key, "x"),
//!     other => panic!("stale read not detected: {other:?}"),
//! }
//! ```
//!
//! # Why it is written here
//!
//! No maintained Rust crate fits: stateright's `LinearizabilityTester` explores interleavings
//! without P-compositionality and records histories of its own actors; `lincheck` checks loom
//! models; `todc-utils` is a small, unmaintained Wing & Gong checker that has no notion of
//! operations whose outcome is unknown, which every history with kills and partitions has.
//!
//! # The algorithm
//!
//! - Wing & Gong's search (J. M. Wing, C. Gong, "Testing and verifying concurrent objects",
//!   J. Parallel and Distributed Computing 17, 1993): depth-first over the history's call and
//!   return events in time order; at each point, an operation whose call has been seen may be
//!   linearized next if the model accepts it, and a return whose operation is not yet linearized
//!   forces a backtrack.
//! - Lowe's refinements (G. Lowe, "Testing for linearizability", Concurrency and Computation:
//!   Practice and Experience 29(4), 2017): "just-in-time" linearization over a doubly-linked list
//!   of events from which a linearized operation's call and return are lifted (and put back on
//!   backtracking), and a cache of the configurations already explored, keyed on the set of
//!   linearized operations and the model's state, so no configuration is explored twice.
//! - P-compositionality (A. Horn, D. Kroening, "Faster linearizability checking via
//!   P-compositionality", FORTE 2015): a history of a key-value store is linearizable if and only
//!   if each key's sub-history is, so [`check_kv`] partitions by key and checks each key alone;
//!   that turns one search exponential in the whole history's concurrency into small ones.
//!
//! The search is generic over a sequential specification, the [`Model`] trait; [`KvModel`] is
//! the key-value one (the model of a single key) and [`check`] runs the search for any model on
//! a history it does not partition. It is iterative (an explicit stack, so a partition of 100 000
//! operations is no deeper a recursion than one of 10), its event list is a pair of index
//! vectors, and its cache stores each set of linearized operations as the window of the bitset
//! between the operations all linearized and those not yet reached, usually a few words.
//!
//! # Time and unknown outcomes
//!
//! Times are nanoseconds since the history's start, from one monotonic clock. Equal times are
//! taken as overlapping: an operation that returned at `t` and one invoked at `t` may be
//! linearized in either order. That never reports a violation the clock could not tell apart
//! (it can miss one, at the clock's resolution). A return time before its call time is taken
//! as the call time.
//!
//! An operation with [`Outcome::Unknown`] may have taken effect at any time after its call, or
//! never: it has no return event, it is tried wherever its call allows (at each step, after the
//! operations that did return), and the history is linearizable as soon as every operation that
//! returned is placed (the rest take effect afterwards, which nothing observes, or never). Since
//! such an operation need never be placed, the search's cache skips a configuration that was
//! reached before with a subset of its unknown-outcome operations placed: whatever works from it
//! works from the other. An unknown Get constrains nothing, so [`check_kv`] drops it, along with
//! the unknown Puts and Appends whose values no Get saw.
//!
//! Unknown outcomes are still what makes a search expensive: each one still pending multiplies
//! the configurations to explore where the search backtracks. A history whose clients time out
//! by the hundred on one key while their writes' values are observed may need a larger budget,
//! or get [`Verdict::Unknown`].

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A key-value operation's input.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvInput {
    /// Read `key`; a missing key reads as `""`.
    Get {
        /// The key read.
        key: String,
    },
    /// Set `key` to `value`.
    Put {
        /// The key written.
        key: String,
        /// Its new value.
        value: String,
    },
    /// Append `value` to `key`'s value (a missing key's value being `""`).
    Append {
        /// The key appended to.
        key: String,
        /// The suffix appended.
        value: String,
    },
}

impl KvInput {
    /// The key the operation is on.
    pub fn key(&self) -> &str {
        match self {
            KvInput::Get { key } | KvInput::Put { key, .. } | KvInput::Append { key, .. } => key,
        }
    }
}

/// What a key-value operation returned.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvOutput {
    /// A Get's result (`""` for a missing key).
    Value(String),
    /// A Put or Append was acknowledged.
    Done,
}

/// How an operation ended, as its client saw it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome<O = KvOutput> {
    /// It returned `output` at time `at` (nanoseconds since the history's start).
    Returned {
        /// What it returned.
        output: O,
        /// When the client got it.
        at: u64,
    },
    /// The client never learned the result (a timeout, a crash, a partition): the operation may
    /// have taken effect at any time after its call, or never.
    Unknown,
}

/// One client operation of a history. The type parameters default to the key-value service's
/// [`KvInput`] and [`KvOutput`]; other [`Model`]s use their own.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Operation<I = KvInput, O = KvOutput> {
    /// The client that issued it (for reports only: the checker does not assume that a client's
    /// operations are sequential).
    pub client: u64,
    /// What was asked.
    pub input: I,
    /// When it was invoked, in nanoseconds since the history's start.
    pub call: u64,
    /// How it ended.
    pub outcome: Outcome<O>,
}

/// A sequential specification: the object's state and what each operation does to it.
///
/// The model must be deterministic: from a state, an input has at most one effect. The search
/// only ever calls it on states it produced, starting from [`Model::init`].
pub trait Model {
    /// The object's state. It is cloned for every step the search takes and hashed and compared
    /// in its cache, so it should be cheap to do all three.
    type State: Clone + Eq + Hash;
    /// An operation's input.
    type Input;
    /// An operation's output.
    type Output;
    /// The initial state.
    fn init(&self) -> Self::State;
    /// The state after applying `input` to `state`, if the operation can return `output` there;
    /// `None` if it cannot. `output` is `None` for an operation whose outcome is unknown: the
    /// step must then accept whatever effect the operation would have had.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;
}

/// The sequential specification of one key of the key-value service: its state is the key's
/// value. [`check_kv`] gives it the operations of one key at a time, so it ignores their keys.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvModel;

/// A key's value, with a hash kept up to date as it grows, so that the search hashes and
/// compares long appended values in constant time (and shares them rather than copying them).
#[derive(Clone, Debug)]
pub struct KeyValue {
    value: Arc<str>,
    hash: u64,
}

/// The modulus of [`KeyValue`]'s polynomial hash, the Mersenne prime 2^61 - 1.
const POLY_MOD: u64 = (1 << 61) - 1;
/// The base of that hash (any fixed residue far from 0 and 1 does).
const POLY_BASE: u64 = 0x0A5B_3C1D_9E2F_4871 % POLY_MOD;

/// Continues the polynomial hash `hash` of a string over `bytes` appended to it (Horner's rule,
/// so the hash of a concatenation is the hash of its first part continued over the second).
fn poly_extend(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        // Below 2^122, so `high` is below 2^61; as 2^61 = 1 (mod POLY_MOD), `low + high` is
        // the product modulo POLY_MOD, below 2^62, and one more fold and subtraction reduce it.
        let product = u128::from(hash) * u128::from(POLY_BASE) + u128::from(b) + 1;
        let (low, high) = (product as u64 & POLY_MOD, (product >> 61) as u64);
        let sum = low + high;
        let folded = (sum & POLY_MOD) + (sum >> 61);
        hash = if folded >= POLY_MOD {
            folded - POLY_MOD
        } else {
            folded
        };
    }
    hash
}

impl KeyValue {
    fn new(value: &str) -> Self {
        KeyValue {
            value: Arc::from(value),
            hash: poly_extend(0, value.as_bytes()),
        }
    }

    fn appended(&self, suffix: &str) -> Self {
        let mut value = String::with_capacity(self.value.len() + suffix.len());
        value.push_str(&self.value);
        value.push_str(suffix);
        KeyValue {
            value: Arc::from(value),
            hash: poly_extend(self.hash, suffix.as_bytes()),
        }
    }

    /// The key's value (`""` if never written).
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl PartialEq for KeyValue {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
            && (Arc::ptr_eq(&self.value, &other.value) || self.value == other.value)
    }
}

impl Eq for KeyValue {}

impl Hash for KeyValue {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl Model for KvModel {
    type State = KeyValue;
    type Input = KvInput;
    type Output = KvOutput;

    fn init(&self) -> KeyValue {
        KeyValue::new("")
    }

    fn step(
        &self,
        state: &KeyValue,
        input: &KvInput,
        output: Option<&KvOutput>,
    ) -> Option<KeyValue> {
        match (input, output) {
            (KvInput::Get { .. }, None) => Some(state.clone()),
            (KvInput::Get { .. }, Some(KvOutput::Value(v))) => {
                (*state.value == **v).then(|| state.clone())
            }
            (KvInput::Put { value, .. }, None | Some(KvOutput::Done)) => Some(KeyValue::new(value)),
            (KvInput::Append { value, .. }, None | Some(KvOutput::Done)) => {
                Some(state.appended(value))
            }
            // An output of the wrong kind is one no execution could have produced.
            (KvInput::Get { .. }, Some(KvOutput::Done))
            | (KvInput::Put { .. } | KvInput::Append { .. }, Some(KvOutput::Value(_))) => None,
        }
    }
}

/// The result of a check. `A` is what explains a violation: an [`Anomaly`] from [`check_kv`], a
/// [`Counterexample`] from [`check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict<A = Anomaly> {
    /// Some order of the operations respects real time and the model.
    Linearizable,
    /// No order does.
    NotLinearizable(A),
    /// The time budget ran out before the search could tell.
    Unknown,
}

/// Why a history given to [`check`] is not linearizable, as indices into it: the longest
/// linearizable prefix the search found, and the operation it could not place after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counterexample {
    /// The operations of the longest linearizable prefix found, in their linearization order.
    pub prefix: Vec<usize>,
    /// The operation that returned first among those not in the prefix: after the prefix,
    /// neither it nor any operation that could precede it can be linearized next.
    pub failed: usize,
}

/// Why a key-value history is not linearizable: the key whose operations admit no
/// linearization, and the operations to look at. Its [`Display`](fmt::Display) is a short
/// report of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anomaly {
    /// The key.
    pub key: String,
    /// The operations of the longest linearizable prefix the search found for that key, in their
    /// linearization order.
    pub prefix: Vec<Operation>,
    /// The key's value after that prefix.
    pub value: String,
    /// The operation that returned first among those not in the prefix: after the prefix,
    /// neither it nor any of the operations that could precede it (`concurrent`) can be
    /// linearized next.
    pub failed: Operation,
    /// The key's other operations not in the prefix that were invoked before `failed` returned
    /// (the ones that could have been linearized before it), in call order.
    pub concurrent: Vec<Operation>,
}

/// How many operations of the prefix and of the concurrent ones an [`Anomaly`] displays.
const SHOWN: usize = 10;
/// How many characters of a value an [`Anomaly`] displays.
const SHOWN_CHARS: usize = 48;

/// Displays a value in quotes, shortened past [`SHOWN_CHARS`].
struct ShowValue<'a>(&'a str);

impl fmt::Display for ShowValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(SHOWN_CHARS) {
            None => write!(f, "{:?}", self.0),
            Some((cut, _)) => write!(f, "{:?}... ({} bytes)", &self.0[..cut], self.0.len()),
        }
    }
}

/// Displays a key-value operation on one line, without its key.
struct ShowOp<'a>(&'a Operation);

impl fmt::Display for ShowOp<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = self.0;
        write!(f, "client {}: ", op.client)?;
        match &op.input {
            KvInput::Get { .. } => write!(f, "Get")?,
            KvInput::Put { value, .. } => write!(f, "Put {}", ShowValue(value))?,
            KvInput::Append { value, .. } => write!(f, "Append {}", ShowValue(value))?,
        }
        let call = Duration::from_nanos(op.call);
        match &op.outcome {
            Outcome::Returned { output, at } => {
                match output {
                    KvOutput::Value(v) => write!(f, " -> {}", ShowValue(v))?,
                    KvOutput::Done => write!(f, " -> ok")?,
                }
                write!(
                    f,
                    ", called at {call:?}, returned at {:?}",
                    Duration::from_nanos(*at)
                )
            }
            Outcome::Unknown => write!(f, ", called at {call:?}, outcome unknown"),
        }
    }
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "key {:?} is not linearizable: after the longest linearizable prefix found ({} \
             operations, leaving the value {}), neither this operation nor any that could \
             precede it can be linearized next:",
            self.key,
            self.prefix.len(),
            ShowValue(&self.value)
        )?;
        writeln!(f, "  {}", ShowOp(&self.failed))?;
        let skipped = self.prefix.len().saturating_sub(SHOWN);
        if skipped > 0 {
            writeln!(
                f,
                "the prefix's last {SHOWN} operations, in linearization order:"
            )?;
        } else if !self.prefix.is_empty() {
            writeln!(f, "the prefix, in linearization order:")?;
        }
        for op in &self.prefix[skipped..] {
            writeln!(f, "  {}", ShowOp(op))?;
        }
        if !self.concurrent.is_empty() {
            writeln!(
                f,
                "the other operations not in the prefix invoked before it returned ({}):",
                self.concurrent.len()
            )?;
            for op in self.concurrent.iter().take(SHOWN) {
                writeln!(f, "  {}", ShowOp(op))?;
            }
            if self.concurrent.len() > SHOWN {
                writeln!(f, "  ... and {} more", self.concurrent.len() - SHOWN)?;
            }
        }
        Ok(())
    }
}

/// Checks a key-value history for linearizability within `budget`, one key at a time (a
/// history is linearizable if and only if each key's operations are). Keys are checked in
/// order; the first key found not linearizable is reported. The answer is
/// [`Verdict::Unknown`] only if no key was found not linearizable and some key's search ran out
/// of time. The budget bounds the searches; freeing a search's cache comes on top (seconds, for
/// a search that gave up after exploring millions of configurations).
///
/// Before searching a key it drops the operations that cannot matter: Gets with an unknown
/// outcome, and Puts and Appends with an unknown outcome whose value no Get of that key saw (a
/// Put's as a prefix, an Append's anywhere), as those change only states that no Get saw. With
/// values unique per write, as tests usually make them, that drops every write with an unknown
/// outcome that never took effect: the search would otherwise try each of them at every step it
/// backtracks over, for the rest of the history.
pub fn check_kv(history: &[Operation], budget: Duration) -> Verdict {
    let deadline = Instant::now().checked_add(budget);
    let mut keys: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in history {
        keys.entry(op.input.key()).or_default().push(op);
    }
    let mut gave_up = false;
    for (key, mut ops) in keys {
        let seen: HashSet<&str> = ops
            .iter()
            .filter_map(|op| match &op.outcome {
                Outcome::Returned {
                    output: KvOutput::Value(v),
                    ..
                } => Some(v.as_str()),
                _ => None,
            })
            .collect();
        let seen: Vec<&str> = seen.into_iter().collect();
        ops.retain(|op| !unobserved(op, &seen));
        match search(&KvModel, &ops, deadline) {
            Verdict::Linearizable => {}
            Verdict::Unknown => gave_up = true,
            Verdict::NotLinearizable(c) => return Verdict::NotLinearizable(anomaly(key, &ops, c)),
        }
    }
    if gave_up {
        Verdict::Unknown
    } else {
        Verdict::Linearizable
    }
}

/// Whether `op`, of a key whose Gets returned the values `seen`, constrains nothing: a Get with
/// an unknown outcome, or a Put or Append with an unknown outcome whose effect no Get saw.
///
/// A Put of `v` with an unknown outcome whose value no Get saw as a prefix can be dropped: in
/// any linearization placing it, the states from it up to the next Put all start with `v`, so
/// no Get is placed there, and without it those states differ but nothing else does (Puts and
/// Appends succeed whatever the state), so the same order without it is a linearization too. The
/// same holds for an Append of `a` that no Get saw as a substring.
fn unobserved(op: &Operation, seen: &[&str]) -> bool {
    if op.outcome != Outcome::Unknown {
        return false;
    }
    match &op.input {
        KvInput::Get { .. } => true,
        KvInput::Put { value, .. } => !seen.iter().any(|v| v.starts_with(value.as_str())),
        KvInput::Append { value, .. } => !seen.iter().any(|v| v.contains(value.as_str())),
    }
}

/// Builds the report of a key's counterexample.
fn anomaly(key: &str, ops: &[&Operation], c: Counterexample) -> Anomaly {
    let mut state = KvModel.init();
    for &i in &c.prefix {
        let output = match &ops[i].outcome {
            Outcome::Returned { output, .. } => Some(output),
            Outcome::Unknown => None,
        };
        // The search took exactly these steps, so each one succeeds.
        if let Some(next) = KvModel.step(&state, &ops[i].input, output) {
            state = next;
        }
    }
    let failed = ops[c.failed];
    let failed_at = match failed.outcome {
        Outcome::Returned { at, .. } => at.max(failed.call),
        Outcome::Unknown => u64::MAX,
    };
    let mut placed = vec![false; ops.len()];
    for &i in &c.prefix {
        placed[i] = true;
    }
    placed[c.failed] = true;
    let mut concurrent: Vec<&Operation> = (0..ops.len())
        .filter(|&i| !placed[i] && ops[i].call <= failed_at)
        .map(|i| ops[i])
        .collect();
    concurrent.sort_by_key(|op| op.call);
    Anomaly {
        key: key.to_owned(),
        prefix: c.prefix.iter().map(|&i| ops[i].clone()).collect(),
        value: state.value().to_owned(),
        failed: failed.clone(),
        concurrent: concurrent.into_iter().cloned().collect(),
    }
}

/// Checks a whole history against `model` within `budget`, without partitioning it (a
/// partition's worth of history, for models that do not split the way keys do).
pub fn check<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    budget: Duration,
) -> Verdict<Counterexample> {
    let ops: Vec<&Operation<M::Input, M::Output>> = history.iter().collect();
    search(model, &ops, Instant::now().checked_add(budget))
}

/// How many search steps pass between two looks at the clock.
const CLOCK_EVERY: u64 = 4096;

/// The search's position in the list of events or in the list of unknown-outcome operations.
#[derive(Clone, Copy)]
enum Cursor {
    /// At node `.0` of the event list: a call to try, or the first pending return.
    Events(usize),
    /// At node `.0` of the unknown-outcome list, trying those invoked by `.1`, the time of the
    /// first pending return.
    Unknowns(usize, u64),
}

/// A linearized operation on the search's stack.
struct Frame<S> {
    /// The operation (the search's numbering).
    op: usize,
    /// The state before it.
    before: S,
    /// For an unknown-outcome operation, the time limit of the [`Cursor::Unknowns`] it was
    /// tried from.
    limit: u64,
}

/// A doubly-linked list over nodes `1..=n`, with sentinels `0` (head) and `n + 1` (tail), from
/// which a node can be lifted and put back where it was (in the reverse order of lifting).
struct Links {
    next: Vec<usize>,
    prev: Vec<usize>,
}

impl Links {
    fn new(n: usize) -> Self {
        Links {
            next: (1..=n + 2).collect(),
            prev: (0..n + 2).map(|i| i.saturating_sub(1)).collect(),
        }
    }

    fn tail(&self) -> usize {
        self.next.len() - 1
    }

    fn lift(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    fn unlift(&mut self, node: usize) {
        let (p, n) = (self.prev[node], self.next[node]);
        self.next[p] = node;
        self.prev[n] = node;
    }
}

/// A set of operations as a bitset that also knows its longest prefix of full words and its
/// shortest prefix holding every set bit, so that the part in between (usually the few
/// operations around the search's position) identifies it in the cache: see [`Trimmed`].
struct Bits {
    words: Vec<u64>,
    /// `words[..full]` are all ones, `words[full]` is not.
    full: usize,
    /// `words[top..]` are all zeros, `words[top - 1]` is not.
    top: usize,
}

impl Bits {
    fn new(n: usize) -> Self {
        Bits {
            words: vec![0; n.div_ceil(64)],
            full: 0,
            top: 0,
        }
    }

    fn set(&mut self, i: usize) {
        let w = i / 64;
        self.words[w] |= 1 << (i % 64);
        self.top = self.top.max(w + 1);
        while self.full < self.words.len() && self.words[self.full] == u64::MAX {
            self.full += 1;
        }
    }

    fn clear(&mut self, i: usize) {
        let w = i / 64;
        self.words[w] &= !(1 << (i % 64));
        self.full = self.full.min(w);
        while self.top > 0 && self.words[self.top - 1] == 0 {
            self.top -= 1;
        }
    }

    fn trimmed(&self) -> Trimmed {
        let window = &self.words[self.full..self.top];
        let words = match *window {
            [] => Words::Inline(0, [0; 2]),
            [a] => Words::Inline(1, [a, 0]),
            [a, b] => Words::Inline(2, [a, b]),
            _ => Words::Heap(window.into()),
        };
        Trimmed {
            full: self.full,
            words,
        }
    }
}

/// A set of operations as the number of its leading full words, then its words up to the last
/// nonzero one: a canonical form (equal sets, equal forms) whose size is that of the window
/// between the operations all linearized and those not yet reached.
#[derive(PartialEq, Eq)]
struct Trimmed {
    full: usize,
    words: Words,
}

/// The words of a [`Trimmed`], in place when there are at most two (the usual case: the cache
/// holds millions of these, and allocating each would cost more than the search).
#[derive(PartialEq, Eq)]
enum Words {
    /// The first `.0` words of `.1`; the others are zero.
    Inline(u8, [u64; 2]),
    /// Three words or more.
    Heap(Box<[u64]>),
}

impl Trimmed {
    fn words(&self) -> &[u64] {
        match &self.words {
            Words::Inline(n, words) => &words[..usize::from(*n)],
            Words::Heap(words) => words,
        }
    }

    /// Whether every member of `self` is in `other`.
    fn is_subset(&self, other: &Trimmed) -> bool {
        // `self`'s word `other.full` would be full, and `other`'s is not.
        if self.full > other.full {
            return false;
        }
        let theirs = other.words();
        self.words().iter().enumerate().all(|(j, &word)| {
            let at = self.full + j;
            at < other.full || word & !theirs.get(at - other.full).copied().unwrap_or(0) == 0
        })
    }
}

/// The key of the search's cache: the set of linearized operations that returned and the state
/// reached.
#[derive(PartialEq, Eq)]
struct Seen<S> {
    hash: u64,
    returned: Trimmed,
    state: S,
}

/// The value of the search's cache: the minimal sets of linearized unknown-outcome operations
/// with which its key was reached (none is a subset of another; see [`search`]), the first one
/// apart so that the usual single set costs no allocation.
struct Minimal {
    first: Trimmed,
    rest: Vec<Trimmed>,
}

impl Minimal {
    /// Whether one of the sets is a subset of `set`.
    fn covers(&self, set: &Trimmed) -> bool {
        self.first.is_subset(set) || self.rest.iter().any(|m| m.is_subset(set))
    }

    /// Adds `set`, which no set covers, dropping the sets it is a subset of.
    fn insert(&mut self, set: Trimmed) {
        self.rest.retain(|m| !set.is_subset(m));
        if set.is_subset(&self.first) {
            self.first = set;
        } else {
            self.rest.push(set);
        }
    }
}

impl<S> Hash for Seen<S> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(self.hash);
    }
}

/// A fast, non-cryptographic hasher for the search's cache (whose keys come from the history
/// under test, not from an adversary).
#[derive(Default)]
struct FoldHasher(u64);

impl Hasher for FoldHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517C_C1B7_2722_0A95);
    }

    fn finish(&self) -> u64 {
        mix(self.0)
    }
}

/// A 64-bit finalizer (SplitMix64's), spreading every input bit over the output.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The random-looking value operation `op` contributes to the hash of a set it belongs to
/// (Zobrist hashing: the set's hash is the exclusive or of its members').
fn zobrist(op: usize) -> u64 {
    mix((op as u64)
        .wrapping_add(1)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Wing & Gong's search with Lowe's just-in-time linearization and cache, on one partition.
///
/// The operations that returned are numbered `0..c` in call order; their calls and returns, in
/// time order (a call before a return at the same time), form the event list. The operations
/// whose outcome is unknown are numbered `c..` in call order and form a list of their own: they
/// have no return, and at each position they are tried after the calls of the event list, only
/// once those failed (so a linearizable history with many unknown outcomes rarely tries them).
///
/// The cache prunes by dominance rather than equality over the unknown-outcome operations. A
/// configuration is the set `R` of linearized operations that returned, the set `U` of
/// linearized unknown-outcome ones, and the state. Unknown-outcome operations constrain nothing
/// (they have no return) and need never be linearized, so any way to finish from `(R, U, s)`
/// also finishes from `(R, U', s)` for `U'` a subset of `U`, by the same steps. A configuration
/// is therefore skipped if one with the same `R` and state and a subset of its `U` was reached
/// before: that one failed, or is an ancestor that will try every step this one could. (With
/// equality only, an unknown Put linearized and then overwritten would make every later
/// configuration new again, and the search would redo the rest of the history once per subset
/// of the pending unknown operations.)
///
/// The cache only sees a dominating configuration once the search has reached it, and in a row
/// of unknown-outcome operations the search reaches the bigger sets first. Where it fails, it
/// still tries every subset of the unknown-outcome operations pending there. (Skipping a row's
/// last operation when it has the same effect from the row's start would avoid that, but it
/// delays the configurations of a linearizable history that do finish, by whole subtrees: a
/// history with 20% of its writes unknown then took a thousand times as many steps.)
fn search<M: Model>(
    model: &M,
    ops: &[&Operation<M::Input, M::Output>],
    deadline: Option<Instant>,
) -> Verdict<Counterexample> {
    // The search's numbering: `order[k]` is the index into `ops` of operation `k`.
    let mut order: Vec<usize> = (0..ops.len()).collect();
    order.sort_by_key(|&i| (matches!(ops[i].outcome, Outcome::Unknown), ops[i].call, i));
    let returned = ops
        .iter()
        .filter(|op| !matches!(op.outcome, Outcome::Unknown))
        .count();
    let unknowns = ops.len() - returned;
    if returned == 0 {
        return Verdict::Linearizable;
    }
    let call = |k: usize| ops[order[k]].call;
    let ret = |k: usize| match ops[order[k]].outcome {
        Outcome::Returned { at, .. } => at.max(call(k)),
        Outcome::Unknown => u64::MAX,
    };

    // The event list: node `1 + j` is event `j` in time order; `(time, is_return, op)`.
    let mut events: Vec<(u64, bool, usize)> = (0..returned)
        .flat_map(|k| [(call(k), false, k), (ret(k), true, k)])
        .collect();
    events.sort_unstable();
    let mut call_node = vec![0; returned];
    let mut return_node = vec![0; returned];
    for (j, &(_, is_return, k)) in events.iter().enumerate() {
        if is_return {
            return_node[k] = j + 1;
        } else {
            call_node[k] = j + 1;
        }
    }
    let mut event_links = Links::new(events.len());
    // The unknown-outcome list: node `1 + u` is operation `returned + u`.
    let mut unknown_links = Links::new(unknowns);

    let mut sets = [Bits::new(returned), Bits::new(unknowns)];
    // The Zobrist hash of `sets[0]`.
    let mut set_hash = 0u64;
    let hasher = BuildHasherDefault::<FoldHasher>::default();
    let mut seen: HashMap<Seen<M::State>, Minimal, _> = HashMap::with_hasher(hasher.clone());
    let mut state = model.init();
    let mut stack: Vec<Frame<M::State>> = Vec::new();
    let mut pending = returned;
    // The longest stack so far, as operations; `best[..agree]` is the current stack's prefix.
    let mut best: Vec<usize> = Vec::new();
    let mut agree = 0;
    let mut cursor = Cursor::Events(event_links.next[0]);
    let mut steps = 0u64;

    loop {
        if steps.is_multiple_of(CLOCK_EVERY) && deadline.is_some_and(|d| Instant::now() >= d) {
            return Verdict::Unknown;
        }
        steps += 1;
        let (k, limit, otherwise) = match cursor {
            Cursor::Events(node) => {
                let (time, is_return, k) = events[node - 1];
                if is_return {
                    cursor = Cursor::Unknowns(unknown_links.next[0], time);
                    continue;
                }
                (k, 0, Cursor::Events(event_links.next[node]))
            }
            Cursor::Unknowns(node, limit) => {
                if node == unknown_links.tail() || call(returned + node - 1) > limit {
                    // Nothing left to try here: take back the last operation linearized.
                    let Some(frame) = stack.pop() else {
                        return Verdict::NotLinearizable(counterexample(
                            &order, &events, returned, &best,
                        ));
                    };
                    agree = agree.min(stack.len());
                    state = frame.before;
                    let k = frame.op;
                    cursor = if k < returned {
                        set_hash ^= zobrist(k);
                        sets[0].clear(k);
                        event_links.unlift(return_node[k]);
                        event_links.unlift(call_node[k]);
                        pending += 1;
                        Cursor::Events(event_links.next[call_node[k]])
                    } else {
                        let node = k - returned + 1;
                        sets[1].clear(k - returned);
                        unknown_links.unlift(node);
                        Cursor::Unknowns(unknown_links.next[node], frame.limit)
                    };
                    continue;
                }
                let k = returned + node - 1;
                (k, limit, Cursor::Unknowns(unknown_links.next[node], limit))
            }
        };

        let op = ops[order[k]];
        let output = match &op.outcome {
            Outcome::Returned { output, .. } => Some(output),
            Outcome::Unknown => None,
        };
        cursor = otherwise;
        let Some(next) = model.step(&state, &op.input, output) else {
            continue;
        };
        let (set, bit) = if k < returned {
            set_hash ^= zobrist(k);
            (0, k)
        } else {
            (1, k - returned)
        };
        sets[set].set(bit);
        let key = Seen {
            hash: mix(set_hash ^ hasher.hash_one(&next)),
            returned: sets[0].trimmed(),
            state: next.clone(),
        };
        let linearized_unknowns = sets[1].trimmed();
        let fresh = match seen.entry(key) {
            Entry::Vacant(entry) => {
                entry.insert(Minimal {
                    first: linearized_unknowns,
                    rest: Vec::new(),
                });
                true
            }
            Entry::Occupied(mut entry) => {
                let minimal = entry.get_mut();
                let fresh = !minimal.covers(&linearized_unknowns);
                if fresh {
                    minimal.insert(linearized_unknowns);
                }
                fresh
            }
        };
        if !fresh {
            // Reached before, with at most these unknown-outcome operations: no way on.
            sets[set].clear(bit);
            if k < returned {
                set_hash ^= zobrist(k);
            }
            continue;
        }

        stack.push(Frame {
            op: k,
            before: std::mem::replace(&mut state, next),
            limit,
        });
        if k < returned {
            event_links.lift(call_node[k]);
            event_links.lift(return_node[k]);
            pending -= 1;
            if pending == 0 {
                // The unknown-outcome operations left take effect afterwards, or never.
                return Verdict::Linearizable;
            }
        } else {
            unknown_links.lift(k - returned + 1);
        }
        let depth = stack.len() - 1;
        if agree == depth && best.get(depth) == Some(&k) {
            agree += 1;
        }
        if stack.len() > best.len() {
            best.truncate(agree);
            best.extend(stack[agree..].iter().map(|f| f.op));
            agree = stack.len();
        }
        cursor = Cursor::Events(event_links.next[0]);
    }
}

/// The counterexample of a failed search, in the caller's numbering.
fn counterexample(
    order: &[usize],
    events: &[(u64, bool, usize)],
    returned: usize,
    best: &[usize],
) -> Counterexample {
    let mut placed = vec![false; order.len()];
    for &k in best {
        placed[k] = true;
    }
    // Every operation that returned is never all placed when the search fails.
    let failed = events
        .iter()
        .find(|&&(_, is_return, k)| is_return && !placed[k])
        .map_or(0, |&(_, _, k)| k);
    debug_assert!(failed < returned);
    Counterexample {
        prefix: best.iter().map(|&k| order[k]).collect(),
        failed: order[failed],
    }
}

/// An operation's handle in a [`Recorder`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OpId(usize);

/// Records a history from any number of threads, with times from one monotonic clock started
/// by [`Recorder::new`].
///
/// The clock is read when [`invoke`](Recorder::invoke) is entered and when
/// [`complete`](Recorder::complete) is entered, so each recorded interval contains the real
/// one as long as the client invokes before sending its request and completes after getting the
/// reply.
pub struct Recorder<I = KvInput, O = KvOutput> {
    start: Instant,
    // A mutex is fine here: recording is test bookkeeping, a cold path next to the operations it
    // records, and the lock is held only to push or update one entry.
    ops: Mutex<Vec<(Operation<I, O>, bool)>>,
}

impl<I, O> Default for Recorder<I, O> {
    fn default() -> Self {
        Self::new()
    }
}

impl<I, O> Recorder<I, O> {
    /// A recorder whose clock starts now.
    pub fn new() -> Self {
        Recorder {
            start: Instant::now(),
            ops: Mutex::new(Vec::new()),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn resolve(&self, id: OpId, outcome: Outcome<O>) {
        let mut ops = self.ops.lock().unwrap_or_else(PoisonError::into_inner);
        let (op, resolved) = &mut ops[id.0];
        assert!(
            !*resolved,
            "operation {id:?} was already completed or marked unknown"
        );
        op.outcome = outcome;
        *resolved = true;
    }

    /// Records that `client` invokes `input` now.
    pub fn invoke(&self, client: u64, input: I) -> OpId {
        let call = self.now();
        let mut ops = self.ops.lock().unwrap_or_else(PoisonError::into_inner);
        ops.push((
            Operation {
                client,
                input,
                call,
                outcome: Outcome::Unknown,
            },
            false,
        ));
        OpId(ops.len() - 1)
    }

    /// Records that operation `id` returns `output` now.
    ///
    /// # Panics
    ///
    /// If `id` was already completed or marked unknown.
    pub fn complete(&self, id: OpId, output: O) {
        let at = self.now();
        self.resolve(id, Outcome::Returned { output, at });
    }

    /// Records that the client of operation `id` will never learn its outcome.
    ///
    /// # Panics
    ///
    /// If `id` was already completed or marked unknown.
    pub fn unknown(&self, id: OpId) {
        self.resolve(id, Outcome::Unknown);
    }

    /// The history, in invocation order; operations neither completed nor marked unknown have
    /// an unknown outcome.
    pub fn into_history(self) -> Vec<Operation<I, O>> {
        let ops = self
            .ops
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        ops.into_iter().map(|(op, _)| op).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    const BUDGET: Duration = Duration::from_secs(60);

    fn done(client: u64, input: KvInput, call: u64, at: u64) -> Operation {
        let output = match input {
            KvInput::Get { .. } => unreachable!("a Get returns a value"),
            _ => KvOutput::Done,
        };
        Operation {
            client,
            input,
            call,
            outcome: Outcome::Returned { output, at },
        }
    }

    fn get(client: u64, key: &str, value: &str, call: u64, at: u64) -> Operation {
        Operation {
            client,
            input: KvInput::Get { key: key.into() },
            call,
            outcome: Outcome::Returned {
                output: KvOutput::Value(value.into()),
                at,
            },
        }
    }

    fn put(client: u64, key: &str, value: &str, call: u64, at: u64) -> Operation {
        let input = KvInput::Put {
            key: key.into(),
            value: value.into(),
        };
        done(client, input, call, at)
    }

    fn append(client: u64, key: &str, value: &str, call: u64, at: u64) -> Operation {
        let input = KvInput::Append {
            key: key.into(),
            value: value.into(),
        };
        done(client, input, call, at)
    }

    /// `op`, whose client never learned how it ended.
    fn lost(op: Operation) -> Operation {
        Operation {
            outcome: Outcome::Unknown,
            ..op
        }
    }

    #[test]
    fn hand_written_histories() {
        let k = "k";
        let cases: Vec<(&str, Vec<Operation>, bool)> = vec![
            ("empty history", vec![], true),
            (
                "sequential",
                vec![
                    put(1, k, "a", 0, 10),
                    get(2, k, "a", 20, 30),
                    append(1, k, "b", 40, 50),
                    get(3, k, "ab", 60, 70),
                    put(2, k, "c", 80, 90),
                    get(1, k, "c", 100, 110),
                ],
                true,
            ),
            (
                "concurrent put and get, get first",
                vec![put(1, k, "a", 0, 100), get(2, k, "", 10, 20)],
                true,
            ),
            (
                "concurrent put and get, put first",
                vec![put(1, k, "a", 0, 100), get(2, k, "a", 10, 20)],
                true,
            ),
            (
                "stale read after a completed put",
                vec![put(1, k, "a", 0, 10), get(2, k, "", 20, 30)],
                false,
            ),
            (
                "stale read of an overwritten value",
                vec![
                    put(1, k, "a", 0, 10),
                    put(1, k, "b", 20, 30),
                    get(2, k, "a", 40, 50),
                ],
                false,
            ),
            (
                "a read of a value never written",
                vec![put(1, k, "a", 0, 10), get(2, k, "z", 5, 30)],
                false,
            ),
            (
                "appends observed in an order contradicting real time",
                vec![
                    append(1, k, "x", 0, 10),
                    append(2, k, "y", 20, 30),
                    get(3, k, "yx", 40, 50),
                ],
                false,
            ),
            (
                "concurrent appends observed in either order",
                vec![
                    append(1, k, "x", 0, 30),
                    append(2, k, "y", 10, 20),
                    get(3, k, "yx", 40, 50),
                ],
                true,
            ),
            (
                "an append observed twice",
                vec![append(1, k, "x", 0, 10), get(2, k, "xx", 20, 30)],
                false,
            ),
            (
                "an unknown put later observed",
                vec![lost(put(1, k, "a", 0, 0)), get(2, k, "a", 50, 60)],
                true,
            ),
            (
                "an unknown put never observed",
                vec![
                    lost(put(1, k, "a", 0, 0)),
                    get(2, k, "", 50, 60),
                    get(3, k, "", 70, 80),
                ],
                true,
            ),
            (
                "an unknown put observed before its call",
                vec![get(2, k, "a", 0, 10), lost(put(1, k, "a", 20, 0))],
                false,
            ),
            (
                "an unknown put observed, then undone",
                vec![
                    lost(put(1, k, "a", 0, 0)),
                    get(2, k, "a", 10, 20),
                    get(3, k, "", 30, 40),
                ],
                false,
            ),
            (
                "unknown appends observed in either order, each once",
                vec![
                    lost(append(1, k, "x", 0, 0)),
                    lost(append(2, k, "y", 5, 0)),
                    lost(append(3, k, "z", 6, 0)),
                    get(4, k, "y", 10, 20),
                    get(4, k, "yx", 30, 40),
                    put(5, k, "p", 50, 60),
                    get(4, k, "p", 70, 80),
                ],
                true,
            ),
            (
                "an unknown append observed twice",
                vec![lost(append(1, k, "x", 0, 0)), get(2, k, "xx", 10, 20)],
                false,
            ),
            (
                "a get returning \"\" before any put",
                vec![
                    get(1, k, "", 0, 10),
                    put(2, k, "a", 20, 30),
                    get(1, k, "a", 40, 50),
                ],
                true,
            ),
            (
                "a value appears, then disappears",
                vec![
                    put(1, k, "x", 0, 100),
                    get(2, k, "x", 10, 20),
                    get(3, k, "", 30, 40),
                ],
                false,
            ),
            (
                "an unknown get constrains nothing",
                vec![put(1, k, "a", 0, 10), lost(get(2, k, "b", 20, 30))],
                true,
            ),
            (
                "a return and a call at the same time overlap",
                vec![put(1, k, "a", 0, 10), get(2, k, "", 10, 20)],
                true,
            ),
            (
                "a call one nanosecond after a return does not",
                vec![put(1, k, "a", 0, 10), get(2, k, "", 11, 20)],
                false,
            ),
            (
                "a return before its call is taken at the call",
                vec![put(1, k, "a", 10, 5), get(2, k, "", 10, 20)],
                true,
            ),
            (
                "a get acknowledged without a value",
                vec![Operation {
                    client: 1,
                    input: KvInput::Get { key: k.into() },
                    call: 0,
                    outcome: Outcome::Returned {
                        output: KvOutput::Done,
                        at: 10,
                    },
                }],
                false,
            ),
            (
                "a put returning a value",
                vec![Operation {
                    client: 1,
                    input: KvInput::Put {
                        key: k.into(),
                        value: "a".into(),
                    },
                    call: 0,
                    outcome: Outcome::Returned {
                        output: KvOutput::Value("a".into()),
                        at: 10,
                    },
                }],
                false,
            ),
            (
                "independent keys",
                vec![
                    put(1, "a", "1", 0, 10),
                    put(2, "b", "2", 0, 10),
                    get(1, "b", "2", 20, 30),
                    get(2, "a", "1", 20, 30),
                ],
                true,
            ),
        ];
        for (case, (name, history, linearizable)) in cases.iter().enumerate() {
            let verdict = check_kv(history, BUDGET);
            match (linearizable, &verdict) {
                (true, Verdict::Linearizable) | (false, Verdict::NotLinearizable(_)) => {}
                _ => panic!("case {case} ({name}): got {verdict:?}"),
            }
        }
    }

    #[test]
    fn anomaly_names_the_key_and_the_operations() {
        let history = vec![
            put(1, "k", "a", 0, 10),
            put(2, "k", "b", 20, 30),
            append(3, "k", "c", 25, 200),
            get(4, "k", "a", 40, 50),
        ];
        let Verdict::NotLinearizable(anomaly) = check_kv(&history, BUDGET) else {
            panic!("stale read not detected");
        };
        assert_eq!(anomaly.key, "k");
        assert_eq!(anomaly.failed, history[3]);
        // The longest prefix places the append too, before giving up on the read.
        assert_eq!(anomaly.prefix, history[..3]);
        assert_eq!(anomaly.value, "bc");
        assert!(anomaly.concurrent.is_empty());
        let text = anomaly.to_string();
        for expected in [
            "key \"k\" is not linearizable",
            "3 operations, leaving the value \"bc\"",
            "client 4: Get -> \"a\", called at 40ns, returned at 50ns",
            "client 3: Append \"c\" -> ok, called at 25ns, returned at 200ns",
        ] {
            assert!(
                text.contains(expected),
                "{expected:?} missing from:\n{text}"
            );
        }
    }

    #[test]
    fn anomaly_shortens_long_values_and_prefixes() {
        let long = "v".repeat(100);
        let mut history: Vec<Operation> = (0..30)
            .map(|i| append(1, "k", &long, 100 * i, 100 * i + 10))
            .collect();
        history.push(get(2, "k", "nope", 5000, 5010));
        let Verdict::NotLinearizable(anomaly) = check_kv(&history, BUDGET) else {
            panic!("read of a value never written not detected");
        };
        assert_eq!(anomaly.prefix.len(), 30);
        let text = anomaly.to_string();
        assert!(text.contains("(3000 bytes)"), "{text}");
        assert!(text.contains("last 10 operations"), "{text}");
        assert!(text.lines().count() < 20, "{text}");
    }

    #[test]
    fn a_violation_on_one_key_among_many() {
        let mut history = Vec::new();
        for key in 0..50u64 {
            let k = format!("key{key}");
            let t = key * 1000;
            history.push(put(key % 5, &k, "a", t, t + 10));
            history.push(append(key % 7, &k, "b", t + 5, t + 30));
            history.push(get(key % 3, &k, "ab", t + 40, t + 50));
            // The stale read, on one key only.
            let stale = if key == 37 { "a" } else { "ab" };
            history.push(get(key % 4, &k, stale, t + 60, t + 70));
        }
        match check_kv(&history, BUDGET) {
            Verdict::NotLinearizable(anomaly) => {
                assert_eq!(anomaly.key, "key37");
                assert_eq!(anomaly.failed, history[37 * 4 + 3]);
            }
            other => panic!("got {other:?}"),
        }
        history[37 * 4 + 3] = get(1, "key37", "ab", 37_060, 37_070);
        assert_eq!(check_kv(&history, BUDGET), Verdict::Linearizable);
    }

    #[test]
    fn gives_up_when_the_budget_is_spent() {
        let history = vec![put(1, "k", "a", 0, 10), get(2, "k", "a", 20, 30)];
        assert_eq!(check_kv(&history, Duration::ZERO), Verdict::Unknown);
        // Nothing to search: only unknown outcomes.
        let history = vec![lost(put(1, "k", "a", 0, 0))];
        assert_eq!(check_kv(&history, Duration::ZERO), Verdict::Linearizable);
    }

    /// A counter whose increments return the new count.
    struct Counter;

    enum CounterOp {
        Increment,
        Read,
    }

    impl Model for Counter {
        type State = u64;
        type Input = CounterOp;
        type Output = u64;

        fn init(&self) -> u64 {
            0
        }

        fn step(&self, count: &u64, input: &CounterOp, output: Option<&u64>) -> Option<u64> {
            let after = match input {
                CounterOp::Increment => count + 1,
                CounterOp::Read => *count,
            };
            output.is_none_or(|&o| o == after).then_some(after)
        }
    }

    #[test]
    fn another_model() {
        let op = |client, input, call, output: Option<(u64, u64)>| Operation {
            client,
            input,
            call,
            outcome: output.map_or(Outcome::Unknown, |(output, at)| Outcome::Returned {
                output,
                at,
            }),
        };
        use CounterOp::{Increment, Read};
        let ok = [
            op(1, Increment, 0, Some((2, 50))),
            op(2, Increment, 10, Some((1, 20))),
            op(3, Increment, 30, None),
            op(4, Read, 60, Some((3, 70))),
        ];
        assert_eq!(check(&Counter, &ok, BUDGET), Verdict::Linearizable);
        let twice = [
            op(1, Increment, 0, Some((1, 50))),
            op(2, Increment, 60, Some((1, 70))),
        ];
        assert_eq!(
            check(&Counter, &twice, BUDGET),
            Verdict::NotLinearizable(Counterexample {
                prefix: vec![0],
                failed: 1
            })
        );
    }

    #[test]
    fn recorder_records_a_linearizable_history() {
        let recorder = Recorder::new();
        let store: Mutex<HashMap<String, String>> = Mutex::new(HashMap::new());
        std::thread::scope(|s| {
            for client in 0..4u64 {
                let (recorder, store) = (&recorder, &store);
                s.spawn(move || {
                    for i in 0..200u64 {
                        let key = format!("k{}", (client + i) % 3);
                        let input = match i % 3 {
                            0 => KvInput::Get { key },
                            1 => KvInput::Put {
                                key,
                                value: format!("{client}.{i}"),
                            },
                            _ => KvInput::Append {
                                key,
                                value: format!("{client}.{i};"),
                            },
                        };
                        let id = recorder.invoke(client, input.clone());
                        let output = {
                            let mut store = store.lock().unwrap();
                            match input {
                                KvInput::Get { key } => {
                                    KvOutput::Value(store.get(&key).cloned().unwrap_or_default())
                                }
                                KvInput::Put { key, value } => {
                                    store.insert(key, value);
                                    KvOutput::Done
                                }
                                KvInput::Append { key, value } => {
                                    store.entry(key).or_default().push_str(&value);
                                    KvOutput::Done
                                }
                            }
                        };
                        match i {
                            // The reply is lost, or the client dies before it arrives.
                            50 => recorder.unknown(id),
                            100 => {}
                            _ => recorder.complete(id, output),
                        }
                    }
                });
            }
        });
        let history = recorder.into_history();
        assert_eq!(history.len(), 800);
        for op in &history {
            match op.outcome {
                Outcome::Returned { at, .. } => assert!(op.call <= at),
                Outcome::Unknown => {}
            }
        }
        let unknown = history.iter().filter(|op| op.outcome == Outcome::Unknown);
        assert_eq!(unknown.count(), 8);
        assert_eq!(check_kv(&history, BUDGET), Verdict::Linearizable);
    }

    #[test]
    #[should_panic(expected = "already completed")]
    fn recorder_completes_once() {
        let recorder = Recorder::new();
        let id = recorder.invoke(1, KvInput::Get { key: "k".into() });
        recorder.complete(id, KvOutput::Value(String::new()));
        recorder.unknown(id);
    }

    /// What becomes of a generated operation.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Fate {
        /// It takes effect at its linearization point and returns.
        Returns,
        /// It takes effect at its point, and its client never learns it.
        Unknown,
        /// It never takes effect, and its client never learns it (a Put or Append only).
        Lost,
    }

    /// A linearizable history: `ops[i] = (client, key, kind, fate)` is linearized at its
    /// point, time `1000 + 10 * i`, within the interval `[point - before, point + after]` given
    /// by `slack`, shortened so that each client has one operation in flight at a time (a client
    /// that never learns an outcome moves on right after its call).
    fn generate(ops: &[Spec], slack: impl Fn(usize) -> (u64, u64)) -> Vec<Operation> {
        let point = |i: usize| 1000 + 10 * i as u64;
        let mut values: HashMap<String, String> = HashMap::new();
        let mut history = Vec::with_capacity(ops.len());
        // Per client: when its last operation returned (or was given up).
        let mut free: HashMap<u64, u64> = HashMap::new();
        for (i, &(client, key, kind, fate)) in ops.iter().enumerate() {
            let key = format!("k{key}");
            let (before, after) = slack(i);
            let next = (i + 1..ops.len()).find(|&j| ops[j].0 == client);
            let call = (point(i) - before).max(free.get(&client).map_or(0, |&t| t + 1));
            let at = next.map_or(point(i) + after, |j| (point(i) + after).min(point(j) - 1));
            free.insert(client, if fate == Fate::Returns { at } else { call });
            let value = values.entry(key.clone()).or_default();
            let (input, output) = match kind {
                0 => (KvInput::Get { key }, KvOutput::Value(value.clone())),
                1 => {
                    let new = format!("p{i}");
                    if fate != Fate::Lost {
                        *value = new.clone();
                    }
                    (KvInput::Put { key, value: new }, KvOutput::Done)
                }
                _ => {
                    let suffix = format!("a{i}.");
                    if fate != Fate::Lost {
                        value.push_str(&suffix);
                    }
                    (KvInput::Append { key, value: suffix }, KvOutput::Done)
                }
            };
            let outcome = match fate {
                Fate::Returns => Outcome::Returned { output, at },
                Fate::Unknown | Fate::Lost => Outcome::Unknown,
            };
            history.push(Operation {
                client,
                input,
                call,
                outcome,
            });
        }
        history
    }

    /// A generated operation: client, key, kind (Get, Put, Append), fate.
    type Spec = (u64, usize, u8, Fate);

    /// Operations and their `(before, after)` slack for [`generate`].
    fn generated_ops() -> impl Strategy<Value = (Vec<Spec>, Vec<(u64, u64)>)> {
        (1..=3usize, 1..=5u64).prop_flat_map(|(keys, clients)| {
            let fate = prop_oneof![
                8 => Just(Fate::Returns),
                1 => Just(Fate::Unknown),
                1 => Just(Fate::Lost),
            ];
            let op = (0..clients, 0..keys, 0..3u8, fate).prop_map(|(c, k, kind, fate)| {
                // An unknown Get would be dropped: keep Gets returning.
                let fate = if kind == 0 { Fate::Returns } else { fate };
                (c, k, kind, fate)
            });
            proptest::collection::vec((op, (0..60u64, 0..60u64)), 1..60)
                .prop_map(|v| v.into_iter().unzip())
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn generated_histories((ops, slack) in generated_ops(), corrupt in any::<prop::sample::Index>()) {
            let mut history = generate(&ops, |i| slack[i]);
            prop_assert_eq!(check_kv(&history, BUDGET), Verdict::Linearizable);

            let gets: Vec<usize> = (0..history.len())
                .filter(|&i| matches!(history[i].input, KvInput::Get { .. }))
                .collect();
            if !gets.is_empty() {
                let i = gets[corrupt.index(gets.len())];
                if let Outcome::Returned { output, .. } = &mut history[i].outcome {
                    *output = KvOutput::Value("never written".into());
                }
                match check_kv(&history, BUDGET) {
                    Verdict::NotLinearizable(anomaly) => {
                        prop_assert_eq!(anomaly.key.as_str(), history[i].input.key());
                    }
                    other => prop_assert!(false, "corrupted get {} not detected: {:?}", i, other),
                }
            }
        }
    }

    /// A linearizable history of `ops` operations over `keys` keys by `clients` clients, each
    /// with one operation in flight at a time (invoked, applied, returned, each phase a random
    /// client's turn). Of every 200 writes, about `unknown` take effect and `lost` do not, all
    /// of those with an unknown outcome. Half the operations are Gets, a third of the writes
    /// Puts, the rest Appends.
    fn simulate(
        seed: u64,
        clients: usize,
        keys: u64,
        ops: usize,
        unknown: u8,
        lost: u8,
    ) -> Vec<Operation> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut values: HashMap<String, String> = HashMap::new();
        let mut history: Vec<Operation> = Vec::with_capacity(ops);
        // Per client: the index of its operation in flight, and whether it was applied.
        let mut in_flight: Vec<Option<(usize, bool)>> = vec![None; clients];
        let mut fates: Vec<Fate> = Vec::with_capacity(ops);
        let mut now = 0u64;
        while history.len() < ops || in_flight.iter().any(Option::is_some) {
            now += rng.u64(1..=20);
            let c = rng.usize(..clients);
            match in_flight[c] {
                None if history.len() < ops => {
                    let key = format!("k{}", rng.u64(..keys));
                    let n = history.len();
                    let input = match rng.u8(..6) {
                        0..3 => KvInput::Get { key },
                        3 => KvInput::Put {
                            key,
                            value: format!("c{c}.{n}"),
                        },
                        _ => KvInput::Append {
                            key,
                            value: format!("{n};"),
                        },
                    };
                    let fate = match (&input, rng.u8(..200)) {
                        (KvInput::Get { .. }, _) => Fate::Returns,
                        (_, r) if r < unknown => Fate::Unknown,
                        (_, r) if r < unknown + lost => Fate::Lost,
                        _ => Fate::Returns,
                    };
                    history.push(Operation {
                        client: c as u64,
                        input,
                        call: now,
                        outcome: Outcome::Unknown,
                    });
                    fates.push(fate);
                    in_flight[c] = Some((n, false));
                }
                None => {}
                Some((n, false)) => {
                    // The linearization point.
                    let output = match &history[n].input {
                        KvInput::Get { key } => {
                            KvOutput::Value(values.get(key).cloned().unwrap_or_default())
                        }
                        _ if fates[n] == Fate::Lost => KvOutput::Done,
                        KvInput::Put { key, value } => {
                            values.insert(key.clone(), value.clone());
                            KvOutput::Done
                        }
                        KvInput::Append { key, value } => {
                            values.entry(key.clone()).or_default().push_str(value);
                            KvOutput::Done
                        }
                    };
                    if fates[n] == Fate::Returns {
                        history[n].outcome = Outcome::Returned { output, at: 0 };
                    }
                    in_flight[c] = Some((n, true));
                }
                Some((n, true)) => {
                    if let Outcome::Returned { at, .. } = &mut history[n].outcome {
                        *at = now;
                    }
                    in_flight[c] = None;
                }
            }
        }
        history
    }

    /// 20 000 operations over 10 keys by 8 clients, 1% of the writes with an unknown outcome
    /// (half of those never applied).
    #[test]
    fn scale() {
        let history = simulate(6824, 8, 10, 20_000, 1, 1);
        assert_eq!(check_kv(&history, BUDGET), Verdict::Linearizable);
    }

    /// 4 000 operations over 3 keys by 8 clients, 20% of the writes with an unknown outcome
    /// (half of those never applied).
    #[test]
    fn many_unknown_outcomes() {
        for seed in 0..4 {
            let history = simulate(seed, 8, 3, 4000, 20, 20);
            let verdict = check_kv(&history, BUDGET);
            assert_eq!(verdict, Verdict::Linearizable, "seed {seed}");
        }
    }

    /// A refutation with unknown Puts pending all along (the generic [`check`] does not drop
    /// unobserved writes): the search tries each of them, in every combination, wherever it
    /// backtracks, and the longest prefix still places every operation that returned.
    #[test]
    fn refutes_with_pending_unknown_puts() {
        let k = "k";
        let mut history: Vec<Operation> = (0..10)
            .map(|i| lost(put(100 + i, k, &format!("u{i}"), 0, 0)))
            .collect();
        for j in 0..200 {
            let t = 10 + 40 * j;
            history.push(put(1, k, &format!("c{j}"), t, t + 10));
            history.push(get(2, k, &format!("c{j}"), t + 20, t + 30));
        }
        history.push(get(2, k, "zzz", 10_000, 10_010));
        let verdict = check(&KvModel, &history, BUDGET);
        let Verdict::NotLinearizable(counterexample) = verdict else {
            panic!("got {verdict:?}");
        };
        assert_eq!(counterexample.failed, history.len() - 1);
        let prefix: HashSet<usize> = counterexample.prefix.into_iter().collect();
        assert!((10..history.len() - 1).all(|i| prefix.contains(&i)));
    }
}
