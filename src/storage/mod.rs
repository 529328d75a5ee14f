//! Storage: the database (one Diesel code path over PostgreSQL and SQLite), the Redis connection
//! shared by counters, events and sessions, and per-thread structures. It uses only itself.

pub mod db;
pub mod shared_redis;
pub mod striped;
