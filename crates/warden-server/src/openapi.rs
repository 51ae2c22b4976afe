//! The OpenAPI 3 document, generated from the handlers' and DTOs' annotations.

use crate::dto::*;
use std::sync::OnceLock;
use utoipa::OpenApi;

/// The document's root.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "warden",
        description = "Distributed locks with leases, FIFO waiting and fencing tokens."
    ),
    paths(
        crate::handlers::acquire,
        crate::handlers::exclusive,
        crate::handlers::shared,
        crate::handlers::read_write,
        crate::handlers::release,
        crate::handlers::renew,
        crate::handlers::status,
        crate::handlers::held,
        crate::handlers::stats,
        crate::handlers::health,
        crate::handlers::queue,
        crate::handlers::liveness,
        crate::handlers::metrics_text,
        crate::handlers::openapi,
        crate::admin::force_release,
        crate::events::events
    ),
    components(schemas(
        AcquireBody,
        ReleaseBody,
        RenewBody,
        Lock,
        LockStatus,
        LockTypes,
        TopResource,
        StatsDto,
        NodeDto,
        HealthDto,
        Liveness,
        QueueEntryDto,
        QueueDto,
        LockEnvelope,
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
