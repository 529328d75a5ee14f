//! The Redis connection shared by counters, key events and sessions: one node or a cluster,
//! plain or TLS.
//!
//! `REDIS_URL` forms:
//! - `redis://[:password@]host:port[/db]`: one node.
//! - `rediss://…`: the same over TLS. Append `#insecure` to accept a self-signed certificate,
//!   as Heroku Redis needs.
//! - `redis+cluster://[:password@]host1:port1,host2:port2,…`: a Redis Cluster, given by any
//!   of its nodes (seeds). `rediss+cluster://…` is the same over TLS.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// Where Redis is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    Single(String),
    /// Single-node URLs of the seeds.
    Cluster(Vec<String>),
}

impl RedisTarget {
    pub fn parse(url: &str) -> Result<RedisTarget, String> {
        let cluster = url
            .strip_prefix("redis+cluster://")
            .map(|rest| ("redis", rest))
            .or_else(|| url.strip_prefix("rediss+cluster://").map(|rest| ("rediss", rest)));
        let Some((scheme, rest)) = cluster else {
            if url.starts_with("redis://") || url.starts_with("rediss://") {
                return Ok(RedisTarget::Single(url.to_owned()));
            }
            return Err("expected redis://…, rediss://… or redis+cluster://host1:port1,host2:port2".into());
        };
        let (rest, fragment) = rest.split_once('#').map_or((rest, ""), |(r, f)| (r, f));
        let (userinfo, hosts) = rest.rsplit_once('@').map_or(("", rest), |(u, h)| (u, h));
        let hosts = hosts.split('/').next().unwrap_or_default();
        let seeds: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|host| {
                let auth = if userinfo.is_empty() {
                    String::new()
                } else {
                    format!("{userinfo}@")
                };
                let fragment = if fragment.is_empty() {
                    String::new()
                } else {
                    format!("#{fragment}")
                };
                format!("{scheme}://{auth}{host}{fragment}")
            })
            .collect();
        if seeds.is_empty() {
            return Err("a cluster URL needs at least one host:port".into());
        }
        Ok(RedisTarget::Cluster(seeds))
    }

    /// Single-node URLs: the node, or every seed of a cluster (pub/sub works on any node).
    pub fn nodes(&self) -> Vec<String> {
        match self {
            RedisTarget::Single(url) => vec![url.clone()],
            RedisTarget::Cluster(seeds) => seeds.clone(),
        }
    }
}

/// A multiplexed connection that reconnects by itself, to one node or to a cluster.
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl RedisConn {
    pub async fn connect(target: &RedisTarget, timeout: Duration) -> redis::RedisResult<RedisConn> {
        match target {
            RedisTarget::Single(url) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(timeout)
                    .set_response_timeout(timeout)
                    .set_number_of_retries(1);
                let client = redis::Client::open(url.as_str())?;
                Ok(RedisConn::Single(
                    ConnectionManager::new_with_config(client, config).await?,
                ))
            }
            RedisTarget::Cluster(seeds) => {
                let client = ClusterClient::builder(seeds.iter().map(String::as_str))
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .retries(1)
                    .build()?;
                Ok(RedisConn::Cluster(client.get_async_connection().await?))
            }
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(cmd, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_cluster_urls_are_told_apart() {
        assert_eq!(
            RedisTarget::parse("redis://h:6379/0"),
            Ok(RedisTarget::Single("redis://h:6379/0".into()))
        );
        assert_eq!(
            RedisTarget::parse("rediss://:pw@h:6380#insecure"),
            Ok(RedisTarget::Single("rediss://:pw@h:6380#insecure".into()))
        );
        assert_eq!(
            RedisTarget::parse("redis+cluster://127.0.0.1:7001,127.0.0.1:7002"),
            Ok(RedisTarget::Cluster(vec![
                "redis://127.0.0.1:7001".into(),
                "redis://127.0.0.1:7002".into()
            ]))
        );
        assert_eq!(
            RedisTarget::parse("rediss+cluster://:pw@a:1, b:2/#insecure"),
            Ok(RedisTarget::Cluster(vec![
                "rediss://:pw@a:1#insecure".into(),
                "rediss://:pw@b:2#insecure".into()
            ]))
        );
        assert!(RedisTarget::parse("redis+cluster://").is_err());
        assert!(RedisTarget::parse("http://h").is_err());
    }
}
