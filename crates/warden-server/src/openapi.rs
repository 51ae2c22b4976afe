//! The OpenAPI 3 document, generated from the handlers' and DTOs' annotations.

use crate::dto::*;
use std::sync::OnceLock;
use utoipa::OpenApi;

/// The document's root.
#[derive(OpenApi)]
#[openapi(
    modifiers(&Auth),
    info(
        title = "warden",
        description = "Distributed locks with leases, FIFO waiting and fencing tokens."
    ),
    paths(
        crate::handlers::acquire,
        crate::handlers::exclusive,
        crate::handlers::shared,
        crate::handlers::read_write,
        crate::handlers::acquire_group,
        crate::handlers::acquire_path,
        crate::handlers::release_group,
        crate::handlers::renew_group,
        crate::handlers::release,
        crate::handlers::renew,
        crate::handlers::status,
        crate::handlers::held,
        crate::handlers::stats,
        crate::handlers::analytics,
        crate::handlers::health,
        crate::handlers::queue,
        crate::handlers::liveness,
        crate::handlers::livez,
        crate::handlers::readyz,
        crate::handlers::metrics_text,
        crate::handlers::openapi,
        crate::admin::force_release,
        crate::events::events,
        crate::watch::watch
    ),
    components(schemas(
        AcquireBody,
        GroupMember,
        GroupAcquireBody,
        PathAcquireBody,
        GroupReleaseBody,
        GroupRenewBody,
        Group,
        GroupEnvelope,
        ReleaseBody,
        RenewBody,
        Lock,
        LockStatus,
        LockTypes,
        TopResource,
        StatsDto,
        AnalyticsDto,
        ResourceAnalyticsDto,
        PercentilesDto,
        AnalyticsEnvelope,
        NodeDto,
        HealthDto,
        Liveness,
        crate::handlers::Probe,
        QueueEntryDto,
        QueueDto,
        LockEnvelope,
        LockPageEnvelope,
        LockStatusEnvelope,
        LockListEnvelope,
        StatsEnvelope,
        HealthEnvelope,
        QueueEnvelope,
        MessageEnvelope,
        ErrorBody,
        ForceReleaseBody,
        ForceReleased,
        ForceReleasedEnvelope
    ))
)]
pub struct ApiDoc;

/// With an auth file every endpoint but `/health` and `/openapi.json` takes `Authorization: Bearer <key>` and may
/// answer 401 or 403 (429 with a rate limit): said once here for every operation, not on each handler.
struct Auth;

impl utoipa::Modify for Auth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme("apiKey", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        let error = |what: &str| {
            ResponseBuilder::new()
                .description(what)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for (path, item) in doc.paths.paths.iter_mut() {
            if path == "/health" || path == "/openapi.json" {
                continue;
            }
            for op in [item.get.as_mut(), item.post.as_mut()].into_iter().flatten() {
                op.security = Some(vec![SecurityRequirement::new("apiKey", Vec::<String>::new())]);
                let r = &mut op.responses.responses;
                r.entry("401".into())
                    .or_insert_with(|| error("unauthorized: no key, or one the server does not know").into());
                r.entry("403".into())
                    .or_insert_with(|| error("forbidden: the key's role or namespaces do not allow this").into());
                r.entry("429".into())
                    .or_insert_with(|| error("rate_limited (or too_many_waiters): retry after Retry-After").into());
            }
        }
    }
}

/// The document as JSON, rendered once.
pub fn json() -> String {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    })
    .clone()
}
