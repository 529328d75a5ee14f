//! Row types and their queries: plain functions taking `&mut DbConnection`, identical on both
//! backends.

mod api_key;
mod audit;
mod credit;
mod invitation;
mod session;
mod usage;
mod user;
mod webhook;

pub use api_key::{
    ApiKey, ApiKeyChanges, KeyFilter, KeyOrder, KeySearch, KeyStatusFilter, NewApiKey, NewCredits,
};
pub use audit::{AuditFilter, AuditRow, NewAuditRow};
pub use credit::{Claim, CreditHolder, StoredCredits};
pub use invitation::{Invitation, NewInvitation};
pub use session::RevokedSession;
pub use usage::{Counted, DayRow, UsageFilter, UsageRow, UsageTotals};
pub use user::{NewUser, User, UserChanges};
pub use webhook::{Attempt, Delivery, NewDelivery, NewWebhook, Outcome, Signal, Webhook, WebhookChanges};
