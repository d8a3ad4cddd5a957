//! The bug hooks are wired: hooks that switch a bug on make the core break that rule.

use super::*;

/// Hooks with one switch: the bug it holds, if any, is on.
struct Switch(Option<Bug>);

impl Hooks for Switch {
    fn has(&self, bug: Bug) -> bool {
        self.0 == Some(bug)
    }
}

#[test]
fn with_double_vote_switched_on_a_node_votes_twice_in_a_term() {
    let mut voter = Core::with_hooks(0, 3, CoreConfig::default(), 1, 0, Switch(None));
    voter.step(0, 1, request_vote(1, 0, 0));
    assert!(
        the_vote_reply(&drain(&mut voter), 1).granted,
        "the first vote"
    );
    voter.step(0, 2, request_vote(1, 0, 0));
    assert!(
        !the_vote_reply(&drain(&mut voter), 2).granted,
        "switched off: one vote per term"
    );
    assert_eq!(voter.voted_for(), Some(1));

    voter.hooks_mut().0 = Some(Bug::DoubleVote);
    assert_eq!(voter.hooks().0, Some(Bug::DoubleVote));
    voter.step(0, 2, request_vote(1, 0, 0));
    assert!(
        the_vote_reply(&drain(&mut voter), 2).granted,
        "switched on: a second vote in term 1"
    );
    assert_eq!((voter.term(), voter.voted_for()), (1, Some(2)));
}

#[test]
fn with_a_bug_switched_on_the_debug_checks_stand_aside() {
    // A bug may break a local invariant on purpose: the simulator's checker must find it, so
    // the core's own debug check does not panic first.
    let hooks = Switch(Some(Bug::TruncateWithoutConflict));
    let mut core = Core::with_hooks(0, 3, CoreConfig::default(), 1, 0, hooks);
    core.commit_index = 5;
    core.tick(0);
    assert!(core.check_invariants().is_err(), "broken, and not reported");
}
