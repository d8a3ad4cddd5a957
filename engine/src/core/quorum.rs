//! Quorums: which sets of nodes may decide for the cluster.
//!
//! Every question the core settles by majority goes through [`JointMajority`], the cluster's
//! voting configuration: one [`Majority`] of voters, or two while the membership changes. Each
//! answers the same three questions:
//!
//! - [`Majority::quorum_value`] / [`JointMajority::quorum_value`]: the highest value a quorum has reached, given one value per
//!   node. The leader's commit index is the match index a quorum holds (§5.3 of the extended
//!   Raft paper); a read is confirmed by the latest heartbeat round a quorum answered (Raft
//!   thesis §6.4).
//! - [`Majority::is_quorum`] / [`JointMajority::is_quorum`]: whether a set of nodes is a quorum. CheckQuorum asks it of the
//!   nodes a leader heard from.
//! - [`Majority::vote_result`] / [`JointMajority::vote_result`]: whether a [`VoteTally`] of grants and refusals has won, lost, or
//!   may still go either way.
//!
//! Safety rests on any two quorums sharing a node: the voters that elect a later leader include
//! one that holds every committed entry, and it refuses a candidate whose log lacks one (§5.4).
//!
//! Worked example, five voters whose match indices are `[9 7 7 5 2]`: three nodes (a majority)
//! have reached index 7 but only one has reached 8, so 7 is the quorum value: sorted from the
//! highest, the value at position `5 / 2`. With four voters, `[9 7 5 2]`, a majority is three
//! and the quorum value 5: an even cluster needs one node more than half, so a 2–2 split
//! decides nothing, and a 2–2 vote is lost.
//!
//! # Joint consensus
//!
//! While its membership changes (Raft thesis §4.3) a cluster decides with a joint configuration:
//! the old voters and the new ones must each agree. [`JointMajority`] answers the same three
//! questions over two [`Majority`] values, `incoming` and `outgoing`: the lower of their quorum
//! values; a quorum of both; won if both won, lost if either lost, pending otherwise. An empty
//! [`Majority`] agrees to everything (quorum value `u64::MAX`, every set a quorum, every tally
//! won), so a configuration that is not joint (`outgoing` empty) decides as `incoming` alone,
//! exactly as a plain [`Majority`] would; the core always asks a [`JointMajority`].
//!
//! Why both: old voters `{0,1,2}`, new voters `{2,3,4}`, joint. Nodes 0 and 1 alone are a
//! majority of the old voters, but not of the new, so an entry only they hold is not committed
//! (`min` of the old half's quorum value and the new half's), and a candidate they alone elect
//! has not won: any leader of the joint phase holds a majority of both, so it shares a voter
//! with any majority either configuration alone could form.
//!
//! Invariant: a [`NodeSet`] holds ids below [`MAX_PEERS`] only.

use smallvec::SmallVec;

use super::MAX_PEERS;

/// A set of node ids below [`MAX_PEERS`], as a bit set: node `i` is bit `i`.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub(super) struct NodeSet(u64);

impl NodeSet {
    /// No node.
    pub(super) const EMPTY: Self = Self(0);

    /// Nodes `0..n`: a whole cluster of `n`.
    ///
    /// # Panics
    ///
    /// If `n` is above [`MAX_PEERS`].
    pub(super) fn first(n: usize) -> Self {
        assert!(
            n <= MAX_PEERS,
            "a cluster of {n} nodes is above {MAX_PEERS}"
        );
        match n {
            0 => Self::EMPTY,
            n => Self(u64::MAX >> (MAX_PEERS - n)),
        }
    }

    /// The set whose bit `i` is node `i`.
    pub(super) fn from_bits(bits: u64) -> Self {
        Self(bits)
    }

    /// Bit `i` is node `i`.
    pub(super) fn bits(self) -> u64 {
        self.0
    }

    /// Only node `id`.
    pub(super) fn single(id: usize) -> Self {
        let mut set = Self::EMPTY;
        set.insert(id);
        set
    }

    /// Adds `id`.
    ///
    /// # Panics
    ///
    /// If `id` is not below [`MAX_PEERS`].
    pub(super) fn insert(&mut self, id: usize) {
        assert!(id < MAX_PEERS, "node {id} is not below {MAX_PEERS}");
        self.0 |= 1 << id;
    }

    /// Removes `id`, if it is there.
    pub(super) fn remove(&mut self, id: usize) {
        if id < MAX_PEERS {
            self.0 &= !(1 << id);
        }
    }

    /// Whether `id` is in the set.
    pub(super) fn contains(self, id: usize) -> bool {
        id < MAX_PEERS && self.0 & (1 << id) != 0
    }

    /// How many nodes the set holds.
    pub(super) fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// Whether the set holds no node.
    pub(super) fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The nodes in either set.
    pub(super) fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// The nodes in both sets.
    pub(super) fn intersection(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    /// The ids in the set, lowest first.
    pub(super) fn iter(self) -> impl Iterator<Item = usize> {
        let mut rest = self.0;
        std::iter::from_fn(move || {
            if rest == 0 {
                return None;
            }
            let id = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            Some(id)
        })
    }
}

impl std::fmt::Debug for NodeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// What a vote tally has come to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum VoteResult {
    /// Not yet a majority of grants, and enough voters have not answered to make one.
    Pending,
    /// A majority granted.
    Won,
    /// So many refused that the rest cannot make a majority even if they all grant.
    Lost,
}

/// The answers to one election (or pre-vote round): who granted, who refused.
///
/// A node's grant outweighs its refusal, whichever came first: a grant is a vote the node has
/// made durable and will not give anyone else in the term, so it counts as soon as it arrives.
/// The set of grants is thus exactly what a tally of grants alone would hold; refusals only let
/// a candidate learn early that it cannot win. Each node counts once, however often its answer
/// is delivered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct VoteTally {
    /// Invariant: disjoint from `rejected`.
    granted: NodeSet,
    rejected: NodeSet,
}

impl VoteTally {
    /// A tally holding only `candidate`'s vote for itself.
    pub(super) fn new(candidate: usize) -> Self {
        Self {
            granted: NodeSet::single(candidate),
            rejected: NodeSet::EMPTY,
        }
    }

    /// Records `node`'s answer.
    pub(super) fn record(&mut self, node: usize, granted: bool) {
        if granted {
            self.granted.insert(node);
            self.rejected.remove(node);
        } else if !self.granted.contains(node) {
            self.rejected.insert(node);
        }
    }

    /// The nodes that granted.
    pub(super) fn granted(&self) -> NodeSet {
        self.granted
    }

    /// The nodes that refused (and never granted).
    pub(super) fn rejected(&self) -> NodeSet {
        self.rejected
    }
}

/// A configuration in which a majority of the voters decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Majority {
    voters: NodeSet,
}

impl Majority {
    /// The configuration of `voters`.
    pub(super) fn new(voters: NodeSet) -> Self {
        Self { voters }
    }

    /// How many voters make a majority.
    fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// The highest value that a majority of voters has reached, given each voter's value
    /// (`value_of(id)`): sorted from the highest, the value at position `voters / 2`. Only
    /// voters are asked. `u64::MAX` if there are none (see the module docs).
    pub(super) fn quorum_value(&self, value_of: impl Fn(usize) -> u64) -> u64 {
        if self.voters.is_empty() {
            return u64::MAX;
        }
        let mut values: SmallVec<[u64; 8]> = self.voters.iter().map(value_of).collect();
        values.sort_unstable_by(|a, b| b.cmp(a));
        values[self.quorum() - 1]
    }

    /// Whether `nodes` holds a majority of the voters (nodes that are not voters count for
    /// nothing). Always true if there are no voters.
    pub(super) fn is_quorum(&self, nodes: NodeSet) -> bool {
        self.voters.is_empty() || nodes.intersection(self.voters).len() >= self.quorum()
    }

    /// What `tally` has come to in this configuration (answers from nodes that are not voters
    /// count for nothing). Always won if there are no voters.
    pub(super) fn vote_result(&self, tally: &VoteTally) -> VoteResult {
        if self.voters.is_empty() {
            return VoteResult::Won;
        }
        let granted = tally.granted.intersection(self.voters).len();
        let rejected = tally.rejected.intersection(self.voters).len();
        if granted >= self.quorum() {
            VoteResult::Won
        } else if self.voters.len() - rejected >= self.quorum() {
            VoteResult::Pending
        } else {
            VoteResult::Lost
        }
    }
}

/// A voting configuration that may be joint: a majority of `incoming` and, when `outgoing` is
/// not empty (joint consensus), a majority of `outgoing` too. With `outgoing` empty it decides
/// exactly as `incoming` alone (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct JointMajority {
    /// The voters of the configuration being moved to (or of the only one).
    incoming: Majority,
    /// The voters of the configuration being left; empty when not joint.
    outgoing: Majority,
}

impl JointMajority {
    /// The configuration of `incoming` and `outgoing` voters: both majorities decide (with
    /// `outgoing` empty, `incoming`'s alone).
    pub(super) fn joint(incoming: NodeSet, outgoing: NodeSet) -> Self {
        Self {
            incoming: Majority::new(incoming),
            outgoing: Majority::new(outgoing),
        }
    }

    /// The highest value that a majority of each half has reached: the lower of the two halves'
    /// quorum values (see [`Majority::quorum_value`]).
    pub(super) fn quorum_value(&self, value_of: impl Fn(usize) -> u64) -> u64 {
        let incoming = self.incoming.quorum_value(&value_of);
        if self.outgoing.voters.is_empty() {
            return incoming;
        }
        incoming.min(self.outgoing.quorum_value(value_of))
    }

    /// Whether `nodes` holds a majority of each half.
    pub(super) fn is_quorum(&self, nodes: NodeSet) -> bool {
        self.incoming.is_quorum(nodes) && self.outgoing.is_quorum(nodes)
    }

    /// What `tally` has come to: won if it won in both halves, lost if it lost in either.
    pub(super) fn vote_result(&self, tally: &VoteTally) -> VoteResult {
        match (
            self.incoming.vote_result(tally),
            self.outgoing.vote_result(tally),
        ) {
            (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
            (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
            _ => VoteResult::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[usize]) -> NodeSet {
        let mut set = NodeSet::EMPTY;
        for &id in ids {
            set.insert(id);
        }
        set
    }

    /// A tally in which `granted` granted and then `refused` refused.
    fn tally(granted: &[usize], refused: &[usize]) -> VoteTally {
        let mut tally = VoteTally::default();
        for &id in granted {
            tally.record(id, true);
        }
        for &id in refused {
            tally.record(id, false);
        }
        tally
    }

    #[test]
    fn node_sets() {
        assert_eq!(NodeSet::first(0), NodeSet::EMPTY);
        assert_eq!(NodeSet::first(3).iter().collect::<Vec<_>>(), [0, 1, 2]);
        let all = NodeSet::first(MAX_PEERS);
        assert_eq!(all.len(), MAX_PEERS);
        assert!(all.contains(MAX_PEERS - 1) && !all.contains(MAX_PEERS));
        let mut s = set(&[5, 1, 63]);
        assert_eq!(s.iter().collect::<Vec<_>>(), [1, 5, 63], "lowest first");
        s.remove(5);
        s.remove(99);
        assert_eq!(s, set(&[1, 63]));
        assert_eq!(s.intersection(set(&[0, 1, 2])), NodeSet::single(1));
        assert_eq!(format!("{s:?}"), "{1, 63}");
    }

    #[test]
    fn quorum_value_is_the_highest_a_majority_reached() {
        // (voters, value of node i at position i, want)
        let cases: [(&[usize], &[u64], u64); 10] = [
            (&[0], &[5], 5),
            (&[0, 1], &[5, 3], 3),
            (&[0, 1, 2], &[5, 3, 1], 3),
            (&[0, 1, 2], &[1, 3, 5], 3),
            (&[0, 1, 2], &[4, 4, 4], 4),
            (&[0, 1, 2, 3], &[9, 7, 5, 2], 5), // even: three of four
            (&[0, 1, 2, 3, 4], &[9, 7, 7, 5, 2], 7),
            (&[0, 1, 2, 3, 4], &[2, 9, 5, 7, 7], 7),
            (&[0, 2, 4], &[9, 0, 8, 0, 1], 8), // only voters count
            (&[], &[], u64::MAX),
        ];
        for (case, (voters, values, want)) in cases.into_iter().enumerate() {
            let majority = Majority::new(set(voters));
            assert_eq!(
                majority.quorum_value(|id| values[id]),
                want,
                "case {case}: voters {voters:?}, values {values:?}"
            );
        }
    }

    #[test]
    fn is_quorum_needs_more_than_half_of_the_voters() {
        // (cluster size, nodes heard from, want)
        let cases: [(usize, &[usize], bool); 13] = [
            (1, &[], false),
            (1, &[0], true),
            (2, &[0], false),
            (2, &[0, 1], true),
            (3, &[0], false),
            (3, &[2, 0], true),
            (4, &[0, 1], false), // a tie is not a majority
            (4, &[0, 1, 3], true),
            (5, &[0, 1], false),
            (5, &[0, 3, 4], true),
            (3, &[0, 10, 11], false), // nodes outside the configuration count for nothing
            (64, &[], false),
            (0, &[], true), // no voters: agrees to everything
        ];
        for (case, (n, nodes, want)) in cases.into_iter().enumerate() {
            let majority = Majority::new(NodeSet::first(n));
            assert_eq!(
                majority.is_quorum(set(nodes)),
                want,
                "case {case}: {nodes:?} of {n}"
            );
        }
    }

    #[test]
    fn vote_results() {
        use VoteResult::{Lost, Pending, Won};
        // (cluster size, granted, refused, want)
        let cases: [(usize, &[usize], &[usize], VoteResult); 16] = [
            (1, &[0], &[], Won),
            (2, &[0], &[], Pending),
            (2, &[0], &[1], Lost),
            (3, &[0], &[], Pending),
            (3, &[0], &[1], Pending), // node 2 can still make it two
            (3, &[0], &[1, 2], Lost),
            (3, &[0, 2], &[1], Won),
            (4, &[0, 1], &[2], Pending),
            (4, &[0, 1], &[2, 3], Lost), // a tie loses
            (4, &[0, 1, 2], &[3], Won),
            (5, &[0], &[1, 2], Pending),
            (5, &[0], &[1, 2, 3], Lost),
            (5, &[0, 1], &[2, 3], Pending),
            (5, &[0, 1, 2], &[3, 4], Won),
            (3, &[0], &[7, 8, 9], Pending), // answers from outside count for nothing
            (0, &[], &[1], Won),            // no voters: agrees to everything
        ];
        for (case, (n, granted, refused, want)) in cases.into_iter().enumerate() {
            let tally = tally(granted, refused);
            assert_eq!(
                Majority::new(NodeSet::first(n)).vote_result(&tally),
                want,
                "case {case}: {granted:?} granted, {refused:?} refused of {n}"
            );
        }
    }

    #[test]
    fn a_tally_counts_each_node_once_and_a_grant_over_a_refusal() {
        // (answers in order as (node, granted), want granted, want refused)
        type Case = (&'static [(usize, bool)], &'static [usize], &'static [usize]);
        let cases: [Case; 5] = [
            (&[(1, true), (1, true)], &[0, 1], &[]),
            (&[(1, false), (1, false)], &[0], &[1]),
            (&[(1, false), (1, true)], &[0, 1], &[]), // a grant outweighs a refusal
            (&[(1, true), (1, false)], &[0, 1], &[]),
            (&[(0, false)], &[0], &[]), // the candidate's own vote stands
        ];
        for (case, (answers, granted, refused)) in cases.into_iter().enumerate() {
            let mut tally = VoteTally::new(0);
            for &(node, grant) in answers {
                tally.record(node, grant);
            }
            assert_eq!(tally.granted(), set(granted), "case {case}: granted");
            assert_eq!(tally.rejected(), set(refused), "case {case}: refused");
        }
    }

    #[test]
    fn a_configuration_that_is_not_joint_decides_as_its_majority() {
        for n in 0..=9 {
            let plain = Majority::new(NodeSet::first(n));
            let joint = JointMajority::joint(NodeSet::first(n), NodeSet::EMPTY);
            for bits in 0u64..(1 << n) {
                let nodes = NodeSet(bits);
                assert_eq!(
                    joint.is_quorum(nodes),
                    plain.is_quorum(nodes),
                    "{n}: {nodes:?}"
                );
                let value = |id: usize| (bits >> id & 1) * 10 + id as u64;
                assert_eq!(
                    joint.quorum_value(value),
                    plain.quorum_value(value),
                    "{n}: {nodes:?}"
                );
                let mut tally = VoteTally::default();
                for id in 0..n {
                    tally.record(id, bits >> id & 1 == 1);
                }
                assert_eq!(
                    joint.vote_result(&tally),
                    plain.vote_result(&tally),
                    "{n}: {nodes:?}"
                );
            }
        }
    }

    #[test]
    fn a_joint_configuration_needs_both_majorities() {
        // old voters {0,1,2}, new voters {2,3,4}
        let joint = JointMajority::joint(set(&[2, 3, 4]), set(&[0, 1, 2]));
        // (nodes, is a quorum)
        let cases: [(&[usize], bool); 7] = [
            (&[0, 1], false),      // the old majority alone
            (&[3, 4], false),      // the new majority alone
            (&[0, 1, 3], false),   // old majority, one new
            (&[0, 2, 3], true),    // both, sharing node 2
            (&[0, 1, 3, 4], true), // both, disjoint
            (&[2], false),
            (&[0, 1, 2, 3, 4], true),
        ];
        for (case, (nodes, want)) in cases.into_iter().enumerate() {
            assert_eq!(joint.is_quorum(set(nodes)), want, "case {case}: {nodes:?}");
        }
        // (match index of nodes 0..5, want): the lower of the two halves' quorum values
        let cases: [([u64; 5], u64); 4] = [
            ([9, 9, 1, 1, 1], 1), // acknowledged by the old majority only: not committed
            ([1, 1, 1, 9, 9], 1), // by the new majority only
            ([9, 1, 9, 9, 1], 9), // by both, through node 2
            ([9, 7, 5, 6, 3], 5),
        ];
        for (case, (values, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                joint.quorum_value(|id| values[id]),
                want,
                "case {case}: {values:?}"
            );
        }
        use VoteResult::{Lost, Pending, Won};
        // (granted, refused, want)
        let cases: [(&[usize], &[usize], VoteResult); 6] = [
            (&[0, 1], &[], Pending),  // old won, new pending
            (&[0, 1], &[3, 4], Lost), // old won, new lost
            (&[0, 1, 3], &[], Pending),
            (&[0, 2, 3], &[], Won),
            (&[3, 4], &[0, 1], Lost),   // new won, old lost
            (&[5, 6, 7], &[], Pending), // non-voters count for nothing
        ];
        for (case, (granted, refused, want)) in cases.into_iter().enumerate() {
            let tally = tally(granted, refused);
            assert_eq!(
                joint.vote_result(&tally),
                want,
                "case {case}: {granted:?} {refused:?}"
            );
        }
    }
}
