//! Test support, by concern: the services a test needs (`services`: a database of its own, a
//! Redis prefix of its own), a real server on port 0 (`app`: one method per endpoint) built from
//! typed settings (`builder`), the dashboard as a plain HTTP client sees it
//! (`dashboard`), and keygate as a separate process (`process`).

mod app;
mod builder;
mod dashboard;
mod process;
mod services;

pub use app::*;
pub use builder::*;
pub use dashboard::*;
pub use process::*;
pub use services::*;
pub(crate) use services::{on_both_backends, on_both_databases};
