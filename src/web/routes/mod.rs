//! HTTP handlers, thin: parse the request into domain types, call the domain, render. Each
//! part registers its own routes (`api::openapi::register`, `assets::register`,
//! `admin::scope`); `startup` decides which stand behind the gate.
//!
//! HTTP semantics every keygate route shares (RFC 9110): HEAD is answered wherever GET is (the
//! GET handler runs; actix sends the headers without the body), and a method a path does not
//! serve gets 405 with `Allow`.

use std::future::{Ready, ready};

use actix_web::Error;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::Method;

pub mod admin;
pub mod api;
pub mod assets;
pub mod gateway;
pub mod health;

/// Routes HEAD as GET (wraps keygate's own resources; never the gateway, whose upstream sees
/// the method as sent). The connection still knows the request was HEAD and sends no body.
/// A `Transform` of its own rather than `from_fn`: it sits on the hot path of every API route,
/// and this way it adds no allocation.
pub struct HeadAsGet;

impl<S, B> Transform<S, ServiceRequest> for HeadAsGet
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = HeadAsGetService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(HeadAsGetService { service }))
    }
}

pub struct HeadAsGetService<S> {
    service: S,
}

impl<S, B> Service<ServiceRequest> for HeadAsGetService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = S::Future;

    forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        if req.method() == Method::HEAD {
            req.head_mut().method = Method::GET;
        }
        self.service.call(req)
    }
}

/// The `Allow` value of a resource serving `methods` (upper case): HEAD joins GET.
pub fn allow(methods: &[&str]) -> String {
    let mut all: Vec<&str> = methods.to_vec();
    if all.contains(&"GET") && !all.contains(&"HEAD") {
        let at = all.iter().position(|m| *m == "GET").map_or(0, |i| i + 1);
        all.insert(at, "HEAD");
    }
    all.dedup();
    all.join(", ")
}
