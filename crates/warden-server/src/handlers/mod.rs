//! The endpoints of docs/API.md. Every extractor's rejection is mapped to the error envelope, so bad input
//! always answers 4xx with a sentence naming the field, never a bare text body or a 5xx.

mod acquire;
mod analytics;
mod group;
mod leases;
mod request;
mod views;

pub use acquire::*;
pub use analytics::*;
pub use group::*;
pub use leases::*;
pub(crate) use request::*;
pub use request::{no_route, wrong_method};
pub use views::*;

use crate::audit::Event;
use crate::caller::Caller;
use crate::dto::*;
use crate::error::ApiError;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::time::{Duration, Instant, SystemTime};
use warden::wire::ErrorCode;
use warden::{validate, LeaseInfo, LockKind, Renewal};

/// Default lease length when `ttl` is absent.
pub const DEFAULT_TTL_MS: u64 = 30_000;
/// Default wait when `waitTimeout` is absent.
pub const DEFAULT_WAIT_MS: u64 = 5_000;
