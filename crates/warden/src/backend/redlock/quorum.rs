//! Calls on every node at once, and what their answers add up to.

#[allow(unused_imports)]
use super::*;

impl RedlockBackend {
    /// Runs `op` on every node at once; returns when `enough` says so (or all answered). Unanswered nodes are
    /// `None`: their calls are handed to a background task that runs them to completion, so a call is never
    /// dropped half-way because a quorum answered first (one task per call that had nodes left, not one per
    /// node: the common case costs no spawn at all when every node answered).
    pub(super) async fn on_all<T, F, Fut>(
        &self,
        op: F,
        enough: impl Fn(&[Option<Result<T>>]) -> bool,
    ) -> Vec<Option<Result<T>>>
    where
        F: Fn(usize, Arc<RedisBackend>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        self.on_all_nodes(
            move |i, n| {
                let op = op.clone();
                async move { n.call(|b| op(i, b)).await }
            },
            enough,
        )
        .await
    }

    /// [`RedlockBackend::on_all`] with the node itself handed to `op` (which bounds its own calls).
    pub(super) async fn on_all_nodes<T, F, Fut>(
        &self,
        op: F,
        enough: impl Fn(&[Option<Result<T>>]) -> bool,
    ) -> Vec<Option<Result<T>>>
    where
        F: Fn(usize, Arc<Node>) -> Fut,
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let mut results: Vec<Option<Result<T>>> = (0..self.nodes.len()).map(|_| None).collect();
        let mut pending: FuturesUnordered<_> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let call = op(i, n.clone());
                async move { (i, call.await) }
            })
            .collect();
        while let Some((i, r)) = pending.next().await {
            results[i] = Some(r);
            if enough(&results) {
                break;
            }
        }
        if !pending.is_empty() {
            tokio::spawn(async move { while pending.next().await.is_some() {} });
        }
        results
    }

    pub(super) fn quorum_error<T>(&self, results: &[Option<Result<T>>]) -> Error {
        let unreachable: Vec<(&str, Option<&Error>)> = results
            .iter()
            .zip(&self.nodes)
            .filter_map(|(r, n)| match r {
                None => Some((n.address.as_str(), None)),
                Some(Err(e @ (Error::BackendUnavailable { .. } | Error::Protocol(_)))) => {
                    Some((n.address.as_str(), Some(e)))
                }
                _ => None,
            })
            .collect();
        let reason = match unreachable.first() {
            Some((_, Some(e))) => e.to_string(),
            Some((_, None)) => "no answer within the node timeout".to_string(),
            None => String::new(),
        };
        Error::QuorumUnavailable {
            reachable: self.nodes.len() - unreachable.len(),
            total: self.nodes.len(),
            needed: self.quorum(),
            unreachable: unreachable.iter().map(|(a, _)| *a).collect::<Vec<_>>().join(", "),
            reason,
        }
    }
}

/// An `on_all` operation taking one string argument, shared by every node's call (the calls outlive the
/// caller's borrow: see `on_all`).
pub(super) fn with_arg<T, Fut>(
    arg: &str,
    op: impl Fn(Arc<RedisBackend>, Arc<str>) -> Fut + Clone + Send + Sync + 'static,
) -> impl Fn(usize, Arc<RedisBackend>) -> Fut + Clone + Send + Sync + 'static
where
    Fut: Future<Output = Result<T>> + Send + 'static,
{
    let arg: Arc<str> = Arc::from(arg);
    move |_, b| op(b, arg.clone())
}

pub(super) fn count_ok<T>(r: &[Option<Result<T>>]) -> usize {
    r.iter().filter(|x| matches!(x, Some(Ok(_)))).count()
}

pub(super) fn count_err<T>(r: &[Option<Result<T>>]) -> usize {
    r.iter().filter(|x| matches!(x, Some(Err(_)))).count()
}
