//! [`Principal`]: the user behind a key-management request, from a keygate bearer token
//! (`credentials`) whose user is active and whose epoch is current. The JSON API takes bearer
//! tokens only: no dashboard session (a same-site form could ride on a cookie), and an API key
//! alone never authorises key management.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};

use crate::audit::Origin;
use crate::credentials::{self, Credential};
use crate::db::models::User;
use crate::error::ApiError;
use crate::gate::token_standing;
use crate::keys::cache::UserStanding;
use crate::keys::service::Actor;
use crate::state::AppState;
use crate::users::{self, UserError};

/// The user, and where the request came from (what the audit log records of a change).
pub struct Principal(pub User, pub Origin);

impl Principal {
    pub fn actor(&self) -> Actor {
        Actor::of(&self.0, self.1)
    }
}

const KEY_CANNOT_MANAGE: &str =
    "API keys cannot manage keys; send Authorization: Bearer <token> from POST /api/auth/token.";
const NO_CREDENTIALS: &str =
    "Authentication required; send Authorization: Bearer <token> from POST /api/auth/token.";

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Principal, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let now = crate::gate::now_of(req);
        let origin = Origin::api(state.as_ref().and_then(|s| crate::gate::client_ip(s, req)));
        let token = match credentials::of(req.headers()) {
            Credential::Token(token) => Ok(token.to_owned()),
            Credential::ApiKey(_) | Credential::Invalid(_) => {
                Err(ApiError::AuthenticationRequired(KEY_CANNOT_MANAGE))
            }
            Credential::Foreign => Err(ApiError::InvalidToken("it is not a keygate token".into())),
            Credential::UnreadableToken => Err(ApiError::InvalidToken("it is not ASCII".into())),
            Credential::None => Err(ApiError::AuthenticationRequired(NO_CREDENTIALS)),
        };
        Box::pin(async move {
            let state = state
                .ok_or_else(|| ApiError::internal(std::io::Error::other("AppState is not registered")))?;
            let claims = state.tokens.verify(&token?, now.unix_secs())?;
            let user = match users::find(&state.pool, claims.user_id).await {
                Ok(user) => Some(user),
                Err(UserError::NotFound) => None,
                Err(e) => return Err(e.into()),
            };
            let standing = user.as_ref().map(|u| UserStanding {
                is_active: u.is_active,
                epoch: u.auth_epoch,
            });
            token_standing(&claims, standing)?;
            // `token_standing` refused a missing user already.
            user.map(|user| Principal(user, origin))
                .ok_or_else(|| ApiError::InvalidToken("its user is no longer active".into()))
        })
    }
}
