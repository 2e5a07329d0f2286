//! The repair job's decisions, by example and under random environments.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

const SETTLE: Duration = Duration::from_secs(2);

fn node(i: u8) -> NodeId {
    NodeId([i; 32])
}

const ME: u8 = 0;

/// Runs `job` to its end against a scripted world; returns every action taken.
struct World {
    now: Duration,
    /// Who holds the claim at each step (the last entry repeats).
    claims: Vec<Option<NodeId>>,
    plan: Plan,
    /// What each node answers when asked what it holds (default: nothing).
    holds: HashMap<NodeId, Holds>,
    /// What each node answers to `Hold` (default: stored, new).
    held: HashMap<NodeId, Option<bool>>,
}

impl World {
    fn run(&mut self, job: &mut RepairJob) -> Vec<(Duration, Option<NodeId>, Action)> {
        let mut out = Vec::new();
        let mut event = Event::Start;
        for step in 0..1000 {
            let claim = self.claims[step.min(self.claims.len() - 1)];
            let action = job.step(self.now, claim, event);
            out.push((self.now, claim, action.clone()));
            event = match action {
                Action::Journal | Action::Claim => Event::Done,
                Action::WaitUntil(t) => {
                    self.now = self.now.max(t);
                    Event::Done
                }
                Action::Plan => Event::Planned(self.plan.clone()),
                Action::Rebuild(_) => Event::Rebuilt,
                Action::Ask { target, .. } => {
                    Event::Asked(self.holds.get(&target).copied().unwrap_or(Holds::Nothing))
                }
                Action::Hold { target, .. } => {
                    Event::Held(self.held.get(&target).copied().unwrap_or(Some(false)))
                }
                Action::Finish(_) | Action::Leave => {
                    assert!(job.is_over());
                    return out;
                }
            };
            self.now += Duration::from_millis(10);
        }
        panic!("the job did not end in 1000 steps");
    }
}

fn world(pieces: Vec<(usize, Vec<NodeId>)>, holding: Vec<NodeId>) -> World {
    World {
        now: Duration::ZERO,
        claims: vec![Some(node(ME))],
        plan: Plan {
            pieces,
            holding,
            domains: HashMap::new(),
        },
        holds: HashMap::new(),
        held: HashMap::new(),
    }
}

fn actions(trace: &[(Duration, Option<NodeId>, Action)]) -> Vec<Action> {
    trace.iter().map(|(_, _, a)| a.clone()).collect()
}

#[test]
fn journals_claims_settles_then_places_each_piece_on_a_node_of_its_own() {
    let mut w = world(
        vec![(1, vec![node(5), node(6)]), (3, vec![node(5), node(6)])],
        vec![node(2)],
    );
    let mut job = RepairJob::new(node(ME), SETTLE);
    let trace = w.run(&mut job);
    assert_eq!(
        actions(&trace),
        vec![
            Action::Journal,
            Action::Claim,
            Action::WaitUntil(Duration::from_millis(20) + SETTLE),
            Action::Plan,
            Action::Rebuild(vec![1, 3]),
            Action::Claim,
            Action::Ask {
                index: 1,
                target: node(5)
            },
            Action::Hold {
                index: 1,
                target: node(5)
            },
            Action::Claim,
            // Node 5 holds a piece now: piece 3 goes to node 6.
            Action::Ask {
                index: 3,
                target: node(6)
            },
            Action::Hold {
                index: 3,
                target: node(6)
            },
            Action::Finish(Outcome::Repaired {
                placed: 2,
                rebuilt: 2
            }),
        ]
    );
}

#[test]
fn a_competing_claim_that_wins_the_settle_makes_the_job_leave() {
    let mut w = world(vec![(0, vec![node(5)])], vec![]);
    w.claims = vec![
        Some(node(ME)),
        Some(node(ME)),
        Some(node(ME)),
        Some(node(9)),
    ];
    let mut job = RepairJob::new(node(ME), SETTLE);
    let a = actions(&w.run(&mut job));
    assert_eq!(a.last(), Some(&Action::Leave));
    assert!(!a.contains(&Action::Plan));
}

#[test]
fn a_takeover_during_placement_stops_it_without_releasing_the_claim() {
    let mut w = world(vec![(0, vec![node(5)]), (1, vec![node(6)])], vec![]);
    // Ours through the first placement; then another node's.
    w.claims = vec![Some(node(ME)); 8];
    w.claims.push(Some(node(7)));
    let mut job = RepairJob::new(node(ME), SETTLE);
    let a = actions(&w.run(&mut job));
    assert_eq!(a.last(), Some(&Action::Leave));
    let holds = a
        .iter()
        .filter(|a| matches!(a, Action::Hold { .. }))
        .count();
    assert_eq!(holds, 1);
}

#[test]
fn a_target_holding_this_very_piece_has_it_placed_and_one_holding_another_is_passed() {
    let mut w = world(vec![(0, vec![node(5), node(6), node(7)])], vec![]);
    w.holds.insert(node(5), Holds::Other);
    w.holds.insert(node(6), Holds::ThisPiece);
    let mut job = RepairJob::new(node(ME), SETTLE);
    let a = actions(&w.run(&mut job));
    assert!(!a.iter().any(|a| matches!(a, Action::Hold { .. })));
    assert_eq!(
        a.last(),
        Some(&Action::Finish(Outcome::Repaired {
            placed: 1,
            rebuilt: 0
        }))
    );
    assert!(job.holding().contains(&node(5)));
}

#[test]
fn targets_in_a_domain_of_their_own_come_first() {
    let mut w = world(vec![(0, vec![node(5), node(6)])], vec![node(2)]);
    // Node 5 shares domain 1 with holder 2; node 6 is apart.
    w.plan.domains = HashMap::from([(node(2), vec![1]), (node(5), vec![1]), (node(6), vec![2])]);
    let mut job = RepairJob::new(node(ME), SETTLE);
    let a = actions(&w.run(&mut job));
    let first_ask = a.iter().find(|a| matches!(a, Action::Ask { .. }));
    assert_eq!(
        first_ask,
        Some(&Action::Ask {
            index: 0,
            target: node(6)
        })
    );
}

#[test]
fn nothing_missing_on_a_fresh_look_finishes_at_once_and_failures_finish_the_job() {
    let mut w = world(vec![], vec![]);
    let mut job = RepairJob::new(node(ME), SETTLE);
    assert_eq!(
        actions(&w.run(&mut job)).last(),
        Some(&Action::Finish(Outcome::Healthy))
    );
    let mut job = RepairJob::new(node(ME), SETTLE);
    assert_eq!(
        job.step(Duration::ZERO, None, Event::Start),
        Action::Journal
    );
    assert_eq!(
        job.step(Duration::ZERO, None, Event::Failed("disk".into())),
        Action::Finish(Outcome::Failed("disk".into()))
    );
    assert!(job.is_over());
}

fn holds_strategy() -> impl Strategy<Value = Holds> {
    prop_oneof![
        3 => Just(Holds::Nothing),
        1 => Just(Holds::ThisPiece),
        1 => Just(Holds::Other),
    ]
}

proptest! {
    /// Under any world: the job journals before it claims, never plans before the
    /// settle time, renews before every piece, never offers a piece to a node holding
    /// one of the stripe (nor two pieces to one node), tries shared domains only after
    /// the rest, stops at a takeover without releasing, and ends.
    #[test]
    fn the_job_keeps_its_rules_in_any_world(
        pieces in proptest::collection::vec(proptest::collection::vec(1u8..10, 0..6), 0..5),
        holding in proptest::collection::vec(1u8..10, 0..4),
        domains in proptest::collection::vec(proptest::collection::vec(0u32..4, 0..2), 10),
        holds in proptest::collection::vec(holds_strategy(), 10),
        held in proptest::collection::vec(prop_oneof![Just(None), Just(Some(false)), Just(Some(true))], 10),
        claims in proptest::collection::vec(prop_oneof![6 => Just(Some(ME)), 1 => Just(None), 1 => (1u8..10).prop_map(Some)], 1..40),
    ) {
        let plan_pieces: Vec<(usize, Vec<NodeId>)> = pieces
            .iter()
            .enumerate()
            .map(|(i, ts)| (i, ts.iter().map(|&t| node(t)).collect()))
            .collect();
        let mut w = World {
            now: Duration::ZERO,
            claims: claims.iter().map(|c| c.map(node)).collect(),
            plan: Plan {
                pieces: plan_pieces.clone(),
                holding: holding.iter().map(|&h| node(h)).collect(),
                domains: (0..10u8).map(|i| (node(i), domains[usize::from(i)].clone())).collect(),
            },
            holds: (0..10u8).map(|i| (node(i), holds[usize::from(i)])).collect(),
            held: (0..10u8).map(|i| (node(i), held[usize::from(i)])).collect(),
        };
        let mut job = RepairJob::new(node(ME), SETTLE);
        let trace = w.run(&mut job);
        let a = actions(&trace);
        prop_assert_eq!(&a[0], &Action::Journal);
        prop_assert!(a.len() < 2 || a[1] == Action::Claim);
        // Planning waits out the settle time after the claim, and needs the claim.
        if let Some(p) = a.iter().position(|x| *x == Action::Plan) {
            let claimed_at = trace[1].0;
            prop_assert!(trace[p].0 >= claimed_at + SETTLE);
            prop_assert_eq!(trace[p].1, Some(node(ME)));
        }
        let mut holding: Vec<NodeId> = w.plan.holding.clone();
        holding.push(node(ME));
        let mut renewed = false;
        let mut asked: Option<NodeId> = None;
        let mut placed_on: Vec<NodeId> = Vec::new();
        for (i, (_, claim, action)) in trace.iter().enumerate() {
            match action {
                Action::Claim if i > 1 => {
                    // Renewals only while the stripe is not another's.
                    prop_assert!(claim.is_none_or(|c| c == node(ME)));
                    renewed = true;
                }
                Action::Ask { index, target } => {
                    prop_assert!(renewed, "asked before renewing the claim");
                    prop_assert!(!holding.contains(target), "asked a node that holds a piece");
                    prop_assert!(plan_pieces.iter().any(|(p, ts)| p == index && ts.contains(target)));
                    // A shared-domain target only once no apart target is left untried.
                    let shares = |t: &NodeId| {
                        let mine = &domains[usize::from(t.0[0])];
                        !mine.is_empty() && holding.iter().filter(|h| *h != t).any(|h| {
                            domains[usize::from(h.0[0])].iter().any(|d| mine.contains(d))
                        })
                    };
                    if shares(target) {
                        let (_, ts) = plan_pieces.iter().find(|(p, _)| p == index).unwrap();
                        let apart_left = ts.iter().any(|t| !shares(t) && !holding.contains(t)
                            && !trace[..i].iter().any(|(_, _, a)| matches!(a, Action::Ask { index: j, target: u } if j == index && u == t)));
                        prop_assert!(!apart_left, "a shared domain before an apart one");
                    }
                    asked = Some(*target);
                    match w.holds[target] {
                        Holds::Other => holding.push(*target),
                        Holds::ThisPiece => { holding.push(*target); placed_on.push(*target); renewed = false; }
                        Holds::Nothing => {}
                    }
                }
                Action::Hold { target, .. } => {
                    prop_assert_eq!(asked, Some(*target), "a hold not preceded by asking the target");
                    prop_assert!(!holding.contains(target));
                    if w.held[target].is_some() {
                        holding.push(*target);
                        prop_assert!(!placed_on.contains(target), "two pieces on one node");
                        placed_on.push(*target);
                        renewed = false;
                    }
                }
                Action::Leave => {
                    // Only when another node has (or nobody has) the claim.
                    prop_assert!(*claim != Some(node(ME)));
                }
                Action::Finish(Outcome::Repaired { placed, .. }) => {
                    prop_assert_eq!(*placed, plan_pieces.len());
                    prop_assert_eq!(placed_on.len(), plan_pieces.len());
                }
                Action::Finish(Outcome::Partial { placed, of }) => {
                    prop_assert!(placed < of);
                    prop_assert_eq!(*placed, placed_on.len());
                }
                _ => {}
            }
        }
    }
}
