//! Path locks: resources named as paths in a tree (`orders/eu/42`), locked as databases lock tables and rows
//! (multi-granularity locking). A lock on a path holds an intention on each of its ancestors (intent-exclusive
//! above an exclusive lock, intent-shared above a shared one) and the lock itself on the path, as one group:
//! so a lock on `orders/eu` excludes locks on anything below it (they hold intentions on `orders/eu`, which its
//! exclusive lock excludes) and above it (an exclusive lock on `orders` excludes its intention), while locks on
//! siblings only share intentions, which coexist. Every member waits in its resource's FIFO queue, where a
//! newcomer never goes ahead of a waiter it would block: a parent waiting for the children that hold it is
//! granted before any child that comes after it.
//!
//! Every lock on a tree must be a path lock with the same separator: a plain lock on a node excludes path locks
//! at and below it, but not those above it.

#[allow(unused_imports)]
use super::*;
use crate::validate::MAX_GROUP_MEMBERS;

/// Options of one path lock. Created by [`Warden::path`].
#[derive(Debug, Clone)]
#[must_use = "a PathBuilder does nothing until acquire() is awaited"]
pub struct PathBuilder<'a> {
    group: GroupBuilder<'a>,
    path: String,
    separator: char,
    shared: bool,
}

impl<'a> PathBuilder<'a> {
    /// The character between a path's segments (default `/`).
    pub fn separator(mut self, separator: char) -> Self {
        self.separator = separator;
        self
    }
    /// Locks the path shared (intent-shared above it): coexists with other shared locks at and below it, and
    /// with shared locks above it.
    pub fn shared(mut self) -> Self {
        self.shared = true;
        self
    }
    /// Lease length of every member (10 ms ..= 24 h).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.group = self.group.ttl(ttl);
        self
    }
    /// How long to wait for the whole path (0 = try once; at most 10 min).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.group = self.group.wait(wait);
        self
    }
    /// Client id of the leases (defaults to the handle's).
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.group = self.group.client_id(id);
        self
    }
    /// Refuse renewals after `n`.
    pub fn max_renewals(mut self, n: u32) -> Self {
        self.group = self.group.max_renewals(n);
        self
    }
    /// Never extend the leases past this long after their grant.
    pub fn max_hold(mut self, d: Duration) -> Self {
        self.group = self.group.max_hold(d);
        self
    }
    /// Waits with this priority at every level (see [`LockBuilder::priority`]).
    pub fn priority(mut self, priority: i32) -> Self {
        self.group = self.group.priority(priority);
        self
    }
    /// Renew automatically about every ttl/3 (default true).
    pub fn auto_renew(mut self, on: bool) -> Self {
        self.group = self.group.auto_renew(on);
        self
    }

    /// The group this path lock is: intentions on the ancestors, the lock on the path.
    fn build(self) -> Result<GroupBuilder<'a>> {
        let backend = &self.group.warden().backend;
        if !backend.capabilities().intentions {
            return Err(backend.unsupported("path locks (intention kinds)"));
        }
        let members = path_members(&self.path, self.separator, self.shared)?;
        Ok(members
            .into_iter()
            .fold(self.group, |g, (n, kind)| g.member(n, kind, 0)))
    }

    /// Acquires the path (its ancestors' intentions and itself, all or nothing), waiting up to the configured
    /// wait. [`GroupGuard::fencing_token`] of the path is the token to pass to what it guards.
    pub async fn acquire(self) -> Result<GroupGuard> {
        self.build()?.acquire().await
    }

    /// Tries once without waiting; `Ok(None)` if anything in the way is held.
    pub async fn try_acquire(self) -> Result<Option<GroupGuard>> {
        self.build()?.try_acquire().await
    }
}

/// The members of a lock on `path` (segments separated by `separator`), from the root down, each checked: for
/// `a/b/c`, `a` and `a/b` with an intention and `a/b/c` exclusive or shared.
///
/// ```
/// use warden::LockKind::{Exclusive, IntentExclusive};
/// let members = warden::lock::path_members("a/b/c", '/', false).unwrap();
/// assert_eq!(members, vec![("a".into(), IntentExclusive), ("a/b".into(), IntentExclusive), ("a/b/c".into(), Exclusive)]);
/// assert!(warden::lock::path_members("a//c", '/', false).is_err());
/// ```
pub fn path_members(path: &str, separator: char, shared: bool) -> Result<Vec<(String, LockKind)>> {
    let sep = separator;
    if sep.is_control() || sep.is_whitespace() {
        return Err(Error::invalid(
            "separator",
            format!("must be a visible character, got {:?}", sep.escape_debug().to_string()),
        ));
    }
    let segments: Vec<&str> = path.split(sep).collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err(Error::invalid(
            "path",
            format!("segments separated by `{sep}`, none empty (no leading, trailing or doubled `{sep}`)"),
        ));
    }
    if segments.len() > MAX_GROUP_MEMBERS {
        return Err(Error::invalid(
            "path",
            format!("at most {MAX_GROUP_MEMBERS} levels, got {}", segments.len()),
        ));
    }
    let (intent, kind) = match shared {
        true => (LockKind::IntentShared, LockKind::Shared),
        false => (LockKind::IntentExclusive, LockKind::Exclusive),
    };
    let mut members = Vec::with_capacity(segments.len());
    let mut end = 0;
    for (i, s) in segments.iter().enumerate() {
        end += s.len();
        let last = i + 1 == segments.len();
        members.push((path[..end].to_string(), if last { kind } else { intent }));
        end += sep.len_utf8();
    }
    Ok(members)
}

impl Warden {
    /// Starts building an exclusive lock on the path `path` (segments separated by `/`, see
    /// [`PathBuilder::separator`]): it excludes locks on anything below it and above it, never on its siblings.
    /// Needs a backend with `capabilities().intentions`.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let w = warden::Warden::connect("memory://").await.unwrap();
    /// let eu = w.path("orders/eu").acquire().await.unwrap();
    /// assert!(w.path("orders/us/7").try_acquire().await.unwrap().is_some(), "a sibling's child");
    /// assert!(w.path("orders/eu/42").try_acquire().await.unwrap().is_none(), "below the held path");
    /// assert!(w.path("orders").try_acquire().await.unwrap().is_none(), "above the held path");
    /// assert!(eu.fencing_token("orders/eu").is_some());
    /// # });
    /// ```
    pub fn path(&self, path: impl Into<String>) -> PathBuilder<'_> {
        PathBuilder {
            group: GroupBuilder::new(self),
            path: path.into(),
            separator: '/',
            shared: false,
        }
    }
}
