//! Durability of Cairn stripes under node churn: a Monte Carlo simulator that can see
//! losses far too rare to observe directly.
//!
//! Cairn stores a file as stripes of `n = k + m` Reed-Solomon pieces on `n` distinct nodes;
//! any `k` pieces rebuild the stripe. Nodes fail, audits notice missing pieces some time
//! later, and a stripe is repaired once too few of its pieces are known to be healthy.
//! This crate estimates the probability that a stripe is lost, and what repair costs, for
//! given code and churn parameters.
//!
//! ```
//! let params = sim::Params {
//!     k: 10,
//!     m: 4,
//!     node_mttf_days: 365.0,
//!     repair_hours: 12.0,
//!     audit_hours: 24.0,
//!     years: 1.0,
//!     trials: 2_000,
//!     ..sim::Params::default()
//! };
//! let report = sim::run(&params)?;
//! println!("{report}");
//! assert!(report.loss_per_year.value < 0.02);
//! # Ok::<(), sim::SimError>(())
//! ```
//!
//! # The model
//!
//! - **Nodes.** `nodes` nodes, each of which fails permanently (losing every piece it
//!   holds) after an exponential lifetime of mean `node_mttf_days`, independently of all
//!   others. A failed node is replaced by a fresh, empty one, so the network keeps `nodes`
//!   nodes.
//! - **Stripes.** A stripe's `n = k + m` pieces sit on `n` distinct nodes. The stripe is
//!   **lost** the moment more than `m` of its pieces are lost (fewer than `k` survive),
//!   whether or not anyone has noticed yet. Each trial starts with a fully healthy stripe.
//! - **Detection.** A lost piece is noticed a time uniform in `[0, audit_hours]` after its
//!   node fails (independently per piece): audits of each piece come round on a timer of
//!   that period. Until then it still counts as healthy for repair decisions. (The storage
//!   node's timer is jittered in `[0.5, 1.5)` times its period; the delay from a failure to
//!   the next audit then has mean `0.54` periods rather than `0.5`: close enough.)
//! - **Repair** is lazy, with threshold `t` (default `k + ceil(m/2)`, as in the storage
//!   node): when no repair of the stripe is running and fewer than `t` of its pieces are
//!   healthy-as-far-as-known, a repair starts. It takes exactly `repair_hours`, then
//!   restores every piece that was known to be missing *when it started* (it reads `k`
//!   pieces and writes the missing ones to other nodes; new pieces sit on fresh nodes with
//!   fresh lifetimes). Pieces lost or noticed while it runs wait for a later repair, which
//!   starts as soon as this one ends if the stripe is still below the threshold, or once
//!   enough further losses are noticed. With `m = 0` nothing can be repaired and the first
//!   failure loses the stripe.
//! - **Failure domains** (off by default). The `nodes` nodes are spread evenly over
//!   `domains` failure domains (an operator's machines, an IPv4 /24, an IPv6 /48): the
//!   first `nodes % domains` domains hold one node more than the others; `domains = 0`
//!   makes every node its own domain. Each domain is lost whole after an exponential time
//!   of mean `domain_mttf_days` (infinite, the default: never), independently of other
//!   domains and of node failures; a domain loss destroys every piece on every node of
//!   the domain at once, and its nodes are replaced by fresh, empty ones in the same
//!   domain (as is a single failed node), so domain sizes never change. Each piece it
//!   destroys is noticed by its own audit (uniform delay, independently), exactly as after
//!   a node failure. Placement, by `spread_domains`:
//!   - **spread** (the default, Cairn's rule): the pieces of a stripe sit in distinct
//!     domains (this needs `domains >= n`), and a rebuilt piece goes to a domain that none
//!     of the stripe's live pieces uses. A domain loss then costs a stripe one piece at
//!     most, and since every domain is lost at the same rate, each piece simply has a
//!     second independent exponential clock: per stripe the model is the one above with
//!     node failure rate `1 / node_mttf_days + 1 / domain_mttf_days`. Exact, and
//!     importance sampling applies unchanged.
//!   - **random**: a stripe's `n` pieces go to `n` distinct nodes drawn uniformly from all
//!     `nodes`, and a rebuilt piece to a node drawn uniformly from those holding none of
//!     the stripe's live pieces (the node of a lost piece has been replaced by a fresh one
//!     and may be drawn again), so several pieces may share a domain. The simulator follows
//!     how many live pieces each domain holds: each live piece's node fails at rate
//!     `1 / node_mttf_days`, each domain holding `c` live pieces is lost at rate
//!     `1 / domain_mttf_days` and takes all `c` at once. Placement is drawn afresh for
//!     every trial and every repair (which domains hold pieces is all that matters: domains
//!     of a size are exchangeable, and by memorylessness their age does not matter). Here
//!     `nodes` matters to the per-stripe process. Importance sampling does not model
//!     failures of several pieces at once, so these runs are plain Monte Carlo
//!     ([`Params::domain_losses_correlated`], and the report says so).
//!
//! What the model leaves out, each of which makes real losses more likely than it says:
//! correlated failures other than whole-domain losses (a software release taking many
//! nodes of many domains at once, a domain losing only part of its nodes, domains failing
//! together); transient outages (nodes that are away and come back, which cost audits and
//! maybe needless repairs, but lose nothing here); bandwidth limits and queueing (a repair
//! always takes `repair_hours`, however many run at once, e.g. after a node or domain
//! loss that hits many stripes); failed repairs (a repair never fails, and reads succeed
//! from any `k` survivors); undetected corruption other than whole-node loss; and the
//! time-to-first-audit of newly written pieces beyond the uniform delay. Lifetimes are
//! exponential (no infant mortality or wear-out).
//!
//! By memorylessness the whole network reduces to one stripe's holders: every live piece's
//! node fails at rate `1 / node_mttf_days` whatever its age, and replacement nodes are
//! fresh, so one stripe's life is a process of its own, and `nodes` only checks that
//! `n` distinct nodes exist and scales network-wide traffic (and, with random placement
//! over failure domains, sets the domain sizes). Stripes share nodes and domains, so
//! losses of different stripes are correlated; the per-stripe probability is still exact,
//! but the chance that *some* stripe of many is lost is not `stripes * p` if failures
//! cluster, and a domain loss clusters them: with spread placement it takes one piece from
//! each of many stripes at once, which costs a stripe no more than a node failure but
//! starts many repairs together (whose bandwidth the model does not limit).
//!
//! # The simulation
//!
//! Event-driven: a trial jumps from event to event (a node failure or domain loss, a
//! detection, a repair completing, the horizon) and never steps through time. Failure
//! clocks are exponential with total rate `live * lambda` (plus `occupied domains * mu`
//! when pieces share domains), redrawn at every event (exact, by memorylessness);
//! detection times are drawn at each failure and kept sorted; a repair's completion time
//! is fixed when it starts. Nothing is allocated per trial; trials are split into chunks
//! of 2048, each seeded from the seed and its index (xoshiro256++ via splitmix64) and run
//! on all cores, so a report depends only on the parameters and the seed.
//!
//! # Estimating rare losses: importance sampling
//!
//! For codes like 16+8 or 29+51 the loss probability is far below `1 / trials` (1e-6 to
//! 1e-50 a year), so plain Monte Carlo sees no loss at all. [`run_importance`] makes losses
//! common in simulation and weights each by its likelihood ratio:
//!
//! - **Where to bias.** A stripe is in an *alarm window* while at least `a = n - t + 1` of
//!   its pieces are lost (noticed or not): once noticed, these trigger a repair. Losing the
//!   stripe needs `d = m + 1 - lost` further failures before the repair due restores the
//!   pieces, which happens at a known time: the running repair's end, or the detection
//!   time that will trigger it plus `repair_hours`. Before a window there is nothing to
//!   race (with lazy repair the stripe waits for losses to accumulate), so only windows
//!   are biased: the exponential failure clocks inside them and, for one of the two
//!   bridges below, the detection delays of pieces failing inside them.
//! - **How.** Inside a window, for each segment between events, the time to the next
//!   failure is drawn as the first of `d` points spread over the hours left before the
//!   deadline `E` (a "bridge": for uniform points, the conditional law of a Poisson process
//!   given `d` points by `E`, which makes the `d` failures arrive in time). There are two
//!   bridges and each biased window uses one of them, at random. The plain one spreads the
//!   points uniformly. The weighted one accounts for a subtlety of lazy repair: a piece
//!   failing at `x` before the trigger time `D` and noticed before `D` starts the repair
//!   early, which shortens the window. It weights `x` by the chance that this does not cut
//!   the window much (the mean over the detection delay `u` of `phi(u) = ((u + R') / (D -
//!   x + R'))^(d-1)`, `R' = E - D`, the chance that the remaining failures still fit), and
//!   draws that piece's detection delay from its uniform law tilted by `phi`. With many
//!   failures to race (29+51 needs 26 within about a day) the weighted bridge is what makes
//!   the estimate work; with few, the plain one is a little better; the mixture of both
//!   costs at most a factor 2 in variance against the better one. Each bridge is mixed with
//!   probability `eps = 1 / (2 (d + 2))` with the true law (for the delay tilt too), so that
//!   paths the bridge does not favour (a window running past its first deadline) keep a
//!   bounded likelihood ratio. Segments where failures are already as likely as the
//!   bridge would make them (`live * lambda * (E - t) >= d`) are left alone. A segment of
//!   length `s` ending in a failure has likelihood ratio `p/q = lambda_tot e^(-lambda_tot
//!   s) / q(s)`, one ending without failure `e^(-lambda_tot s) / Q(s)`, with `lambda_tot =
//!   live * lambda` and `q`, `Q` the sampling law's density and survival function (for a
//!   plain change of rate to `lambda'` these would be `(lambda_tot / lambda')
//!   e^(-(lambda_tot - lambda') s)` and `e^(-(lambda_tot - lambda') s)`); a tilted
//!   detection delay contributes its density ratio. Repair times and all other delays keep
//!   their true laws and cancel from the ratio.
//! - **Which window.** Biasing every window of a long horizon would multiply dozens of
//!   window ratios and the variance would grow exponentially with the horizon. Instead each
//!   trial draws `u` uniform in `[0, T]` and biases only the first window opening after
//!   `u`. The sampling law is the mixture over `u` of these one-window laws, whose density
//!   relative to the true law is `(sum_j g_j r_j + (T - s_K)) / T`, where windows `j =
//!   1..K` open at times `s_j`, `g_j = s_j - s_(j-1)` (`s_0 = 0`) and `r_j` is the
//!   density ratio `q/p` of window `j`'s segments and delays (the mean over the two
//!   bridges; computed for every window, biased or not). A trial that loses its stripe at
//!   time `<= T` scores the inverse of that, `T / (sum_j g_j r_j + (T - s_K))`; others
//!   score 0. This is an unbiased estimator of `P(loss within
//!   T)` (a mixture / balance-heuristic importance sampler), its variance does not blow up
//!   with the number of windows, and it needs no renewal or exponential approximation.
//! - **Interval.** The 95% interval is the normal one from the sample variance of the
//!   scores, `mean +- 1.96 sd / sqrt(trials)`; the report gives the relative standard
//!   error too.
//!
//! Limits of the estimator: the interval is only as good as the sample variance. With
//! heavy-tailed weights (a poor change of measure for some parameter set) the variance can
//! be underestimated, and the estimate lands low with a confidently narrow interval.
//! Signs of that: a relative error that does not shrink like `1 / sqrt(trials)`, or
//! estimates from different seeds that disagree beyond their intervals. Paths the bias
//! does not favour (loss spread over several windows, which needs two rare events) are
//! sampled only at their true, tiny rate: they are counted correctly on average but, in
//! practice, missed; they are negligible when losses are rare. The tests check the
//! estimator against plain Monte Carlo and closed forms where losses are common.
//!
//! [`run`] picks the method: a plain pilot (always run, since it also measures repair
//! traffic) decides whether plain sampling would see enough losses, and importance
//! sampling is used otherwise. [`run_plain`] and [`run_importance`] force one. When a
//! domain loss can take several pieces of a stripe (random placement, domains of several
//! nodes, finite domain MTTF), the bridges above, which bring failures one piece at a time,
//! would not be a valid change of measure as they stand: every method then runs plain
//! Monte Carlo (and [`run_importance`] returns [`run_plain`]'s report), which cannot see
//! losses rarer than about `1 / trials`. With spread placement importance sampling stays
//! exact, since domain losses only add to each piece's own failure rate.
//!
//! # Outputs
//!
//! See [`Report`]: loss probability within the horizon and per year with 95% intervals,
//! simulated stripe-years and node-days, repairs and rebuilt pieces per stripe-year, and
//! repair I/O per node per day. [`compare_codes`] and [`markdown_table`] produce a table
//! over several codes.

mod bridge;
mod domains;
mod engine;
mod params;
mod report;
mod rng;
pub mod scale;
mod stats;
#[cfg(test)]
mod tests;

pub use params::{HOURS_PER_YEAR, MAX_EXPECTED_FAILURES_PER_TRIAL, Params, SimError};
pub use report::{
    Estimate, MIN_PLAIN_LOSSES, Method, PILOT_TRIALS, Report, compare_codes, markdown_table, run,
    run_importance, run_plain,
};
