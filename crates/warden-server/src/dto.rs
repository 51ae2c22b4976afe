//! The JSON shapes of the REST API: the wire types the library's http backend reads too
//! ([`warden::wire`]), and the envelopes the OpenAPI document names.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
pub use warden::wire::*;

macro_rules! envelope {
    ($name:ident, $t:ty, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
        pub struct $name {
            /// Always true.
            pub success: bool,
            /// The payload.
            pub data: $t,
        }
    };
}
envelope!(LockEnvelope, Lock, "`{success, data: Lock}`");
envelope!(GroupEnvelope, Group, "`{success, data: Group}`");
envelope!(LockStatusEnvelope, LockStatus, "`{success, data: LockStatus}`");
envelope!(LockListEnvelope, Vec<Lock>, "`{success, data: [Lock]}`");
envelope!(StatsEnvelope, StatsDto, "`{success, data: Stats}`");
envelope!(AnalyticsEnvelope, AnalyticsDto, "`{success, data: Analytics}`");
envelope!(HealthEnvelope, HealthDto, "`{success, data: Health}`");
envelope!(QueueEnvelope, QueueDto, "`{success, data: Queue}`");

/// `{success, data: [Lock], nextOffset}`: one page of leases.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LockPageEnvelope {
    /// Always true.
    pub success: bool,
    /// This page's leases.
    pub data: Vec<Lock>,
    /// The `offset` of the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<usize>,
}

envelope!(ForceReleasedEnvelope, ForceReleased, "`{success, data: ForceReleased}`");

/// `{success: true, message}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageEnvelope {
    /// Always true.
    pub success: bool,
    /// What happened.
    pub message: String,
}
