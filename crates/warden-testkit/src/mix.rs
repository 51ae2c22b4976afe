//! The randomized checker: many clients take random holds (exclusive, shared, read, write, semaphore permits,
//! groups of two or three of these held as one, and, where the backend offers them, conditional acquires, waiter
//! priorities and path locks on a small tree) on a few resources for a given number of operations, and the
//! recorded history is checked afterwards: no two incompatible holds overlap (intentions included), no two
//! paths one at or below the other are held at once unless both shared, no semaphore has more holders than
//! permits, no fencing token repeats on a resource, no conditional grant broke its condition (another grant
//! between the token it named and its own, or one within its window), and every acquire is granted within its
//! wait (a deadlock or a starved waiter would time out).

use crate::harness::Harness;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use warden::{Condition, LockKind};

/// What a recorded hold was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Excludes every other holder.
    Exclusive,
    /// Coexists with other shared holders.
    Shared,
    /// One of this many permits.
    Permit(u32),
    /// An intention to hold something below shared (IS).
    IntentShared,
    /// An intention to hold something below exclusively (IX).
    IntentExclusive,
}

/// The tree that path locks are taken on: each node is a resource of its own, after the plain ones.
pub const TREE: [&str; 6] = ["tree", "tree/a", "tree/b", "tree/a/x", "tree/a/y", "tree/b/x"];

/// One observed hold: [grant seen, min(release sent, validity deadline)], so it lies inside the real lease.
#[derive(Debug, Clone, Copy)]
pub struct MixedHold {
    /// Index of the resource.
    pub resource: usize,
    /// When the grant was seen.
    pub start: Instant,
    /// When the release was sent, or the validity ended, whichever came first.
    pub end: Instant,
    /// The fencing token.
    pub fence: u64,
    /// What was held.
    pub held: Held,
    /// Which client held it, and in a group of how many resources (1: a lone lock): for the report of a breach.
    pub by: (usize, usize),
    /// The condition it was granted under, if any.
    pub condition: Option<Condition>,
    /// The path, if this is the lock itself of a path lock (not one of its ancestors' intentions).
    pub path: Option<&'static str>,
}

/// What a checked run did.
#[derive(Debug, Clone, Copy, Default)]
pub struct MixSummary {
    /// Acquire + release pairs completed.
    pub cycles: usize,
    /// Operations (acquires and releases).
    pub operations: usize,
    /// The most holders one semaphore had at once, as observed.
    pub most_permits_in_use: usize,
    /// The most shared holders one lock had at once, as observed.
    pub most_readers: usize,
    /// Group acquires completed (each also counted once per member in `cycles`).
    pub groups: usize,
    /// Conditional acquires granted (each also a cycle).
    pub conditional: usize,
    /// Conditional acquires refused because their condition did not hold.
    pub conditions_failed: usize,
    /// Path locks completed (each also counted once per level in `cycles`).
    pub paths: usize,
}

/// Checks a history of holds: per resource, at every instant, either one exclusive holder alone, or any number
/// of shared ones, or at most `permits` semaphore holders; no fencing token given twice on one resource; and
/// every conditional grant kept its condition: no recorded grant's token lies between the token it named and its
/// own, and the recorded grant before it (by token) is at least its window older (tokens being at least their
/// grant's clock in µs, the backend judged `last token <= now - window <= own token - window`).
pub fn check_mixed(holds: &[MixedHold]) -> Result<MixSummary, String> {
    let resources = holds.iter().map(|h| h.resource + 1).max().unwrap_or(0);
    let mut summary = MixSummary {
        cycles: holds.len(),
        operations: holds.len() * 2,
        ..MixSummary::default()
    };
    for r in 0..resources {
        let mine: Vec<&MixedHold> = holds.iter().filter(|h| h.resource == r).collect();
        let mut fences: Vec<u64> = mine.iter().map(|h| h.fence).collect();
        fences.sort_unstable();
        if let Some(w) = fences.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("resource {r}: fencing token {} handed out twice", w[0]));
        }
        for h in mine.iter().filter(|h| h.condition.is_some()) {
            let before = fences.partition_point(|f| *f < h.fence);
            let previous = before.checked_sub(1).map(|i| fences[i]);
            let broken = match (h.condition, previous) {
                (Some(Condition::FencingToken(t)), Some(p)) => p > t,
                (Some(Condition::NotGrantedWithin(w)), Some(p)) => p + w.as_micros() as u64 > h.fence,
                _ => false,
            };
            if broken {
                return Err(format!(
                    "resource {r}: a grant under {:?} got token {} although token {previous:?} was granted before it",
                    h.condition, h.fence
                ));
            }
        }
        // Sweep: ends before starts at the same instant (a hold that ended as another began does not overlap).
        let mut events: Vec<(Instant, bool, &MixedHold)> = Vec::new();
        for h in &mine {
            if h.end > h.start {
                events.push((h.start, true, h));
                events.push((h.end, false, h));
            }
        }
        events.sort_by_key(|(t, start, _)| (*t, *start));
        let (mut excl, mut shared, mut permits, mut is, mut ix) = (0usize, 0usize, 0usize, 0usize, 0usize);
        let mut active: Vec<&MixedHold> = Vec::new();
        for (_, start, h) in events {
            if start {
                active.push(h);
            } else if let Some(i) = active.iter().position(|a| std::ptr::eq(*a, h)) {
                active.swap_remove(i);
            }
            let delta = |n: &mut usize| {
                if start {
                    *n += 1
                } else {
                    *n -= 1
                }
            };
            match h.held {
                Held::Exclusive => delta(&mut excl),
                Held::Shared => delta(&mut shared),
                Held::Permit(_) => delta(&mut permits),
                Held::IntentShared => delta(&mut is),
                Held::IntentExclusive => delta(&mut ix),
            }
            if !start {
                continue;
            }
            // Exclusive alone; permits alone; shared beside intent-shared; intentions beside each other.
            let others = shared + permits + is + ix;
            let broken =
                (excl > 0 && (excl > 1 || others > 0)) || (permits > 0 && permits < others) || (shared > 0 && ix > 0);
            if broken {
                return Err(format!(
                    "resource {r}: incompatible holds overlap at {h:?}: {excl} exclusive, {shared} shared, {permits} \
                     permits, {is} intent-shared, {ix} intent-exclusive; holding then: {active:?}"
                ));
            }
            if let Held::Permit(n) = h.held {
                if permits > n as usize {
                    return Err(format!(
                        "resource {r}: {permits} holders of a {n}-permit semaphore at {h:?}"
                    ));
                }
            }
            summary.most_permits_in_use = summary.most_permits_in_use.max(permits);
            summary.most_readers = summary.most_readers.max(shared);
        }
    }
    check_paths(holds)?;
    Ok(summary)
}

/// Checks the path locks of a history on their own terms: no two overlapping holds of paths one at or below the
/// other, unless both are shared.
fn check_paths(holds: &[MixedHold]) -> Result<(), String> {
    let below = |a: &str, b: &str| a == b || b.strip_prefix(a).is_some_and(|rest| rest.starts_with('/'));
    let mut events: Vec<(Instant, bool, &MixedHold)> = Vec::new();
    for h in holds.iter().filter(|h| h.path.is_some() && h.end > h.start) {
        events.push((h.start, true, h));
        events.push((h.end, false, h));
    }
    events.sort_by_key(|(t, start, _)| (*t, *start));
    let mut active: Vec<&MixedHold> = Vec::new();
    for (_, start, h) in events {
        if !start {
            if let Some(i) = active.iter().position(|a| std::ptr::eq(*a, h)) {
                active.swap_remove(i);
            }
            continue;
        }
        let p = h.path.unwrap_or_default();
        for a in &active {
            let q = a.path.unwrap_or_default();
            let related = below(p, q) || below(q, p);
            if related && !(h.held == Held::Shared && a.held == Held::Shared) {
                return Err(format!(
                    "paths `{q}` ({:?}) and `{p}` ({:?}) held at once: {a:?} and {h:?}",
                    a.held, h.held
                ));
            }
        }
        active.push(h);
    }
    Ok(())
}

/// Runs `cycles` random acquire + release pairs from `tasks` clients over `resources` resources and checks the
/// history (see the module). Resources with an even index are locks (exclusive, shared, read or write at
/// random), odd ones semaphores of 2 or 3 permits; one cycle in four takes two or three of them as one group,
/// each member in its own random mode. Panics with what broke.
pub async fn random_mix(h: &dyn Harness, tasks: usize, resources: usize, cycles: usize, seed: u64) -> MixSummary {
    let caps = h.client().await.capabilities();
    let (semaphores, conditions, priorities) = (caps.semaphores, caps.conditions, caps.priorities);
    let intentions = caps.intentions;
    // Tokens seeded from the backend's clock (those that survive data loss) are at least their grant's time in
    // µs: the history then shows whether a grant kept its `NotGrantedWithin` window. Revision tokens (etcd,
    // ZooKeeper) do not; there the conformance suite's timed test checks the window.
    let timed_tokens = caps.fencing_survives_data_loss;
    let log = Arc::new(Mutex::new(Vec::with_capacity(cycles)));
    // The latest token any client saw granted on each resource: what a conditional acquire names.
    let last_seen: Arc<Vec<AtomicU64>> = Arc::new((0..resources).map(|_| AtomicU64::new(0)).collect());
    let per_task = cycles.div_ceil(tasks);
    let mut joins = Vec::new();
    for t in 0..tasks {
        let w = h.client().await.with_client_id(format!("mix-{t}")).expect("client id");
        let (log, last_seen) = (log.clone(), last_seen.clone());
        // Seeded per client: the same seed makes the same choices.
        let mut rng = StdRng::seed_from_u64(seed.wrapping_add(t as u64));
        joins.push(tokio::spawn(async move {
            let mut mine = Vec::with_capacity(per_task);
            let (mut groups, mut conditional, mut refused, mut paths) = (0, 0, 0, 0);
            for _ in 0..per_task {
                // Where offered, one cycle in five locks a path of the tree (shared or exclusive).
                if intentions && rng.random_range(0..5) == 0 {
                    let path = TREE[rng.random_range(0..TREE.len())];
                    let shared = rng.random_bool(0.5);
                    let b = w.path(path);
                    let b = if shared { b.shared() } else { b };
                    let priority = if priorities { rng.random_range(-3..=3) } else { 0 };
                    let mut g = b
                        .ttl(Duration::from_secs(10))
                        .wait(Duration::from_secs(30))
                        .priority(priority)
                        .acquire()
                        .await
                        .unwrap_or_else(|e| panic!("path {path} (shared: {shared}) failed: {e}"));
                    let start = Instant::now();
                    let until = start + g.remaining();
                    for _ in 0..rng.random_range(0..3) {
                        tokio::task::yield_now().await;
                    }
                    let end = Instant::now().min(until);
                    let members = warden::lock::path_members(path, '/', shared).expect("a tree path");
                    for (node, kind) in &members {
                        let at = TREE.iter().position(|n| n == node).expect("a node of the tree");
                        mine.push(MixedHold {
                            resource: resources + at,
                            start,
                            end,
                            fence: g.fencing_token(node).expect("member"),
                            held: match kind {
                                LockKind::IntentShared => Held::IntentShared,
                                LockKind::IntentExclusive => Held::IntentExclusive,
                                LockKind::Shared => Held::Shared,
                                _ => Held::Exclusive,
                            },
                            by: (t, members.len()),
                            condition: None,
                            path: (node == path).then_some(path),
                        });
                    }
                    g.release().await.expect("release path");
                    paths += 1;
                    continue;
                }
                // One cycle in four takes two or three distinct resources as one group.
                let size = if rng.random_range(0..4) == 0 {
                    rng.random_range(2..=3)
                } else {
                    1
                };
                let mut picked: Vec<usize> = Vec::with_capacity(size);
                while picked.len() < size.min(resources) {
                    let r = rng.random_range(0..resources);
                    if !picked.contains(&r) {
                        picked.push(r);
                    }
                }
                let members: Vec<(usize, LockKind, u32, Held)> =
                    picked.iter().map(|&r| pick(&mut rng, r, semaphores)).collect();
                // One lone lock in four, where offered, is conditional: on the latest token seen, or on a few ms
                // without a grant.
                let condition = (members.len() == 1 && conditions && rng.random_range(0..4) == 0).then(|| {
                    let last = last_seen[members[0].0].load(Ordering::Relaxed);
                    if last > 0 && rng.random_bool(0.5) {
                        Condition::FencingToken(last)
                    } else {
                        Condition::NotGrantedWithin(Duration::from_millis(rng.random_range(1..=3)))
                    }
                });
                // Where offered, every acquire waits with a priority of -3..=3: aging must still grant each in time.
                let priority = if priorities { rng.random_range(-3..=3) } else { 0 };
                let (start, valid_until, fences, release) = if let [(r, kind, permits, held)] = members[..] {
                    let b = w.lock(format!("mix:{r}"));
                    let b = if kind == LockKind::Semaphore {
                        b.permits(permits)
                    } else {
                        b.kind(kind)
                    };
                    let acquired = b
                        .ttl(Duration::from_secs(10))
                        .wait(Duration::from_secs(30))
                        .condition(condition)
                        .priority(priority)
                        .acquire()
                        .await;
                    let mut g = match acquired {
                        Err(warden::Error::ConditionFailed { .. }) if condition.is_some() => {
                            refused += 1;
                            continue;
                        }
                        other => other.unwrap_or_else(|e| panic!("acquire on resource {r} ({held:?}) failed: {e}")),
                    };
                    conditional += usize::from(condition.is_some());
                    let fences = vec![g.fencing_token()];
                    (
                        Instant::now(),
                        g.valid_until(),
                        fences,
                        Box::pin(async move { g.release().await }) as Release,
                    )
                } else {
                    let mut b = w.group(Vec::<String>::new());
                    for &(r, kind, permits, _) in &members {
                        b = b.member(format!("mix:{r}"), kind, permits);
                    }
                    let mut g = b
                        .ttl(Duration::from_secs(10))
                        .wait(Duration::from_secs(30))
                        .priority(priority)
                        .acquire()
                        .await
                        .unwrap_or_else(|e| panic!("group {members:?} failed: {e}"));
                    groups += 1;
                    let fences = members
                        .iter()
                        .map(|(r, ..)| g.fencing_token(&format!("mix:{r}")).expect("member"))
                        .collect();
                    let until = Instant::now() + g.remaining();
                    (
                        Instant::now(),
                        until,
                        fences,
                        Box::pin(async move { g.release().await }) as Release,
                    )
                };
                for _ in 0..rng.random_range(0..3) {
                    tokio::task::yield_now().await;
                }
                let end = Instant::now().min(valid_until);
                for (&(resource, _, _, held), fence) in members.iter().zip(fences) {
                    last_seen[resource].fetch_max(fence, Ordering::Relaxed);
                    mine.push(MixedHold {
                        resource,
                        start,
                        end,
                        fence,
                        held,
                        by: (t, members.len()),
                        condition: condition.filter(|c| timed_tokens || matches!(c, Condition::FencingToken(_))),
                        path: None,
                    });
                }
                release.await.expect("release");
            }
            log.lock().expect("log").extend(mine);
            (groups, conditional, refused, paths)
        }));
    }
    // What each client counted: groups, conditional grants, refused conditions, path locks.
    let (mut groups, mut conditional, mut conditions_failed, mut paths) = (0, 0, 0, 0);
    for j in joins {
        let (g, c, f, p) = j.await.expect("task");
        (groups, conditional, conditions_failed, paths) =
            (groups + g, conditional + c, conditions_failed + f, paths + p);
    }
    let holds = log.lock().expect("log").clone();
    match check_mixed(&holds) {
        Ok(s) => MixSummary {
            groups,
            conditional,
            conditions_failed,
            paths,
            ..s
        },
        Err(e) => panic!("{e}"),
    }
}

type Release = std::pin::Pin<Box<dyn std::future::Future<Output = warden::Result<()>> + Send>>;

/// A random hold on resource `r`: a permit of its semaphore (odd resources, where offered), else a lock of a
/// random kind.
fn pick(rng: &mut StdRng, r: usize, semaphores: bool) -> (usize, LockKind, u32, Held) {
    if r % 2 == 1 && semaphores {
        let n = 2 + (r / 2 % 2) as u32;
        return (r, LockKind::Semaphore, n, Held::Permit(n));
    }
    match rng.random_range(0..4) {
        0 => (r, LockKind::Exclusive, 0, Held::Exclusive),
        1 => (r, LockKind::Write, 0, Held::Exclusive),
        2 => (r, LockKind::Shared, 0, Held::Shared),
        _ => (r, LockKind::Read, 0, Held::Shared),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(start: u64, end: u64, fence: u64, held: Held) -> MixedHold {
        let t0 = Instant::now();
        MixedHold {
            resource: 0,
            start: t0 + Duration::from_millis(start),
            end: t0 + Duration::from_millis(end),
            fence,
            held,
            by: (0, 1),
            condition: None,
            path: None,
        }
    }

    #[test]
    fn the_checker_catches_what_it_must() {
        let ok = [
            hold(0, 10, 1, Held::Permit(2)),
            hold(1, 10, 2, Held::Permit(2)),
            hold(10, 20, 3, Held::Permit(2)),
        ];
        assert_eq!(check_mixed(&ok).map(|s| s.most_permits_in_use), Ok(2));
        let over = [
            hold(0, 10, 1, Held::Permit(2)),
            hold(1, 10, 2, Held::Permit(2)),
            hold(2, 10, 3, Held::Permit(2)),
        ];
        assert!(check_mixed(&over).unwrap_err().contains("3 holders of a 2-permit"));
        let mixed = [hold(0, 10, 1, Held::Shared), hold(5, 15, 2, Held::Exclusive)];
        assert!(check_mixed(&mixed).unwrap_err().contains("incompatible"));
        let twice = [hold(0, 10, 7, Held::Exclusive), hold(10, 20, 7, Held::Exclusive)];
        assert!(check_mixed(&twice).unwrap_err().contains("twice"));
        let readers = [hold(0, 10, 1, Held::Shared), hold(5, 15, 2, Held::Shared)];
        assert_eq!(check_mixed(&readers).map(|s| s.most_readers), Ok(2));
        let on = |fence: u64, c: Condition| MixedHold {
            condition: Some(c),
            ..hold(20, 30, fence, Held::Exclusive)
        };
        let resumed = [hold(0, 10, 5, Held::Exclusive), on(9, Condition::FencingToken(5))];
        assert!(check_mixed(&resumed).is_ok());
        let between = [
            hold(0, 5, 5, Held::Exclusive),
            hold(5, 10, 7, Held::Shared),
            on(9, Condition::FencingToken(5)),
        ];
        assert!(check_mixed(&between).unwrap_err().contains("FencingToken(5)"));
        let window = Condition::NotGrantedWithin(Duration::from_millis(1));
        assert!(check_mixed(&[hold(0, 10, 1_000, Held::Exclusive), on(2_000, window)]).is_ok());
        assert!(check_mixed(&[hold(0, 10, 1_500, Held::Exclusive), on(2_000, window)]).is_err());
        // Intentions coexist with each other; intent-exclusive excludes shared; exclusive excludes intentions.
        let intents = [
            hold(0, 10, 1, Held::IntentExclusive),
            hold(1, 10, 2, Held::IntentShared),
        ];
        assert!(check_mixed(&intents).is_ok());
        let ix_s = [hold(0, 10, 1, Held::IntentExclusive), hold(1, 10, 2, Held::Shared)];
        assert!(check_mixed(&ix_s).unwrap_err().contains("1 intent-exclusive"));
        let x_is = [hold(0, 10, 1, Held::IntentShared), hold(1, 10, 2, Held::Exclusive)];
        assert!(check_mixed(&x_is).is_err());
        // Paths one below the other overlap only when both are shared.
        let at = |resource: usize, start: u64, fence: u64, held: Held, path: &'static str| MixedHold {
            resource,
            path: Some(path),
            ..hold(start, start + 10, fence, held)
        };
        assert!(check_mixed(&[at(1, 0, 1, Held::Shared, "t/a"), at(2, 5, 2, Held::Shared, "t/a/x")]).is_ok());
        assert!(check_mixed(&[at(1, 0, 1, Held::Exclusive, "t/a"), at(2, 5, 2, Held::Exclusive, "t/b")]).is_ok());
        let nested = [at(1, 0, 1, Held::Exclusive, "t/a"), at(2, 5, 2, Held::Shared, "t/a/x")];
        assert!(check_mixed(&nested).unwrap_err().contains("held at once"));
        let prefix = [
            at(1, 0, 1, Held::Exclusive, "t/a"),
            at(2, 5, 2, Held::Exclusive, "t/ab"),
        ];
        assert!(check_mixed(&prefix).is_ok(), "t/ab is not below t/a");
    }
}
