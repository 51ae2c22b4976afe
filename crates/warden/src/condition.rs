//! Conditional acquires: a condition on a resource's history that its grant must meet.

use std::time::Duration;

/// A condition on the resource's history that a grant must meet. The backend checks it in the same atomic step
/// that grants (and again at every later attempt of a waiting acquire), so nobody can be granted in between;
/// when it does not hold, the acquire fails with [`crate::Error::ConditionFailed`] and leaves the queue.
///
/// A backend remembers a resource's last fencing token for its retention period (`retain_ms`, default 60 s)
/// after the resource's last grant, as long as it keeps its data.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::time::Duration;
/// let w = warden::Warden::connect("memory://").await.unwrap();
/// let mut first = w.lock("report").acquire().await.unwrap();
/// let token = first.fencing_token();
/// first.release().await.unwrap();
/// // Once restarted, the owner of `token` resumes only if nobody held `report` since:
/// let mut again = w.lock("report").if_fencing_token(token).acquire().await.unwrap();
/// again.release().await.unwrap();
/// let stale = w.lock("report").if_fencing_token(token).try_acquire().await;
/// assert!(matches!(stale, Err(warden::Error::ConditionFailed { .. })));
/// // A job that runs at most once a minute, whoever runs it:
/// let err = w.lock("report").if_not_granted_within(Duration::from_secs(60)).try_acquire().await;
/// assert!(matches!(err, Err(warden::Error::ConditionFailed { .. })));
/// # });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Condition {
    /// Granted only if the resource's last fencing token is still this one: nobody was granted the resource since
    /// the lease that received it (a restarted owner resumes its work only if nobody took over meanwhile). Also
    /// refused when the backend no longer remembers the resource's last token.
    FencingToken(u64),
    /// Granted only if no lease on the resource was granted in the last `D` (at most one run per `D`, whoever
    /// runs it). `D` may not exceed the backend's retention period.
    NotGrantedWithin(Duration),
}

impl Condition {
    /// What the condition asks, in words (for errors and logs).
    pub fn describe(&self) -> String {
        match self {
            Condition::FencingToken(t) => format!("the last fencing token is still {t}"),
            Condition::NotGrantedWithin(d) => format!("no grant in the last {} ms", d.as_millis()),
        }
    }

    /// The condition as the backends' scripts read it: `f<token>` or `g<window in µs>`.
    #[cfg(any(feature = "redis", feature = "postgres", feature = "mysql"))]
    pub(crate) fn encode(&self) -> String {
        match self {
            Condition::FencingToken(t) => format!("f{t}"),
            Condition::NotGrantedWithin(d) => format!("g{}", d.as_micros()),
        }
    }

    /// Refuses a window longer than the backend remembers grants (`retain`): a forgotten grant would pass it.
    pub(crate) fn within_retention(&self, retain: Duration) -> crate::Result<()> {
        match self {
            Condition::NotGrantedWithin(d) if *d > retain => Err(crate::Error::invalid(
                "ifNotGrantedWithin",
                format!(
                    "{} ms is longer than this backend remembers grants ({} ms): raise the backend's retain_ms, \
                     or ask for a shorter window",
                    d.as_millis(),
                    retain.as_millis()
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The error of a condition a backend's own step found not to hold, given the last token (`None`: not
    /// remembered) and clock it saw; `None` if by these numbers it holds (the step and this check disagree).
    pub(crate) fn refused(&self, resource: &str, last: Option<u64>, now_us: u64) -> Option<crate::Error> {
        self.check(resource, last, now_us).err()
    }

    /// Whether a resource whose last fencing token is `last` (`None`: not remembered) meets the condition, at
    /// `now_us` (µs since the Unix epoch on the backend's clock). For backends whose fencing tokens are at least
    /// the grant's time in µs (every backend that seeds them from its clock), so a token is a grant's latest time.
    pub(crate) fn check(&self, resource: &str, last: Option<u64>, now_us: u64) -> crate::Result<()> {
        self.check_record(resource, last.map(|l| (l, l)), now_us)
    }

    /// [`Condition::check`] for a backend that records the last grant's token and time apart (µs since the
    /// Unix epoch): `last` is `(token, granted at)`.
    pub(crate) fn check_record(&self, resource: &str, last: Option<(u64, u64)>, now_us: u64) -> crate::Result<()> {
        let why = match (self, last) {
            (Condition::FencingToken(t), Some((l, _))) if l == *t => return Ok(()),
            (Condition::FencingToken(_), Some((l, _))) => format!("its last fencing token is {l}"),
            (Condition::FencingToken(_), None) => {
                "its last fencing token is no longer known (it has been idle longer than the backend keeps it)".into()
            }
            (Condition::NotGrantedWithin(_), None) => return Ok(()),
            (Condition::NotGrantedWithin(d), Some((_, l))) => {
                let ago = now_us.saturating_sub(l);
                if ago >= d.as_micros() as u64 {
                    return Ok(());
                }
                format!("it was granted {} ms ago", ago / 1000)
            }
        };
        Err(crate::Error::condition_failed(resource, self, &why))
    }
}
