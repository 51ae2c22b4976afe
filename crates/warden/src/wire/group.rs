//! Lock groups on the wire: the bodies of group (and path) acquire, release and renew, and the Group object.

use super::lock::Lock;
use serde::{Deserialize, Serialize};

/// One member of `POST /api/groups/acquire`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct GroupMember {
    /// 1..=512 bytes of UTF-8, no control characters; each resource once per group.
    pub resource: String,
    /// `exclusive` (default), `shared`, `read-write` (then `mode` is required), `semaphore` (then `permits` is
    /// required) or `intent` (then `mode` is required), as in `POST /api/locks/acquire`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub lock_type: Option<String>,
    /// `read` or `write`, for `type: read-write`; `shared` or `exclusive`, for `type: intent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// For `type: semaphore`: the resource's number of permits, 1..=1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permits: Option<u32>,
}

/// Body of `POST /api/groups/acquire`: every member is granted, or none is held.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct GroupAcquireBody {
    /// 1..=32 resources, in any order: they are acquired in one global order (by name), so groups never
    /// deadlock.
    pub members: Vec<GroupMember>,
    /// Lease length of every member in ms: 10..=86400000, default 30000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
    /// How long to wait for the whole group in ms: 0 = try once, max 600000, default 5000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_timeout: Option<u64>,
    /// Who asks: 1..=256 bytes.
    pub client_id: String,
    /// Most renewals allowed for each member's lease (default unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_renewals: Option<u32>,
    /// Longest total hold time in ms, renewals included (10..=86400000, default unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_hold: Option<u64>,
}

/// Body of `POST /api/paths/acquire`: a lock on a path in a tree (`orders/eu/42`), which excludes locks on
/// anything below and above it, never its siblings. It is a group (release and renew it with
/// `/api/groups/*`): an intention on each ancestor (`type: intent`), the lock on the path.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PathAcquireBody {
    /// The path: 1..=32 segments, none empty, joined by `separator`.
    pub path: String,
    /// One character between segments (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub separator: Option<String>,
    /// `exclusive` (default) or `shared`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Lease length of every member in ms: 10..=86400000, default 30000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
    /// How long to wait for the whole path in ms: 0 = try once, max 600000, default 5000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_timeout: Option<u64>,
    /// Who asks: 1..=256 bytes.
    pub client_id: String,
    /// Most renewals allowed for each member's lease (default unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_renewals: Option<u32>,
    /// Longest total hold time in ms, renewals included (10..=86400000, default unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_hold: Option<u64>,
}

/// Body of `POST /api/groups/release`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct GroupReleaseBody {
    /// The group's id, as its acquire returned it.
    pub group_id: String,
    /// The client id it was granted to.
    pub client_id: String,
}

/// Body of `POST /api/groups/renew`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct GroupRenewBody {
    /// The group's id, as its acquire returned it.
    pub group_id: String,
    /// The client id it was granted to.
    pub client_id: String,
    /// New lease length of every member from now in ms (default: the leases' ttl).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
}

/// A held group: its id and one lease per member.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Group {
    /// The group's secret id (its members' lock ids): with clientId it releases and renews the whole group.
    /// Present only in the answers to its owner.
    pub group_id: String,
    /// One lease per member, in the global order (by resource name); each has its own fencing token.
    pub locks: Vec<Lock>,
}
