//! Requests that involve credits or a user's plan ([`Ask`]): decided in one atomic step over
//! the key's windows and credits and the plan's windows and credits. A request passes only when
//! every one of them has room for its cost, and only then is it counted in all of them.

use std::sync::Arc;

use base64::Engine;

use super::credits::{Balance, CreditState, Credits};
use super::decision::{Counts, Decision, WindowCount};
use super::{Bucket, Policy, assemble};
use crate::db::UserId;

/// One holder's part of an ask: its windows and, if it has a balance, its credit terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meter {
    pub bucket: Bucket,
    pub policy: Policy,
    pub credits: Option<Credits>,
}

/// A key's request with credits, or of a user with a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// The key's owner: on Redis, all of an ask's values share the owner's hash slot.
    pub owner: UserId,
    pub key: Meter,
    pub plan: Option<Meter>,
    /// `;pk=:<base64 of "u:<owner>">:`, the plan's partition key in RateLimit headers (an
    /// sf-binary), rendered once with the ask rather than on every request.
    pub partition: Arc<str>,
}

impl Ask {
    pub fn new(owner: UserId, key: Meter, plan: Option<Meter>) -> Ask {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("u:{owner}"));
        Ask {
            owner,
            key,
            plan,
            partition: format!(";pk=:{encoded}:").into(),
        }
    }

    /// A copy with allocations of its own, for a thread to keep (see `keys::cache`).
    pub fn deep_copy(&self) -> Ask {
        let copy = |m: &Meter| Meter {
            policy: m.policy.deep_copy(),
            ..m.clone()
        };
        Ask {
            owner: self.owner,
            key: copy(&self.key),
            plan: self.plan.as_ref().map(copy),
            partition: self.partition.as_ref().into(),
        }
    }

    pub fn meters(&self) -> impl Iterator<Item = (Part, &Meter)> {
        std::iter::once((Part::Key, &self.key)).chain(self.plan.iter().map(|p| (Part::Plan, p)))
    }
}

/// Which part of an ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    Key,
    Plan,
}

/// Balances a store did not hold (a first use, or a Redis that restarted), as the database
/// checkpointed them. A store uses a seed only where it has no balance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seeds {
    pub key: Option<CreditState>,
    pub plan: Option<CreditState>,
}

impl Seeds {
    pub fn of(&self, part: Part) -> Option<CreditState> {
        match part {
            Part::Key => self.key,
            Part::Plan => self.plan,
        }
    }
}

/// What a store answers an ask (and, wrapped, a plain request on its way back from Redis).
// Unboxed: a decision is moved once per request, and a box would allocate on every one.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charged {
    Decided(Decision),
    /// A balance the store does not hold and no seed was given for: nothing was counted; ask
    /// again with seeds.
    Unseeded,
}

/// The plan's and the credits' side of a decision (the key's windows are its `counts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    pub cost: u64,
    pub owner: UserId,
    /// The plan's partition key, as headers render it (see [`Ask::partition`]).
    pub partition: Arc<str>,
    pub plan: Option<Counts>,
    pub credits: Option<Balance>,
    pub plan_credits: Option<Balance>,
}

/// Why a request was refused, and how long until it could pass (`None`: not before an admin
/// adds credits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Window {
        count: WindowCount,
        wait_ms: u64,
        part: Part,
    },
    Credits {
        balance: Balance,
        wait_ms: Option<u64>,
        part: Part,
    },
}

impl Refusal {
    pub fn wait_ms(&self) -> Option<u64> {
        match self {
            Refusal::Window { wait_ms, .. } => Some(*wait_ms),
            Refusal::Credits { wait_ms, .. } => *wait_ms,
        }
    }
}

/// The counts an ask's holders had before the request: per meter the windows' (previous,
/// current) counts and, with credits, the balance (already refilled to now).
#[derive(Debug, Clone, Default)]
pub struct Before {
    pub key: Vec<(u64, u64)>,
    pub plan: Vec<(u64, u64)>,
    pub credits: Option<u64>,
    pub plan_credits: Option<u64>,
}

impl Before {
    /// Whether `cost` fits everywhere: the shared arithmetic of both stores.
    pub fn admits(&self, ask: &Ask, now_ms: u64, cost: u64) -> bool {
        let fits = |policy: &Policy, counts: &[(u64, u64)]| {
            assemble(policy, now_ms, counts.iter().copied(), false)
                .counts
                .iter()
                .all(|c| c.admits(cost))
        };
        fits(&ask.key.policy, &self.key)
            && ask.plan.as_ref().is_none_or(|p| fits(&p.policy, &self.plan))
            && self.credits.is_none_or(|c| c >= cost)
            && self.plan_credits.is_none_or(|c| c >= cost)
    }

    /// Counts `cost` everywhere.
    pub fn count(&mut self, cost: u64) {
        self.key
            .iter_mut()
            .chain(&mut self.plan)
            .for_each(|(_, c)| *c += cost);
        for balance in [&mut self.credits, &mut self.plan_credits].into_iter().flatten() {
            *balance -= cost;
        }
    }

    /// The decision, from the counts after the request was (or was not) counted.
    pub fn decision(&self, ask: &Ask, now_ms: u64, cost: u64, allowed: bool) -> Decision {
        let mut decision = assemble(&ask.key.policy, now_ms, self.key.iter().copied(), allowed);
        let balance = |credits: Option<Credits>, remaining: Option<u64>| {
            Some(Balance::of(credits?, remaining?, now_ms))
        };
        decision.quota = Some(Box::new(Quota {
            cost,
            owner: ask.owner,
            partition: ask.partition.clone(),
            plan: ask
                .plan
                .as_ref()
                .map(|p| assemble(&p.policy, now_ms, self.plan.iter().copied(), allowed).counts),
            credits: balance(ask.key.credits, self.credits),
            plan_credits: balance(ask.plan.as_ref().and_then(|p| p.credits), self.plan_credits),
        }));
        decision
    }
}

impl Decision {
    /// Every window as a reason (for a refusal no single window explains: a cost above what a
    /// window ever holds).
    fn every_window(&self) -> Vec<Refusal> {
        let plan = self
            .quota
            .iter()
            .flat_map(|q| q.plan.iter().flat_map(|p| p.iter()));
        let key = self.counts.iter().map(|c| (c, Part::Key));
        key.chain(plan.map(|c| (c, Part::Plan)))
            .map(|(c, part)| Refusal::Window {
                count: *c,
                wait_ms: c.retry_after_ms(),
                part,
            })
            .collect()
    }

    /// Everything that refuses this request, the longest wait first (a balance with no refill
    /// coming waits longest).
    pub fn refused_by(&self) -> Option<Refusal> {
        if self.allowed {
            return None;
        }
        let cost = self.quota.as_ref().map_or(1, |q| q.cost.max(1));
        let windows = |counts: &[WindowCount], part| {
            counts
                .iter()
                .filter(|c| !c.admits(cost))
                .map(|c| Refusal::Window {
                    count: *c,
                    wait_ms: c.retry_after_ms(),
                    part,
                })
                .collect::<Vec<_>>()
        };
        let mut refusals = windows(&self.counts, Part::Key);
        if let Some(quota) = &self.quota {
            if let Some(plan) = &quota.plan {
                refusals.extend(windows(plan, Part::Plan));
            }
            for (balance, part) in [(quota.credits, Part::Key), (quota.plan_credits, Part::Plan)] {
                if let Some(balance) = balance.filter(|b| !b.admits(cost)) {
                    let wait_ms = balance.next_refill_ms.map(|at| at.saturating_sub(self.now_ms));
                    refusals.push(Refusal::Credits {
                        balance,
                        wait_ms,
                        part,
                    });
                }
            }
        }
        if refusals.is_empty() {
            refusals = self.every_window();
        }
        refusals
            .into_iter()
            .max_by_key(|r| r.wait_ms().unwrap_or(u64::MAX))
    }
}
