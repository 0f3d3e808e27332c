//! The OpenAPI document of the admin API, generated from the handlers and types (utoipa).

use super::auth;
use super::routes::{access, certificates, clients, config, health, keys, observe};
use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

struct BearerAuth;

/// Answers every operation can give that the handlers do not list one by one: malformed input.
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterIn;
        use utoipa::openapi::{RefOr, ResponseBuilder};
        let error = |what: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(what)
                    .content(
                        "application/json",
                        utoipa::openapi::ContentBuilder::new().schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody"))).build(),
                    )
                    .build(),
            )
        };
        for item in openapi.paths.paths.values_mut() {
            for op in [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch].into_iter().flatten() {
                let has_body = op.request_body.is_some();
                let has_params = op.parameters.as_ref().is_some_and(|p| p.iter().any(|p| matches!(p.parameter_in, ParameterIn::Path | ParameterIn::Query)));
                let r = &mut op.responses.responses;
                if has_body || has_params {
                    r.entry("400".into()).or_insert_with(|| error("Malformed request (body, path or query)"));
                }
                if has_body {
                    r.entry("415".into()).or_insert_with(|| error("The body is not sent as application/json"));
                    r.entry("422".into()).or_insert_with(|| error("The JSON body does not have the expected fields"));
                }
            }
        }
    }
}

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("The admin token, or a session token from /api/v1/auth/login")).build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "gemini-proxy admin API", description = "Manage keys, clients and configuration; read usage, request and audit logs."),
    paths(
        auth::login, auth::methods, auth::logout, auth::session,
        config::get_config, config::validate, config::put_config, config::reload, config::versions, config::version, config::rollback, config::diff,
        keys::list, keys::add, keys::import, keys::validate, keys::enable, keys::disable, keys::reset, keys::delete,
        clients::list, clients::create, clients::revoke, clients::update,
        observe::timeseries, observe::totals, observe::requests, observe::request, observe::audit,
        access::access,
        certificates::list, certificates::renew,
        health::healthz, health::readyz, health::metrics,
    ),
    modifiers(&BearerAuth, &CommonErrors),
    components(schemas(super::error::ErrorBody)),
    tags(
        (name = "auth"), (name = "config"), (name = "keys"), (name = "clients"), (name = "stats"), (name = "requests"), (name = "audit"), (name = "access"), (name = "tls"), (name = "health"),
    )
)]
pub struct AdminApi;

/// `GET /api/v1/openapi.json`
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(AdminApi::openapi())
}
