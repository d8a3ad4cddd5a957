//! A cluster configuration: who votes, who only learns, and, during joint consensus, who voted
//! before. See docs/membership.md for how configurations change.
//!
//! A [`Membership`] is what a configuration entry ([`super::EntryKind::Config`]) holds, encoded
//! by [`Membership::encode`]: a version byte, then the voters, the learners and the outgoing
//! voters as three 64-bit sets (bit `i` is node `i`), little-endian. Decoding checks what
//! [`Membership::new`] checks, so a configuration read from a log or a frame is one the core
//! could have made.
//!
//! Invariants: at least one voter; learners are neither voters nor outgoing voters; every id is
//! below [`MAX_PEERS`].

use bytes::Bytes;

use super::MAX_PEERS;
use super::quorum::{JointMajority, NodeSet};

/// The version byte that opens an encoded [`Membership`].
const ENCODING_VERSION: u8 = 1;
/// Bytes of an encoded [`Membership`].
const ENCODED_BYTES: usize = 1 + 3 * 8;

/// A cluster configuration: the voters, the learners, and while the cluster is joint, the
/// voters of the configuration it leaves (Raft thesis §4.3).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Membership {
    /// Invariant: not empty.
    voters: NodeSet,
    /// Invariant: disjoint from `voters` and `outgoing`.
    learners: NodeSet,
    /// Empty unless joint.
    outgoing: NodeSet,
}

/// Why a configuration is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipError {
    /// It would leave no voter.
    NoVoters,
    /// A node id is not below [`MAX_PEERS`].
    IdTooLarge(usize),
    /// A node is both a learner and a voter (of the incoming or the outgoing configuration).
    LearnerIsVoter(usize),
    /// The bytes are not an encoded configuration.
    Malformed(&'static str),
}

impl std::fmt::Display for MembershipError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoVoters => write!(f, "a configuration needs at least one voter"),
            Self::IdTooLarge(id) => write!(f, "node id {id} is not below {MAX_PEERS}"),
            Self::LearnerIsVoter(id) => write!(f, "node {id} is both a learner and a voter"),
            Self::Malformed(why) => write!(f, "not an encoded configuration: {why}"),
        }
    }
}

impl std::error::Error for MembershipError {}

/// The set of `ids`, refusing an id at or above [`MAX_PEERS`].
fn node_set(ids: impl IntoIterator<Item = usize>) -> Result<NodeSet, MembershipError> {
    let mut set = NodeSet::EMPTY;
    for id in ids {
        if id >= MAX_PEERS {
            return Err(MembershipError::IdTooLarge(id));
        }
        set.insert(id);
    }
    Ok(set)
}

impl Membership {
    /// The configuration a cluster of `peers` nodes starts with: nodes `0..peers` all vote.
    ///
    /// # Panics
    ///
    /// If `peers` is 0 or above [`MAX_PEERS`]; the public API validates it first.
    pub fn initial(peers: usize) -> Self {
        assert!(
            peers > 0 && peers <= MAX_PEERS,
            "a cluster has 1 to {MAX_PEERS} nodes, not {peers}"
        );
        Self {
            voters: NodeSet::first(peers),
            learners: NodeSet::EMPTY,
            outgoing: NodeSet::EMPTY,
        }
    }

    /// A configuration that is not joint: `voters` vote, `learners` only learn.
    ///
    /// # Errors
    ///
    /// [`MembershipError`] if there is no voter, an id is not below [`MAX_PEERS`], or a node is
    /// in both lists.
    pub fn new(
        voters: impl IntoIterator<Item = usize>,
        learners: impl IntoIterator<Item = usize>,
    ) -> Result<Self, MembershipError> {
        Self::checked(node_set(voters)?, node_set(learners)?, NodeSet::EMPTY)
    }

    fn checked(
        voters: NodeSet,
        learners: NodeSet,
        outgoing: NodeSet,
    ) -> Result<Self, MembershipError> {
        if voters.is_empty() {
            return Err(MembershipError::NoVoters);
        }
        if let Some(id) = learners.intersection(voters.union(outgoing)).iter().next() {
            return Err(MembershipError::LearnerIsVoter(id));
        }
        Ok(Self {
            voters,
            learners,
            outgoing,
        })
    }

    /// The joint configuration that moves from this one to `target` (which is not joint):
    /// `target`'s voters and learners, with this configuration's voters outgoing. If the voters
    /// do not change, `target` itself: there is nothing to agree on twice.
    ///
    /// # Errors
    ///
    /// [`MembershipError::LearnerIsVoter`] if one of `target`'s learners votes now: a voter
    /// leaves the voters first, and may come back as a learner in a later change.
    pub fn enter_joint(&self, target: &Self) -> Result<Self, MembershipError> {
        if self.voters == target.voters {
            return Ok(Self {
                outgoing: NodeSet::EMPTY,
                ..*target
            });
        }
        Self::checked(target.voters, target.learners, self.voters)
    }

    /// The configuration a joint one leaves to: the same without outgoing voters. Itself if
    /// not joint.
    pub fn leave_joint(&self) -> Self {
        Self {
            outgoing: NodeSet::EMPTY,
            ..*self
        }
    }

    /// Whether the configuration is joint (has outgoing voters).
    pub fn is_joint(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// The voters (of the incoming configuration, while joint), lowest first.
    pub fn voters(&self) -> impl Iterator<Item = usize> + use<> {
        self.voters.iter()
    }

    /// The learners, lowest first.
    pub fn learners(&self) -> impl Iterator<Item = usize> + use<> {
        self.learners.iter()
    }

    /// The outgoing voters while joint (none otherwise), lowest first.
    pub fn outgoing(&self) -> impl Iterator<Item = usize> + use<> {
        self.outgoing.iter()
    }

    /// Whether `id` votes: a voter of either half while joint.
    pub fn is_voter(&self, id: usize) -> bool {
        self.voters.contains(id) || self.outgoing.contains(id)
    }

    /// Whether `id` is a member: a voter of either half or a learner.
    pub fn contains(&self, id: usize) -> bool {
        self.members().contains(id)
    }

    /// Every voter, of either half while joint: the nodes a candidate asks for votes.
    pub(super) fn voter_set(&self) -> NodeSet {
        self.voters.union(self.outgoing)
    }

    /// Every member: the nodes a leader replicates to.
    pub(super) fn members(&self) -> NodeSet {
        self.voters.union(self.outgoing).union(self.learners)
    }

    /// The quorums of this configuration: a majority of the voters, and of the outgoing voters
    /// too while joint. Learners count for nothing.
    pub(super) fn quorum(&self) -> JointMajority {
        JointMajority::joint(self.voters, self.outgoing)
    }

    /// The quorums of this configuration with its learners counted as incoming voters: what
    /// [`super::Bug::LearnerInQuorum`] commits with, and nothing else.
    pub(super) fn quorum_with_learners(&self) -> JointMajority {
        JointMajority::joint(self.voters.union(self.learners), self.outgoing)
    }

    /// The bytes of a configuration entry holding this configuration (see the module docs).
    pub fn encode(&self) -> Bytes {
        let mut buf = Vec::with_capacity(ENCODED_BYTES);
        buf.push(ENCODING_VERSION);
        for set in [self.voters, self.learners, self.outgoing] {
            buf.extend_from_slice(&set.bits().to_le_bytes());
        }
        Bytes::from(buf)
    }

    /// The configuration `bytes` encode.
    ///
    /// # Errors
    ///
    /// [`MembershipError::Malformed`] if the length or the version is wrong, and the errors of
    /// [`Membership::new`] if the sets break its rules.
    pub fn decode(bytes: &[u8]) -> Result<Self, MembershipError> {
        if bytes.len() != ENCODED_BYTES {
            return Err(MembershipError::Malformed("wrong length"));
        }
        if bytes[0] != ENCODING_VERSION {
            return Err(MembershipError::Malformed("unknown version"));
        }
        let set = |i: usize| {
            let mut word = [0; 8];
            word.copy_from_slice(&bytes[1 + 8 * i..9 + 8 * i]);
            NodeSet::from_bits(u64::from_le_bytes(word))
        };
        Self::checked(set(0), set(1), set(2))
    }
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = f.debug_struct("Membership");
        s.field("voters", &self.voters);
        s.field("learners", &self.learners);
        if self.is_joint() {
            s.field("outgoing", &self.outgoing);
        }
        s.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(it: impl Iterator<Item = usize>) -> Vec<usize> {
        it.collect()
    }

    #[test]
    fn new_refuses_what_no_cluster_can_run() {
        // (voters, learners, want)
        type Case = (
            &'static [usize],
            &'static [usize],
            Result<(), MembershipError>,
        );
        let cases: [Case; 5] = [
            (&[0, 1, 2], &[3], Ok(())),
            (&[], &[1], Err(MembershipError::NoVoters)),
            (&[0, 64], &[], Err(MembershipError::IdTooLarge(64))),
            (&[0, 1], &[1], Err(MembershipError::LearnerIsVoter(1))),
            (&[5], &[], Ok(())),
        ];
        for (case, (voters, learners, want)) in cases.into_iter().enumerate() {
            let got = Membership::new(voters.iter().copied(), learners.iter().copied());
            assert_eq!(got.map(|_| ()), want, "case {case}");
        }
    }

    #[test]
    fn a_change_of_voters_goes_through_joint_and_leaves_it() {
        let old = Membership::new([0, 1, 2], [3]).unwrap();
        let target = Membership::new([1, 2, 3], [4]).unwrap();
        let joint = old.enter_joint(&target).unwrap();
        assert!(joint.is_joint());
        assert_eq!(ids(joint.voters()), [1, 2, 3]);
        assert_eq!(ids(joint.outgoing()), [0, 1, 2]);
        assert_eq!(ids(joint.learners()), [4]);
        assert!(joint.is_voter(0) && joint.is_voter(3) && !joint.is_voter(4));
        assert!(joint.contains(4) && !joint.contains(5));
        // Node 0 alone with node 1 is the old majority only: not a quorum while joint.
        let quorum = joint.quorum();
        let mut nodes = NodeSet::single(0);
        nodes.insert(1);
        assert!(!quorum.is_quorum(nodes));
        nodes.insert(3);
        assert!(quorum.is_quorum(nodes));
        assert_eq!(joint.leave_joint(), target);

        // Only learners change: no joint phase.
        let more_learners = Membership::new([0, 1, 2], [3, 4]).unwrap();
        assert_eq!(old.enter_joint(&more_learners), Ok(more_learners));
        // A voter cannot become a learner in the same change.
        let demote = Membership::new([1, 2], [0]).unwrap();
        assert_eq!(
            old.enter_joint(&demote),
            Err(MembershipError::LearnerIsVoter(0))
        );
    }

    #[test]
    fn the_encoding_round_trips_and_refuses_what_new_refuses() {
        let joint = Membership::initial(3)
            .enter_joint(&Membership::new([0, 1, 63], [5]).unwrap())
            .unwrap();
        for m in [Membership::initial(1), Membership::initial(64), joint] {
            let bytes = m.encode();
            assert_eq!(bytes.len(), ENCODED_BYTES, "{m:?}");
            assert_eq!(Membership::decode(&bytes), Ok(m));
        }
        let good = joint.encode();
        for cut in 0..good.len() {
            assert_eq!(
                Membership::decode(&good[..cut]),
                Err(MembershipError::Malformed("wrong length")),
                "cut at {cut}"
            );
        }
        let mut bad = good.to_vec();
        bad[0] = 2;
        assert_eq!(
            Membership::decode(&bad),
            Err(MembershipError::Malformed("unknown version"))
        );
        let mut no_voters = good.to_vec();
        no_voters[1..9].fill(0);
        assert_eq!(
            Membership::decode(&no_voters),
            Err(MembershipError::NoVoters)
        );
        let mut learner_votes = good.to_vec();
        learner_votes[9] |= 1; // node 0 a learner, and an outgoing voter
        assert_eq!(
            Membership::decode(&learner_votes),
            Err(MembershipError::LearnerIsVoter(0))
        );
    }
}
