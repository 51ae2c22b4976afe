//! Which operations go to the batch lane: contention marks and the operations in flight on each resource.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a resource where the fast path failed goes to the procedures directly.
const CONTENDED_FOR: Duration = Duration::from_millis(500);

/// Resources where the fast path failed lately (held, queued) or that one of the process's procedure calls is
/// working on, so that their operations skip the batch: a contended resource's operations then reach the
/// procedures in the order they were made, each without a batch's round trip first, and a batch never waits for
/// a row one of the process's own procedure calls holds (measured: such waits made every batch of a uniform run
/// wait, halving its rate). A resource has at most one acquire and one release in the lane at a time (a batch
/// reads its notes by resource). Marks end [`CONTENDED_FOR`] after the last sign of contention, or when a
/// release finds nobody queued ([`Batcher::calm`](super::batch::Batcher::calm)).
#[derive(Default)]
pub(super) struct Contention(Mutex<Marks>);

#[derive(Default)]
struct Marks {
    at: HashMap<String, Instant>,
    /// Resources with operations in flight.
    busy: HashMap<String, Flight>,
    /// The last lane operation's serial.
    serial: u64,
}

/// A resource's operations in flight: procedure calls, and the serials of the lane's acquire and release (0:
/// none). A lane operation leaves when its batch lands ([`Contention::landed`]), before its caller reads the
/// answer: a holder granted in a batch may release at once, while the release before it is still returning,
/// and that release goes to the lane too. Measured, when a lane operation left only as its caller returned: such
/// a release was refused as the lane's second, marked the resource contended and sent its operations to the
/// procedures; 50 workers of one process on one lock made 1,500 handoffs a second, against 2,000 now.
#[derive(Default)]
struct Flight {
    procedures: usize,
    acquire: u64,
    release: u64,
}

impl Flight {
    fn lane(&mut self, kind: Kind) -> &mut u64 {
        match kind {
            Kind::Acquire => &mut self.acquire,
            Kind::Release => &mut self.release,
        }
    }

    fn idle(&self) -> bool {
        self.procedures == 0 && self.acquire == 0 && self.release == 0
    }
}

/// A lane operation: its kind and serial.
pub(super) type Ticket = (Kind, u64);

/// What a fast-path operation does to its resource's row.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    Acquire,
    Release,
}

impl Marks {
    fn mark(&mut self, resource: &str) {
        if self.at.len() >= 4096 {
            self.at.retain(|_, at| at.elapsed() < CONTENDED_FOR);
        }
        self.at.insert(resource.into(), Instant::now());
    }

    /// Changes `resource`'s flight, if it has one, and forgets it once nothing is in flight.
    fn settle(&mut self, resource: &str, change: impl FnOnce(&mut Flight)) {
        if let Some(f) = self.busy.get_mut(resource) {
            change(f);
            if f.idle() {
                self.busy.remove(resource);
            }
        }
    }

    /// The lane operation `ticket` leaves `resource`'s flight, unless it left already.
    fn leave(&mut self, resource: &str, (kind, serial): Ticket) {
        self.settle(resource, |f| {
            if *f.lane(kind) == serial {
                *f.lane(kind) = 0;
            }
        });
    }
}

impl Contention {
    /// Notes an operation on `resource` for as long as the answer's [`Busy`] lives, and whether it goes to the
    /// lane (`kind` given, the resource not contended, no procedure call on it in flight and no other operation
    /// of its kind in the lane); otherwise it is a procedure call.
    pub(super) fn enter(&self, resource: &str, kind: Option<Kind>) -> (Busy<'_>, bool) {
        let mut busy = Busy {
            contention: self,
            resource: resource.into(),
            lane: None,
        };
        let Ok(mut m) = self.0.lock() else {
            return (busy, false);
        };
        let marked = m.at.get(resource).is_some_and(|at| at.elapsed() < CONTENDED_FOR);
        m.serial += 1;
        let serial = m.serial;
        let flight = m.busy.entry(resource.into()).or_default();
        // Refused: a procedure call works on the resource, or an operation of this kind is in the lane.
        let refused = kind.is_some_and(|k| flight.procedures > 0 || *flight.lane(k) != 0);
        let fast = kind.is_some() && !refused && !marked;
        match kind.filter(|_| fast) {
            Some(k) => {
                *flight.lane(k) = serial;
                busy.lane = Some((k, serial));
            }
            None => flight.procedures += 1,
        }
        if refused {
            m.mark(resource);
        }
        (busy, fast)
    }

    /// Whether a release of `resource` is in the lane.
    pub(super) fn releasing(&self, resource: &str) -> bool {
        self.0
            .lock()
            .is_ok_and(|m| m.busy.get(resource).is_some_and(|f| f.release != 0))
    }

    /// A lane operation on `resource` landed: its batch is done.
    pub(super) fn landed(&self, resource: &str, ticket: Ticket) {
        if let Ok(mut m) = self.0.lock() {
            m.leave(resource, ticket);
        }
    }

    pub(super) fn mark(&self, resource: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.mark(resource);
        }
    }

    pub(super) fn calm(&self, resource: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.at.remove(resource);
        }
    }
}

/// An operation on a resource in flight; dropped when it ends (or its caller gives up).
pub(super) struct Busy<'a> {
    contention: &'a Contention,
    resource: String,
    /// In the lane, as this kind and serial; `None`: a procedure call.
    lane: Option<Ticket>,
}

impl Busy<'_> {
    /// The lane operation's ticket (`None`: a procedure call).
    pub(super) fn ticket(&self) -> Option<Ticket> {
        self.lane
    }

    /// The lane operation takes its place in the lane again, to be sent once more (its batch landed without
    /// doing it); false when another operation of its kind took the place meanwhile.
    pub(super) fn again(&self) -> bool {
        let (Some((kind, serial)), Ok(mut m)) = (self.lane, self.contention.0.lock()) else {
            return false;
        };
        let place = m.busy.entry(self.resource.clone()).or_default().lane(kind);
        if *place == 0 {
            *place = serial;
        }
        *place == serial
    }

    /// The operation leaves the lane for a procedure call.
    pub(super) fn leave_lane(&mut self) {
        if let (Some(t), Ok(mut m)) = (self.lane.take(), self.contention.0.lock()) {
            m.leave(&self.resource, t);
            m.busy.entry(self.resource.clone()).or_default().procedures += 1;
        }
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if let Ok(mut m) = self.contention.0.lock() {
            match self.lane {
                // Left already when its batch landed; here when it never reached one.
                Some(t) => m.leave(&self.resource, t),
                None => m.settle(&self.resource, |f| f.procedures = f.procedures.saturating_sub(1)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Contention, Kind};

    #[test]
    fn the_lane_takes_one_acquire_and_one_release_of_a_resource_and_nothing_beside_a_procedure_call() {
        let c = Contention::default();
        let (acquire, fast) = c.enter("r", Some(Kind::Acquire));
        assert!(fast, "the first operation on a quiet resource goes to the lane");
        let (release, fast) = c.enter("r", Some(Kind::Release));
        assert!(fast, "a release beside an acquire in the lane");
        assert!(c.releasing("r"));
        let (second, fast) = c.enter("r", Some(Kind::Release));
        assert!(!fast, "a second release while one is in the lane");
        drop((acquire, release, second));
        assert!(!c.releasing("r"));
        let (after, fast) = c.enter("r", Some(Kind::Acquire));
        assert!(!fast, "the overlap marked the resource contended");
        drop(after);
        c.calm("r");
        let (calm, fast) = c.enter("r", Some(Kind::Acquire));
        assert!(fast, "a release that handed the resource to nobody ends the mark");
        drop(calm);

        let (procedure, fast) = c.enter("s", None);
        assert!(!fast, "not for the lane: a procedure call");
        let (beside, fast) = c.enter("s", Some(Kind::Release));
        assert!(
            !fast,
            "nothing goes to the lane while a procedure call works on the resource"
        );
        drop((procedure, beside));

        let (mut left, fast) = c.enter("t", Some(Kind::Acquire));
        assert!(fast);
        left.leave_lane();
        let (beside, fast) = c.enter("t", Some(Kind::Release));
        assert!(
            !fast,
            "an operation that left the lane for a procedure call counts as one"
        );
        drop((left, beside));
        assert_eq!(c.0.lock().map(|m| m.busy.len()).ok(), Some(0), "nothing left in flight");

        let (first, fast) = c.enter("u", Some(Kind::Release));
        assert!(fast);
        let ticket = first.ticket().expect("in the lane");
        c.landed("u", ticket);
        assert!(!c.releasing("u"), "its batch landed");
        let (next, fast) = c.enter("u", Some(Kind::Release));
        assert!(
            fast,
            "a release after one whose batch landed, before its caller read the answer"
        );
        drop(first);
        assert!(
            c.releasing("u"),
            "the first one's end does not end the next one's flight"
        );
        drop(next);
        assert_eq!(c.0.lock().map(|m| m.busy.len()).ok(), Some(0));

        // Sent again after its batch landed: back in its place, unless another one took it.
        let (acquire, _) = c.enter("v", Some(Kind::Acquire));
        let ticket = acquire.ticket().expect("in the lane");
        c.landed("v", ticket);
        assert!(acquire.again());
        let (other, fast) = c.enter("v", Some(Kind::Acquire));
        assert!(!fast, "its place is taken again");
        drop((acquire, other));
        let (acquire, _) = c.enter("w", Some(Kind::Acquire));
        c.landed("w", acquire.ticket().expect("in the lane"));
        let (other, fast) = c.enter("w", Some(Kind::Acquire));
        assert!(fast);
        assert!(!acquire.again(), "another acquire took the place meanwhile");
        drop((acquire, other));
        assert_eq!(c.0.lock().map(|m| m.busy.len()).ok(), Some(0));
    }
}
