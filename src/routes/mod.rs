//! HTTP handlers, thin: parse the request into domain types, call the domain, render.
//! They are registered in `startup`, nowhere else.

pub mod admin;
pub mod api;
pub mod assets;
pub mod gateway;
pub mod health;
