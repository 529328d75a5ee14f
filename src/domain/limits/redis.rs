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

use super::{Bucket, Decision, Policy, assemble};

static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(include_str!("rate_limit.lua")));

/// Requests sent in one script call at most.
const MAX_BATCH: usize = 256;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

struct Request {
    bucket: Bucket,
    policy: Policy,
    cost: u32,
    clock: Option<u64>,
    reply: oneshot::Sender<RedisResult<Decision>>,
}

#[derive(Clone)]
pub struct RedisStore {
    conn: RedisConn,
    lanes: Arc<Lanes>,
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
        let (reply, decision) = oneshot::channel();
        let request = Request {
            bucket,
            policy: policy.clone(),
            cost,
            clock,
            reply,
        };
        let gone = || RedisError::from((ErrorKind::IoError, "the Redis dispatcher has stopped"));
        self.lane().send(request).map_err(|_| gone())?;
        decision.await.map_err(|_| gone())?
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

#[derive(Clone)]
struct Dispatcher {
    conn: RedisConn,
    /// Where each lane opens a connection of its own, so its driver runs on the lane's thread.
    target: RedisTarget,
    /// "<prefix>:rc:"
    prefix: Arc<str>,
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

    /// Decisions for `batch`, in its order.
    async fn decide(&self, batch: &[Request]) -> RedisResult<Vec<Decision>> {
        let groups = group(batch);
        // One call for everything on a single node; on a cluster, one per caller (slot).
        // Clock overrides (tests only) split calls too: a call has one clock.
        let mut calls: Vec<Vec<&Group>> = Vec::new();
        let joinable = matches!(self.conn, RedisConn::Single(_));
        for g in &groups {
            let clock = batch[g.members[0]].clock;
            match calls
                .iter_mut()
                .find(|c| joinable && batch[c[0].members[0]].clock == clock)
            {
                Some(call) => call.push(g),
                None => calls.push(vec![g]),
            }
        }
        let replies = join_all(calls.iter().map(|call| self.call(batch, call))).await;
        let mut decisions: Vec<Option<Decision>> = vec![None; batch.len()];
        for (call, reply) in calls.iter().zip(replies) {
            let reply = reply?;
            let (&now, mut rest) = reply.split_first().ok_or_else(malformed)?;
            let now_ms = u64::try_from(now).map_err(|_| malformed())?;
            for g in call {
                let first = &batch[g.members[0]];
                let windows = first.policy.windows().len();
                let (counts, tail) = rest.split_at_checked(2 * windows).ok_or_else(malformed)?;
                let (flags, tail) = tail.split_at_checked(g.members.len()).ok_or_else(malformed)?;
                rest = tail;
                let mut curr: Vec<(u64, u64)> = counts
                    .chunks_exact(2)
                    .map(|pair| (pair[0].max(0) as u64, pair[1].max(0) as u64))
                    .collect();
                for (&i, &flag) in g.members.iter().zip(flags) {
                    let allowed = flag == 1;
                    if allowed {
                        let cost = u64::from(batch[i].cost);
                        curr.iter_mut().for_each(|(_, c)| *c += cost);
                    }
                    decisions[i] = Some(assemble(&first.policy, now_ms, curr.iter().copied(), allowed));
                }
            }
            if !rest.is_empty() {
                return Err(malformed());
            }
        }
        decisions.into_iter().map(|d| d.ok_or_else(malformed)).collect()
    }

    /// One script call for `groups`.
    async fn call(&self, batch: &[Request], groups: &[&Group]) -> RedisResult<Vec<i64>> {
        let mut call = ScriptCall::new(batch[groups[0].members[0]].clock);
        for g in groups {
            let first = &batch[g.members[0]];
            let costs = g.members.iter().map(|&i| batch[i].cost);
            call.caller(&self.prefix, first.bucket, &first.policy, costs);
        }
        call.run(&mut self.conn.clone()).await
    }
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
}

impl ScriptCall {
    /// `clock` overrides Redis's clock (Unix ms), for tests that move time.
    pub fn new(clock: Option<u64>) -> ScriptCall {
        ScriptCall {
            clock: clock.unwrap_or(0),
            keys: Vec::new(),
            policies: Vec::new(),
            callers: Vec::new(),
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
        let number = match self.policies.iter().position(|p| p == policy) {
            Some(i) => i + 1,
            None => {
                self.policies.push(policy.clone());
                self.policies.len()
            }
        };
        self.callers.push((number, costs.collect()));
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
        cmd.arg(SCRIPT.get_hash()).arg(self.keys.len());
        for key in &self.keys {
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
        for (number, costs) in &self.callers {
            cmd.arg(number).arg(costs.len());
            for cost in costs {
                cmd.arg(cost);
            }
        }
        cmd
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
    for (i, request) in batch.iter().enumerate() {
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
