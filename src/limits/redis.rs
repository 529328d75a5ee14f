//! The Redis counter store, shared by every instance: one script call (EVALSHA, loaded once)
//! per request covers all of a caller's windows, timed by the Redis server's clock so
//! instances with skewed clocks agree.

use std::sync::LazyLock;

use crate::shared_redis::RedisConn;

use super::{Bucket, Decision, Policy, assemble};

static SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(include_str!("rate_limit.lua")));

#[derive(Clone)]
pub struct RedisStore {
    conn: RedisConn,
    prefix: String,
}

impl RedisStore {
    pub fn new(conn: RedisConn, prefix: &str) -> RedisStore {
        RedisStore {
            conn,
            prefix: prefix.to_owned(),
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
    ) -> redis::RedisResult<Decision> {
        let mut invocation = SCRIPT.prepare_invoke();
        invocation
            .key(format!("{}:rl:{{{bucket}}}", self.prefix))
            .arg(cost)
            .arg(clock.unwrap_or(0));
        for &(window, limit) in policy.windows() {
            invocation.arg(window.seconds()).arg(limit.map_or(-1, i64::from));
        }
        let mut conn = self.conn.clone();
        let reply: Vec<i64> = invocation.invoke_async(&mut conn).await?;
        let malformed =
            || redis::RedisError::from((redis::ErrorKind::TypeError, "unexpected rate-limit script reply"));
        let (&[now, allowed], rest) = reply.split_first_chunk::<2>().ok_or_else(malformed)?;
        if rest.len() != policy.windows().len() * 2 {
            return Err(malformed());
        }
        let now_ms = u64::try_from(now).map_err(|_| malformed())?;
        let after = rest
            .chunks_exact(2)
            .map(|pair| (pair[0].max(0) as u64, pair[1].max(0) as u64));
        Ok(assemble(policy, now_ms, after, allowed == 1))
    }

    pub async fn ping(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        redis::cmd("PING").query_async::<()>(&mut conn).await
    }

    pub fn connection(&self) -> RedisConn {
        self.conn.clone()
    }
}
