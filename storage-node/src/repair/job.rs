//! One stripe's repair by this node, as a state machine without I/O.
//!
//! The async shell (`net::node::repairs`) carries out each [`Action`] and feeds back what
//! came of it as an [`Event`]; every decision is made here, from those events, the time
//! since the job started and who holds the stripe's claim now:
//!
//! ```text
//! Journal ─▶ Claim ─▶ wait `settle` ─▶ claim still ours? ─no─▶ Leave
//!                                           │ yes
//!                                         Plan ─▶ nothing missing ─▶ Finish
//!                                           │
//!                                        Rebuild ─▶ for each rebuilt piece:
//!      claim taken over? ─yes─▶ Leave        renew the Claim, then for each free target
//!                                            (failure domains of their own first):
//!                                            Ask what it holds ─nothing─▶ Hold
//!                                      ─▶ Finish (all placed, or how many were)
//! ```
//!
//! The job is journalled before its claim is gossiped, so a crash leaves a job to resume.
//! A rebuilt piece is offered only to a node that, as far as the job knows, holds no piece
//! of the stripe, and each node it places a piece on joins those holding one, so one more
//! loss never costs the stripe two pieces. A target that already holds this very piece
//! (a repairer that died placed it there) counts as placed. `Finish` releases the claim;
//! `Leave` does not, since another node's claim now stands.

use std::{collections::HashMap, time::Duration};

use crate::ids::NodeId;

/// What the job knows when it plans, from a fresh look at the stripe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The pieces to rebuild (indices into the stripe), each with the nodes it may go
    /// to, best first.
    pub pieces: Vec<(usize, Vec<NodeId>)>,
    /// Nodes that hold a piece of the stripe, this one among them.
    pub holding: Vec<NodeId>,
    /// The failure domains (numbered) of nodes, as far as known. A node not listed
    /// shares no domain with anyone.
    pub domains: HashMap<NodeId, Vec<u32>>,
}

/// What a target says it holds of the stripe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holds {
    /// No piece of it.
    Nothing,
    /// The very piece being placed, and no other (a repairer that died placed it).
    ThisPiece,
    /// Another piece, or it could not say (then it counts as holding one).
    Other,
}

/// What came of the last [`Action`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The job is new: nothing has been done yet.
    Start,
    /// The action was carried out (journalled, claim gossiped, waited).
    Done,
    /// The action failed: the job gives up with this reason.
    Failed(String),
    /// The fresh look asked for by [`Action::Plan`].
    Planned(Plan),
    /// The pieces asked for by [`Action::Rebuild`] are rebuilt and ready to hand out.
    Rebuilt,
    /// The answer to [`Action::Ask`].
    Asked(Holds),
    /// The answer to [`Action::Hold`]: `None` if the target refused or did not answer,
    /// else whether it held the piece already.
    Held(Option<bool>),
}

/// What the shell should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Record the job in the store, so a crash leaves it to resume.
    Journal,
    /// Gossip this node's claim on the stripe (or renew it).
    Claim,
    /// Wait until this much time has passed since the job started, then send `Done`.
    WaitUntil(Duration),
    /// Look afresh at the stripe and send `Planned`.
    Plan,
    /// Fetch `k` healthy pieces and rebuild these (indices into the stripe).
    Rebuild(Vec<usize>),
    /// Ask `target` which pieces of the stripe it holds.
    Ask {
        /// The piece being placed.
        index: usize,
        /// Who to ask.
        target: NodeId,
    },
    /// Ask `target` to hold rebuilt piece `index`.
    Hold {
        /// The piece.
        index: usize,
        /// Where.
        target: NodeId,
    },
    /// Remove the job from the journal and release the claim: the job is over.
    Finish(Outcome),
    /// Remove the job from the journal and say nothing: another node has the stripe.
    Leave,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every missing piece was placed; `rebuilt` of them were new to their holder.
    Repaired {
        /// Pieces placed.
        placed: usize,
        /// Of those, how many their holder did not have already.
        rebuilt: usize,
    },
    /// Nothing was missing on a fresh look.
    Healthy,
    /// Some pieces found no node; a later round tries again.
    Partial {
        /// Pieces placed.
        placed: usize,
        /// Pieces to place.
        of: usize,
    },
    /// The job could not go on.
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    New,
    Journalling,
    Claiming,
    Settling {
        until: Duration,
    },
    Planning,
    Rebuilding,
    /// Renewing the claim before placing piece `cur` of the plan.
    Renewing,
    Asking(NodeId),
    Holding(NodeId),
    Over,
}

/// One stripe's repair.
#[derive(Debug, Clone)]
pub struct RepairJob {
    me: NodeId,
    settle: Duration,
    phase: Phase,
    plan: Plan,
    /// Position in `plan.pieces` of the piece being placed.
    cur: usize,
    /// Targets of the current piece asked already.
    tried: Vec<NodeId>,
    placed: usize,
    rebuilt: usize,
    /// Who held the stripe's claim at the last step.
    claim: Option<NodeId>,
}

impl RepairJob {
    /// A job for this node (`me`) that waits `settle` after claiming for competing
    /// claims to arrive.
    pub fn new(me: NodeId, settle: Duration) -> Self {
        Self {
            me,
            settle,
            phase: Phase::New,
            plan: Plan::default(),
            cur: 0,
            tried: Vec::new(),
            placed: 0,
            rebuilt: 0,
            claim: None,
        }
    }

    /// Whether the job has ended (its last action was `Finish` or `Leave`).
    pub fn is_over(&self) -> bool {
        self.phase == Phase::Over
    }

    /// Nodes that hold a piece of the stripe, as far as the job knows now.
    pub fn holding(&self) -> &[NodeId] {
        &self.plan.holding
    }

    /// Whether `target` shares a failure domain with a node holding a piece.
    pub fn shares_domain(&self, target: &NodeId) -> bool {
        let Some(mine) = self.plan.domains.get(target).filter(|d| !d.is_empty()) else {
            return false;
        };
        self.plan
            .holding
            .iter()
            .filter(|h| *h != target)
            .filter_map(|h| self.plan.domains.get(h))
            .any(|ds| ds.iter().any(|d| mine.contains(d)))
    }

    /// The next action, given what came of the last one, the time since the job
    /// started and who holds the stripe's claim now.
    pub fn step(&mut self, now: Duration, claim: Option<NodeId>, event: Event) -> Action {
        self.claim = claim;
        if let Event::Failed(reason) = event {
            return self.finish(Outcome::Failed(reason));
        }
        match (self.phase.clone(), event) {
            (Phase::New, _) => {
                self.phase = Phase::Journalling;
                Action::Journal
            }
            (Phase::Journalling, _) => {
                self.phase = Phase::Claiming;
                Action::Claim
            }
            (Phase::Claiming, _) => {
                let until = now + self.settle;
                self.phase = Phase::Settling { until };
                Action::WaitUntil(until)
            }
            (Phase::Settling { until }, _) if now < until => Action::WaitUntil(until),
            (Phase::Settling { .. }, _) => {
                if claim != Some(self.me) {
                    // Another node claimed first (or ours lapsed unseen): it is theirs.
                    self.phase = Phase::Over;
                    return Action::Leave;
                }
                self.phase = Phase::Planning;
                Action::Plan
            }
            (Phase::Planning, Event::Planned(plan)) => {
                if plan.pieces.is_empty() {
                    return self.finish(Outcome::Healthy);
                }
                let want = plan.pieces.iter().map(|(i, _)| *i).collect();
                if !plan.holding.contains(&self.me) {
                    self.plan.holding.push(self.me);
                }
                self.plan.pieces = plan.pieces;
                self.plan.domains = plan.domains;
                for h in plan.holding {
                    if !self.plan.holding.contains(&h) {
                        self.plan.holding.push(h);
                    }
                }
                self.phase = Phase::Rebuilding;
                Action::Rebuild(want)
            }
            (Phase::Rebuilding, Event::Rebuilt) => self.start_piece(),
            (Phase::Renewing, _) => {
                self.tried.clear();
                self.next_target()
            }
            (Phase::Asking(target), Event::Asked(holds)) => match holds {
                Holds::Nothing => {
                    self.phase = Phase::Holding(target);
                    Action::Hold {
                        index: self.plan.pieces[self.cur].0,
                        target,
                    }
                }
                Holds::ThisPiece => {
                    self.placed_on(target, false);
                    self.start_piece()
                }
                Holds::Other => {
                    self.plan.holding.push(target);
                    self.next_target()
                }
            },
            (Phase::Holding(target), Event::Held(Some(already))) => {
                self.placed_on(target, !already);
                self.start_piece()
            }
            (Phase::Holding(_), Event::Held(None)) => self.next_target(),
            (Phase::Over, _) => Action::Leave,
            (phase, event) => self.finish(Outcome::Failed(format!(
                "repair job got {event:?} while {phase:?}"
            ))),
        }
    }

    fn finish(&mut self, outcome: Outcome) -> Action {
        self.phase = Phase::Over;
        Action::Finish(outcome)
    }

    fn placed_on(&mut self, target: NodeId, new: bool) {
        // It now holds a piece of the stripe: no other rebuilt piece goes there.
        self.plan.holding.push(target);
        self.placed += 1;
        self.rebuilt += usize::from(new);
        self.cur += 1;
    }

    /// Starts placing piece `cur` (or finishes): leave if another node took the stripe
    /// over, else renew the claim first.
    fn start_piece(&mut self) -> Action {
        if self.cur >= self.plan.pieces.len() {
            let of = self.plan.pieces.len();
            return self.finish(if self.placed == of {
                Outcome::Repaired {
                    placed: self.placed,
                    rebuilt: self.rebuilt,
                }
            } else {
                Outcome::Partial {
                    placed: self.placed,
                    of,
                }
            });
        }
        if self.claim.is_some_and(|c| c != self.me) {
            // A slow repair outlived its lease and another node took the stripe up: leave
            // the rest to it rather than place a piece twice.
            self.phase = Phase::Over;
            return Action::Leave;
        }
        self.phase = Phase::Renewing;
        Action::Claim
    }

    /// Asks the next target for the current piece, or moves on to the next piece when
    /// none is left. Of the targets not asked yet and holding nothing of the stripe,
    /// those in failure domains of their own come first, in the plan's order; a shared
    /// domain only when none of those is left (holders are judged as they are now, since
    /// each target found holding a piece joins them).
    fn next_target(&mut self) -> Action {
        let (index, targets) = &self.plan.pieces[self.cur];
        let free = targets
            .iter()
            .filter(|t| !self.tried.contains(t) && !self.plan.holding.contains(t));
        let next = free
            .clone()
            .find(|t| !self.shares_domain(t))
            .or_else(|| free.clone().next())
            .copied();
        if let Some(t) = next {
            let index = *index;
            self.tried.push(t);
            self.phase = Phase::Asking(t);
            return Action::Ask { index, target: t };
        }
        // No node took this piece; the next one may still find a place.
        self.cur += 1;
        self.start_piece()
    }
}

#[cfg(test)]
mod tests;
