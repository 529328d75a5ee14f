//! The Redis counter store, shared by every instance. Decisions are timed by the Redis server's
//! clock, so instances with skewed clocks agree, and made by one script (EVALSHA, loaded once)
//! that checks and counts atomically.
//!
//! Requests are coalesced: callers queue their request and their thread's dispatcher task sends
//! whatever has queued while the previous call was out as a single script call (one per caller on a
//! cluster, where a call must stay within one slot). Under load a hot key costs one Redis round
//! trip per batch instead of per request; with no load a request goes out at once. Exactness is
//! untouched: the script decides each request in arrival order as if it ran alone.

use std::cell::RefCell;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::join_all;
use redis::{ErrorKind, RedisError, RedisResult};
use tokio::sync::{mpsc, oneshot};

use crate::shared_redis::{RedisConn, RedisTarget};

use super::credits::{Adjustment, CreditOp, CreditState, Credits};
use super::{Ask, Before, Bucket, Charged, Decision, Policy, Seeds, assemble};
use crate::db::UserId;

static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(include_str!("rate_limit.lua")));
static CREDITS: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(include_str!("credits.lua")));

/// Requests sent in one script call at most.
const MAX_BATCH: usize = 256;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

struct Request {
    bucket: Bucket,
    policy: Policy,
    cost: u32,
    clock: Option<u64>,
    /// An ask (credits or a plan) instead of a plain caller's request (`bucket`, `policy`).
    ask: Option<(Arc<Ask>, Seeds)>,
    reply: oneshot::Sender<RedisResult<Charged>>,
}

#[derive(Clone)]
pub struct RedisStore {
    conn: RedisConn,
    lanes: Arc<Lanes>,
    /// "<prefix>:cr:"
    credits: Arc<str>,
}

/// A dispatcher per thread that uses the store ("lane"), spawned on that thread's runtime on
/// first use: a request and its answer never cross threads (each actix worker coalesces its
/// own requests), only a whole batch does, to the connection.
struct Lanes {
    /// Tells this store's lanes apart from other stores' in [`LANES`].
    id: u64,
    dispatcher: Dispatcher,
    /// The open lanes. Threads hold only weak senders, so dropping the store ends its
    /// dispatchers.
    senders: Mutex<Vec<mpsc::UnboundedSender<Request>>>,
}

thread_local! {
    static LANES: RefCell<Vec<(u64, mpsc::WeakUnboundedSender<Request>)>> = const { RefCell::new(Vec::new()) };
}

impl RedisStore {
    /// A store over `conn` (to `target`), its keys under `prefix`; a script call that takes
    /// longer than `timeout` fails every request in it.
    pub fn new(conn: RedisConn, target: RedisTarget, prefix: &str, timeout: Duration) -> RedisStore {
        static IDS: AtomicU64 = AtomicU64::new(0);
        let dispatcher = Dispatcher {
            conn: conn.clone(),
            target,
            prefix: format!("{prefix}:rc:").into(),
            credits: format!("{prefix}:cr:").into(),
            timeout,
        };
        let lanes = Lanes {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            dispatcher,
            senders: Mutex::new(Vec::new()),
        };
        RedisStore {
            conn,
            lanes: Arc::new(lanes),
            credits: format!("{prefix}:cr:").into(),
        }
    }

    /// Counts `cost` requests of `bucket` if every window of `policy` has room. `clock`
    /// overrides Redis's clock (Unix ms), for tests that move time.
    pub async fn hit(
        &self,
        bucket: Bucket,
        policy: &Policy,
        cost: u32,
        clock: Option<u64>,
    ) -> RedisResult<Decision> {
        let charged = self.send(bucket, policy.clone(), cost, clock, None).await?;
        match charged {
            Charged::Decided(decision) => Ok(decision),
            Charged::Unseeded => Err(malformed()),
        }
    }

    /// Decides an ask (see `limits::ask`) in the same script call as other requests.
    pub async fn charge(
        &self,
        ask: &Arc<Ask>,
        seeds: Seeds,
        cost: u32,
        clock: Option<u64>,
    ) -> RedisResult<Charged> {
        let (bucket, policy) = (ask.key.bucket, ask.key.policy.clone());
        self.send(bucket, policy, cost, clock, Some((ask.clone(), seeds)))
            .await
    }

    async fn send(
        &self,
        bucket: Bucket,
        policy: Policy,
        cost: u32,
        clock: Option<u64>,
        ask: Option<(Arc<Ask>, Seeds)>,
    ) -> RedisResult<Charged> {
        let (reply, decision) = oneshot::channel();
        let request = Request {
            bucket,
            policy,
            cost,
            clock,
            ask,
            reply,
        };
        let gone = || RedisError::from((ErrorKind::IoError, "the Redis dispatcher has stopped"));
        self.lane().send(request).map_err(|_| gone())?;
        decision.await.map_err(|_| gone())?
    }

    /// A holder's balance (`credits.lua`): read, changed by an admin (from the seed when Redis
    /// holds none), or forgotten (answering what it was).
    pub async fn credits(
        &self,
        owner: UserId,
        bucket: Bucket,
        op: CreditOp,
        terms: Credits,
        now_ms: u64,
    ) -> RedisResult<Option<CreditState>> {
        let key = ask_key(&self.credits, owner, bucket);
        let (code, n, seed) = match op {
            CreditOp::Forget => (0, 0, None),
            CreditOp::Change(Adjustment::Add(n), seed) => (1, n, Some(seed)),
            CreditOp::Change(Adjustment::Set(n), seed) => (2, n, Some(seed)),
            CreditOp::Change(Adjustment::Rebase, seed) => (4, 0, Some(seed)),
            CreditOp::Read => (3, 0, None),
        };
        let amount = terms.refill.map_or(-1, |r| i64::from(r.amount));
        let given = seed.unwrap_or_default();
        let mut invocation = CREDITS.prepare_invoke();
        invocation
            .key(key)
            .arg(code)
            .arg(n)
            .arg(terms.period(now_ms))
            .arg(amount)
            .arg(terms.tag())
            .arg(seed_arg(seed))
            .arg(given.period)
            .arg(given.seq);
        let state: Vec<i64> = invocation.invoke_async(&mut self.conn.clone()).await?;
        let n = |v: i64| v.max(0) as u64;
        Ok(match state[..] {
            [remaining, period, seq, terms] => Some(CreditState {
                remaining: n(remaining),
                period: n(period),
                seq: n(seq),
                terms: n(terms),
            }),
            _ => None,
        })
    }

    /// This thread's lane, opened (its dispatcher spawned on the current runtime) when the
    /// thread has none or its runtime has gone.
    fn lane(&self) -> mpsc::UnboundedSender<Request> {
        let id = self.lanes.id;
        LANES.with_borrow_mut(|lanes| {
            let open = |weak: &mpsc::WeakUnboundedSender<Request>| weak.upgrade().filter(|s| !s.is_closed());
            if let Some(sender) = lanes.iter().find(|(i, _)| *i == id).and_then(|(_, w)| open(w)) {
                return sender;
            }
            lanes.retain(|(_, w)| open(w).is_some());
            let (sender, requests) = mpsc::unbounded_channel();
            tokio::spawn(self.lanes.dispatcher.clone().run(requests));
            let mut senders = self.lanes.senders.lock().unwrap_or_else(PoisonError::into_inner);
            senders.retain(|s| !s.is_closed());
            senders.push(sender.clone());
            lanes.push((id, sender.downgrade()));
            sender
        })
    }

    pub async fn ping(&self) -> RedisResult<()> {
        let mut conn = self.conn.clone();
        redis::cmd("PING").query_async::<()>(&mut conn).await
    }

    pub fn connection(&self) -> RedisConn {
        self.conn.clone()
    }
}

/// `-1` for no seed: the script then leaves a missing balance missing.
fn seed_arg(seed: Option<CreditState>) -> i64 {
    seed.map_or(-1, |s| s.remaining.min(Adjustment::MAX) as i64)
}

/// Where an ask's values live: under the owner's hash tag, so one script call (one slot on a
/// cluster) holds all of them.
fn ask_key(prefix: &str, owner: UserId, bucket: Bucket) -> String {
    format!("{prefix}{{u:{owner}}}:{bucket}")
}

#[derive(Clone)]
struct Dispatcher {
    conn: RedisConn,
    /// Where each lane opens a connection of its own, so its driver runs on the lane's thread.
    target: RedisTarget,
    /// "<prefix>:rc:"
    prefix: Arc<str>,
    /// "<prefix>:cr:"
    credits: Arc<str>,
    timeout: Duration,
}

/// The requests of one batch for one caller (same bucket, policy and clock), in arrival order.
struct Group {
    members: Vec<usize>,
}

impl Dispatcher {
    /// Until the store is dropped: takes what has queued (at least one request), decides it
    /// in one call, answers, repeats. One call out at a time per lane: measured against two,
    /// it makes larger batches, so fewer script calls (1,000 keys round-robin: about 11% more
    /// requests per second, one hot key and the half-load p99 unchanged).
    async fn run(mut self, mut requests: mpsc::UnboundedReceiver<Request>) {
        // Requests queue meanwhile. Without a connection of its own, the lane uses the shared
        // one (it reconnects by itself).
        if let Ok(conn) = RedisConn::connect(&self.target, CONNECT_TIMEOUT).await {
            self.conn = conn;
        }
        while let Some(batch) = take(&mut requests).await {
            self.settle(batch).await;
        }
    }

    /// Decides `batch` and answers each of its requests.
    async fn settle(&self, batch: Vec<Request>) {
        let decided = match tokio::time::timeout(self.timeout, self.decide(&batch)).await {
            Ok(decided) => decided,
            Err(_) => Err(RedisError::from((
                ErrorKind::IoError,
                "Redis did not answer in time",
            ))),
        };
        match decided {
            Ok(decisions) => {
                for (request, decision) in batch.into_iter().zip(decisions) {
                    let _ = request.reply.send(Ok(decision));
                }
            }
            Err(e) => {
                for request in batch {
                    let _ = request.reply.send(Err(copy(&e)));
                }
            }
        }
    }

    /// The script calls for `batch`: one for everything on a single node; on a cluster, one
    /// per plain caller and one per owner's asks (a call must stay within one slot). Clock
    /// overrides (tests only) split calls too: a call has one clock.
    fn plan<'b>(&self, batch: &'b [Request], groups: &'b [Group]) -> Vec<Call<'b>> {
        let joinable = matches!(self.conn, RedisConn::Single(_));
        let mut calls: Vec<Call<'b>> = Vec::new();
        for g in groups {
            let clock = batch[g.members[0]].clock;
            match calls.iter_mut().find(|c| joinable && c.clock == clock) {
                Some(call) => call.add_group(&self.prefix, batch, g),
                None => {
                    let mut call = Call::new(clock, None);
                    call.add_group(&self.prefix, batch, g);
                    calls.push(call);
                }
            }
        }
        let local_ms = crate::clock::Now::read().unix_ms();
        for (i, request) in batch.iter().enumerate() {
            let Some((ask, seeds)) = &request.ask else {
                continue;
            };
            let now_ms = request.clock.unwrap_or(local_ms);
            let owner = (!joinable).then_some(ask.owner);
            let prefixes = (&*self.prefix, &*self.credits);
            let added = calls
                .iter_mut()
                .filter(|c| c.clock == request.clock && c.owner == owner && (joinable || c.groups.is_empty()))
                .any(|c| c.join_ask(batch, i) || c.add_ask(prefixes, i, ask, *seeds, request.cost, now_ms));
            if !added {
                let mut call = Call::new(request.clock, owner);
                call.add_ask(prefixes, i, ask, *seeds, request.cost, now_ms);
                calls.push(call);
            }
        }
        calls
    }

    /// Decisions for `batch`, in its order.
    async fn decide(&self, batch: &[Request]) -> RedisResult<Vec<Charged>> {
        let groups = group(batch);
        let calls = self.plan(batch, &groups);
        let replies = join_all(calls.iter().map(|call| {
            let mut conn = self.conn.clone();
            async move { call.script.run(&mut conn).await }
        }))
        .await;
        let mut decisions: Vec<Option<Charged>> = vec![None; batch.len()];
        for (call, reply) in calls.iter().zip(replies) {
            call.answer(batch, &reply?, &mut decisions)?;
        }
        decisions.into_iter().map(|d| d.ok_or_else(malformed)).collect()
    }
}

/// One script call being put together: its arguments, and which requests it answers.
struct Call<'b> {
    clock: Option<u64>,
    /// On a cluster, the owner whose asks it carries (their slot).
    owner: Option<UserId>,
    groups: Vec<&'b Group>,
    /// Requests of one ask (the same key, seeds and terms) in arrival order, and where each
    /// of its meters is among the call's entries.
    asks: Vec<(Vec<usize>, AskEntries)>,
    script: ScriptCall,
}

/// Entry numbers (0-based) of one ask's values in a call.
#[derive(Clone, Copy)]
struct AskEntries {
    key: usize,
    key_credits: Option<usize>,
    plan: Option<usize>,
    plan_credits: Option<usize>,
}

impl AskEntries {
    /// The counts and balances of this ask's entries, as the call's requests so far left them.
    fn before(&self, held: &[Held]) -> Before {
        let windows = |e: Option<usize>| match e.map(|e| &held[e]) {
            Some(Held::Windows(counts)) => counts.clone(),
            _ => Vec::new(),
        };
        let credits = |e: Option<usize>| match e.map(|e| &held[e]) {
            Some(Held::Credits(balance)) => *balance,
            _ => None,
        };
        Before {
            key: windows(Some(self.key)),
            plan: windows(self.plan),
            credits: credits(self.key_credits),
            plan_credits: credits(self.plan_credits),
        }
    }

    /// Keeps what a group of requests left, for the next group that shares an entry.
    fn keep(&self, before: Before, held: &mut [Held]) {
        held[self.key] = Held::Windows(before.key);
        if let Some(e) = self.plan {
            held[e] = Held::Windows(before.plan);
        }
        for (e, balance) in [
            (self.key_credits, before.credits),
            (self.plan_credits, before.plan_credits),
        ] {
            if let Some(e) = e {
                held[e] = Held::Credits(balance);
            }
        }
    }
}

/// A script reply read from the front.
struct Reply<'r>(&'r [i64]);

impl<'r> Reply<'r> {
    fn take(&mut self, n: usize) -> RedisResult<&'r [i64]> {
        let (head, tail) = self.0.split_at_checked(n).ok_or_else(malformed)?;
        self.0 = tail;
        Ok(head)
    }

    /// `windows` (previous, current) pairs.
    fn pairs(&mut self, windows: usize) -> RedisResult<Vec<(u64, u64)>> {
        let values = self.take(2 * windows)?;
        Ok(values
            .chunks_exact(2)
            .map(|pair| (pair[0].max(0) as u64, pair[1].max(0) as u64))
            .collect())
    }
}

/// What the script answered for one entry, kept up to date through the call's requests.
#[derive(Clone)]
enum Held {
    Windows(Vec<(u64, u64)>),
    Credits(Option<u64>),
}

impl<'b> Call<'b> {
    fn new(clock: Option<u64>, owner: Option<UserId>) -> Call<'b> {
        Call {
            clock,
            owner,
            groups: Vec::new(),
            asks: Vec::new(),
            script: ScriptCall::new(clock),
        }
    }

    fn add_group(&mut self, prefix: &str, batch: &[Request], g: &'b Group) {
        let first = &batch[g.members[0]];
        let costs = g.members.iter().map(|&i| batch[i].cost);
        self.script.caller(prefix, first.bucket, &first.policy, costs);
        self.groups.push(g);
    }

    /// Adds request `i` to the call's last group if that is of the same ask: consecutive
    /// requests of one key are one group (a hot key's batch costs the script one pass over its
    /// entries, not one per request), while requests of keys under one plan stay decided in
    /// arrival order.
    fn join_ask(&mut self, batch: &[Request], i: usize) -> bool {
        let Some((ask, seeds)) = &batch[i].ask else {
            return false;
        };
        let Some((members, _)) = self.asks.last_mut() else {
            return false;
        };
        let Some((other, other_seeds)) = &batch[members[0]].ask else {
            return false;
        };
        if !((Arc::ptr_eq(ask, other) || ask == other) && seeds == other_seeds) {
            return false;
        }
        members.push(i);
        if let Some((_, costs)) = self.script.asks.last_mut() {
            costs.push(batch[i].cost);
        }
        true
    }

    /// Adds request `i`'s ask as a new group, unless a value it touches is already in this
    /// call under other terms (a key whose limits changed between two requests of one batch):
    /// false then.
    fn add_ask(
        &mut self,
        (windows, credits): (&str, &str),
        i: usize,
        ask: &Ask,
        seeds: Seeds,
        cost: u32,
        now_ms: u64,
    ) -> bool {
        let script = &mut self.script;
        let mark = script.entries.len();
        let mut entries = [None; 4];
        for (slot, (part, meter)) in ask.meters().enumerate() {
            // A plan of credits alone has no windows to keep.
            if slot == 0 || !meter.policy.windows().is_empty() {
                let windows_key = ask_key(windows, ask.owner, meter.bucket);
                entries[2 * slot] = script.entry(windows_key, Entry::Windows(meter.policy.clone()));
                if entries[2 * slot].is_none() {
                    entries[2 * slot] = Some(usize::MAX);
                }
            }
            if let Some(terms) = meter.credits {
                let entry = Entry::Credits {
                    period: terms.period(now_ms),
                    amount: terms.refill.map_or(-1, |r| i64::from(r.amount)),
                    tag: terms.tag(),
                    seed: seeds.of(part),
                };
                entries[2 * slot + 1] = script.entry(ask_key(credits, ask.owner, meter.bucket), entry);
                if entries[2 * slot + 1].is_none() {
                    entries[2 * slot + 1] = Some(usize::MAX);
                }
            }
        }
        if entries.iter().flatten().any(|&e| e == usize::MAX) {
            script.entries.truncate(mark);
            return false;
        }
        let numbers: Vec<usize> = entries.iter().flatten().copied().collect();
        script.asks.push((numbers, vec![cost]));
        let [key, key_credits, plan, plan_credits] = entries;
        let key = key.unwrap_or_default();
        self.asks.push((
            vec![i],
            AskEntries {
                key,
                key_credits,
                plan,
                plan_credits,
            },
        ));
        true
    }

    /// Reads this call's reply into the decisions of the requests it carried.
    fn answer(&self, batch: &[Request], reply: &[i64], decisions: &mut [Option<Charged>]) -> RedisResult<()> {
        let (&now, rest) = reply.split_first().ok_or_else(malformed)?;
        let now_ms = u64::try_from(now).map_err(|_| malformed())?;
        let mut reply = Reply(rest);
        for g in &self.groups {
            let first = &batch[g.members[0]];
            let mut curr = reply.pairs(first.policy.windows().len())?;
            let flags = reply.take(g.members.len())?;
            for (&i, &flag) in g.members.iter().zip(flags) {
                let allowed = flag == 1;
                if allowed {
                    let cost = u64::from(batch[i].cost);
                    curr.iter_mut().for_each(|(_, c)| *c += cost);
                }
                let decision = assemble(&first.policy, now_ms, curr.iter().copied(), allowed);
                decisions[i] = Some(Charged::Decided(decision));
            }
        }
        self.answer_asks(batch, &mut reply, now_ms, decisions)?;
        if reply.0.is_empty() {
            Ok(())
        } else {
            Err(malformed())
        }
    }

    /// The asks' part of the reply: the entries as loaded, then each group's flags, decided
    /// in order from the entries' counts as the script kept them.
    fn answer_asks(
        &self,
        batch: &[Request],
        reply: &mut Reply<'_>,
        now_ms: u64,
        decisions: &mut [Option<Charged>],
    ) -> RedisResult<()> {
        let mut held: Vec<Held> = Vec::with_capacity(self.script.entries.len());
        for (_, entry) in &self.script.entries {
            held.push(match entry {
                Entry::Windows(policy) => Held::Windows(reply.pairs(policy.windows().len())?),
                Entry::Credits { .. } => Held::Credits(u64::try_from(reply.take(1)?[0]).ok()),
            });
        }
        for (members, at) in &self.asks {
            let flags = reply.take(members.len())?;
            let Some((ask, _)) = &batch[members[0]].ask else {
                return Err(malformed());
            };
            let mut before = at.before(&held);
            for (&i, &flag) in members.iter().zip(flags) {
                if flag == 2 {
                    decisions[i] = Some(Charged::Unseeded);
                    continue;
                }
                let cost = u64::from(batch[i].cost);
                let allowed = flag == 1;
                if allowed {
                    before.count(cost);
                }
                decisions[i] = Some(Charged::Decided(before.decision(ask, now_ms, cost, allowed)));
            }
            at.keep(before, &mut held);
        }
        Ok(())
    }
}

/// One value an ask touches, as the script is told of it.
#[derive(Debug, Clone, PartialEq)]
enum Entry {
    Windows(Policy),
    Credits {
        period: u64,
        amount: i64,
        tag: u64,
        seed: Option<CreditState>,
    },
}

/// The arguments of one rate-limit script call (see `rate_limit.lua` for the layout). Public
/// for the connection benchmark (`bench/redis_clients.rs`), which sends it over other kinds
/// of connection.
pub struct ScriptCall {
    clock: u64,
    keys: Vec<String>,
    policies: Vec<Policy>,
    /// (policy number from 1, costs in arrival order) per key.
    callers: Vec<(usize, Vec<u32>)>,
    /// The values asks touch, each once, by key.
    entries: Vec<(String, Entry)>,
    /// Per group of one ask's requests: its entries' numbers (from 0), and the costs in
    /// arrival order.
    asks: Vec<(Vec<usize>, Vec<u32>)>,
}

impl ScriptCall {
    /// `clock` overrides Redis's clock (Unix ms), for tests that move time.
    pub fn new(clock: Option<u64>) -> ScriptCall {
        ScriptCall {
            clock: clock.unwrap_or(0),
            keys: Vec::new(),
            policies: Vec::new(),
            callers: Vec::new(),
            entries: Vec::new(),
            asks: Vec::new(),
        }
    }

    fn policy_number(&mut self, policy: &Policy) -> usize {
        match self.policies.iter().position(|p| p == policy) {
            Some(i) => i + 1,
            None => {
                self.policies.push(policy.clone());
                self.policies.len()
            }
        }
    }

    /// Adds one caller's requests: its counters are under `prefix` ("<prefix>:rc:").
    pub fn caller(
        &mut self,
        prefix: &str,
        bucket: Bucket,
        policy: &Policy,
        costs: impl Iterator<Item = u32>,
    ) {
        let mut key = String::with_capacity(prefix.len() + 32);
        let _ = write!(key, "{prefix}{{{bucket}}}");
        self.keys.push(key);
        let number = self.policy_number(policy);
        self.callers.push((number, costs.collect()));
    }

    /// The number of the entry for `key`, added if new; `None` when it is there under other
    /// terms. A seed joins an entry that had none.
    fn entry(&mut self, key: String, entry: Entry) -> Option<usize> {
        if let Some(at) = self.entries.iter().position(|(k, _)| *k == key) {
            return match (&mut self.entries[at].1, entry) {
                (Entry::Windows(a), Entry::Windows(b)) if *a == b => Some(at),
                (
                    Entry::Credits {
                        period,
                        amount,
                        tag,
                        seed,
                    },
                    Entry::Credits {
                        period: p,
                        amount: m,
                        tag: t,
                        seed: s,
                    },
                ) if *period == p && *amount == m && *tag == t => {
                    *seed = seed.or(s);
                    Some(at)
                }
                _ => None,
            };
        }
        if let Entry::Windows(policy) = &entry {
            self.policy_number(policy);
        }
        self.entries.push((key, entry));
        Some(self.entries.len() - 1)
    }

    /// Runs the call: EVALSHA, loading the script when Redis does not know it (first use, or
    /// after a restart).
    pub async fn run(&self, conn: &mut impl redis::aio::ConnectionLike) -> RedisResult<Vec<i64>> {
        let cmd = self.command();
        match cmd.query_async(conn).await {
            Err(e) if e.kind() == ErrorKind::NoScriptError => {
                SCRIPT.prepare_invoke().load_async(conn).await?;
                cmd.query_async(conn).await
            }
            reply => reply,
        }
    }

    /// The command, built straight into one buffer.
    fn command(&self) -> redis::Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(SCRIPT.get_hash())
            .arg(self.keys.len() + self.entries.len());
        for key in self.keys.iter().chain(self.entries.iter().map(|(k, _)| k)) {
            cmd.arg(key);
        }
        cmd.arg(self.clock).arg(self.policies.len());
        for policy in &self.policies {
            cmd.arg(policy.windows().len());
            for &(window, limit) in policy.windows() {
                // A month has no fixed length: the script counts it by the calendar.
                let seconds = if window.slides() { window.seconds() } else { 0 };
                cmd.arg(seconds).arg(limit.map_or(-1, |l| i64::from(l.get())));
            }
        }
        cmd.arg(self.callers.len());
        for (number, costs) in &self.callers {
            cmd.arg(number).arg(costs.len());
            for cost in costs {
                cmd.arg(cost);
            }
        }
        self.ask_args(&mut cmd);
        cmd
    }

    /// The asks' part of the command: the entries, then the groups.
    fn ask_args(&self, cmd: &mut redis::Cmd) {
        cmd.arg(self.entries.len());
        for (_, entry) in &self.entries {
            match entry {
                Entry::Windows(policy) => {
                    let number = self
                        .policies
                        .iter()
                        .position(|p| p == policy)
                        .map_or(0, |i| i + 1);
                    cmd.arg(1).arg(number);
                }
                Entry::Credits {
                    period,
                    amount,
                    tag,
                    seed,
                } => {
                    let state = seed.unwrap_or_default();
                    cmd.arg(2).arg(period).arg(amount).arg(tag).arg(seed_arg(*seed));
                    cmd.arg(state.period).arg(state.seq);
                }
            }
        }
        cmd.arg(self.asks.len());
        for (numbers, costs) in &self.asks {
            cmd.arg(numbers.len());
            for number in numbers {
                cmd.arg(number + 1);
            }
            cmd.arg(costs.len());
            for cost in costs {
                cmd.arg(cost);
            }
        }
    }
}

/// Whatever has queued, at least one request; `None` once every sender is gone.
async fn take(requests: &mut mpsc::UnboundedReceiver<Request>) -> Option<Vec<Request>> {
    let mut batch = Vec::with_capacity(MAX_BATCH.min(requests.len() + 1));
    (requests.recv_many(&mut batch, MAX_BATCH).await > 0).then_some(batch)
}

/// Requests by caller: same bucket, policy and clock, in arrival order.
fn group(batch: &[Request]) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for (i, request) in batch.iter().enumerate().filter(|(_, r)| r.ask.is_none()) {
        let same = |g: &&mut Group| {
            let first = &batch[g.members[0]];
            first.bucket == request.bucket && first.clock == request.clock && first.policy == request.policy
        };
        match groups.iter_mut().find(same) {
            Some(g) => g.members.push(i),
            None => groups.push(Group { members: vec![i] }),
        }
    }
    groups
}

fn malformed() -> RedisError {
    RedisError::from((ErrorKind::TypeError, "unexpected rate-limit script reply"))
}

/// `RedisError` is not `Clone`; every request of a failed call gets its own copy.
fn copy(e: &RedisError) -> RedisError {
    RedisError::from((e.kind(), "rate-limit script call failed", e.to_string()))
}
