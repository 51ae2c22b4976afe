//! A whole backend in the lease core alone, written as a crate outside warden would write it: attempt, leave,
//! release, renew and the notifications. The lock layer gives it waiting, guards, renewal and the lost signal;
//! the views it does not offer answer `Unsupported`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use warden::backend::Backend;
use warden::wake::WakeRouter;
use warden::{AcquireRequest, Attempt, Capabilities, Error, Grant, LeaseInfo, Released, Renewal, Result, Warden};

/// A granted lease: the request and the lease as it stands.
struct Held {
    lock_id: String,
    client_id: String,
    lease: LeaseInfo,
}

/// Exclusive locks in a map; waiters woken on release.
#[derive(Default)]
struct TinyBackend {
    held: Mutex<HashMap<String, Held>>,
    waiters: Mutex<HashMap<String, Vec<String>>>,
    fence: Mutex<u64>,
    router: Arc<WakeRouter>,
}

impl TinyBackend {
    fn wake(&self, resource: &str) {
        let ids = self.waiters.lock().unwrap_or_else(|p| p.into_inner()).remove(resource);
        self.router.wake(ids.iter().flatten().map(String::as_str));
    }
}

#[async_trait::async_trait]
impl Backend for TinyBackend {
    fn kind(&self) -> &'static str {
        "tiny"
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::basic();
        caps.notifications = true;
        caps
    }

    fn wake_router(&self) -> &Arc<WakeRouter> {
        &self.router
    }

    async fn attempt(&self, req: &AcquireRequest, waiter_id: Option<&str>) -> Result<Attempt> {
        let now = SystemTime::now();
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = held.get(&req.resource).filter(|h| h.lease.expires_at > now) {
            if let Some(w) = waiter_id {
                self.waiters
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(req.resource.clone())
                    .or_default()
                    .push(w.into());
            }
            let retry_in = h.lease.expires_at.duration_since(now).ok();
            return Ok(Attempt::NotGranted {
                retry_in,
                backend_now: None,
            });
        }
        let fence = {
            let mut f = self.fence.lock().unwrap_or_else(|p| p.into_inner());
            *f += 1;
            *f
        };
        let grant = Grant::new(fence, now, now + req.ttl);
        let lease = LeaseInfo::granted(req, &grant);
        held.insert(
            req.resource.clone(),
            Held {
                lock_id: req.lock_id.clone(),
                client_id: req.client_id.clone(),
                lease,
            },
        );
        Ok(Attempt::Granted(grant))
    }

    async fn leave_queue(&self, resource: &str, waiter_id: &str) -> Result<bool> {
        if let Some(ws) = self.waiters.lock().unwrap_or_else(|p| p.into_inner()).get_mut(resource) {
            ws.retain(|w| w != waiter_id);
        }
        Ok(true)
    }

    async fn release(&self, lock_id: &str, client_id: Option<&str>) -> Result<Released> {
        let resource = {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            let Some((resource, h)) = held.iter().find(|(_, h)| h.lock_id == lock_id) else {
                return Err(Error::NotFound {
                    lock_id: lock_id.into(),
                });
            };
            if client_id.is_some_and(|c| c != h.client_id) {
                return Err(Error::NotOwner {
                    lock_id: lock_id.into(),
                    client_id: client_id.unwrap_or_default().into(),
                });
            }
            let resource = resource.clone();
            held.remove(&resource);
            resource
        };
        self.wake(&resource);
        Ok(Released::default())
    }

    async fn renew(&self, lock_id: &str, ttl: Option<Duration>, client_id: Option<&str>) -> Result<Renewal> {
        let now = SystemTime::now();
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        match held
            .values_mut()
            .find(|h| h.lock_id == lock_id && h.lease.expires_at > now)
        {
            Some(h) if client_id.is_none_or(|c| c == h.client_id) => {
                let granted = ttl.unwrap_or(h.lease.ttl);
                h.lease.expires_at = now + granted;
                h.lease.renewal_count += 1;
                Ok(Renewal::Renewed {
                    lease: h.lease.clone(),
                    granted,
                })
            }
            Some(_) => Err(Error::NotOwner {
                lock_id: lock_id.into(),
                client_id: client_id.unwrap_or_default().into(),
            }),
            None => Err(Error::NotFound {
                lock_id: lock_id.into(),
            }),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_of_the_lease_core_alone_gives_exclusive_fenced_locks() {
    let w = Warden::with_backend(Arc::new(TinyBackend::default()));
    let counter = Arc::new(Mutex::new((0u64, 0u64)));
    let mut tasks = Vec::new();
    for i in 0..4 {
        let (w, counter) = (w.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                let g = w
                    .lock("tiny:counter")
                    .client_id(format!("c{i}"))
                    .auto_renew(false)
                    .wait(Duration::from_secs(5))
                    .acquire()
                    .await
                    .expect("acquire");
                let (n, last_fence) = *counter.lock().unwrap_or_else(|p| p.into_inner());
                assert!(g.fencing_token() > last_fence, "fencing token went back");
                tokio::task::yield_now().await;
                *counter.lock().unwrap_or_else(|p| p.into_inner()) = (n + 1, g.fencing_token());
                drop(g);
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(
        counter.lock().unwrap_or_else(|p| p.into_inner()).0,
        100,
        "an increment was lost"
    );
    // Renewal through the core.
    let g = w
        .lock("tiny:renew")
        .ttl(Duration::from_millis(500))
        .acquire()
        .await
        .expect("acquire");
    match w
        .renew(g.lock_id(), Some(Duration::from_secs(5)), None)
        .await
        .expect("renew")
    {
        Renewal::Renewed { lease, granted } => {
            assert_eq!((lease.renewal_count, granted), (1, Duration::from_secs(5)));
            assert!(lease.expires_at > SystemTime::now() + Duration::from_secs(4));
        }
        other => panic!("not renewed: {other:?}"),
    }
    // What it does not offer, it says.
    let e = w.inspect("tiny:counter").await.expect_err("no views");
    assert!(matches!(e, Error::Unsupported { backend: "tiny", .. }), "{e:?}");
    let h = w.health().await;
    assert_eq!(
        h.nodes[0].error.as_deref(),
        Some("this backend does not report its health")
    );
}
