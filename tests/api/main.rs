//! HTTP, repository and CLI tests against real databases. Each test gets its own database;
//! PostgreSQL tests skip with a notice (or fail under CI) when the server is unreachable.

mod helpers;

mod architecture;
mod audit;
mod auth;
mod bad_input;
mod browser;
mod cli;
mod contract;
mod drills;
mod gate;
mod gateway;
mod health;
mod hostile;
mod insight;
mod keys;
mod limits;
mod migrations;
mod openapi;
mod outage;
mod portal;
mod quota_store;
mod quotas;
mod repository;
mod scale;
mod semantics;
mod trust;
mod webhooks;
