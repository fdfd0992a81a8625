//! The memory the proxy gives request bodies, all requests together. Each body is held whole
//! (to be sent again to the next key), up to the API's 32 MB: without a bound, a burst of large
//! requests (16 at 32 MB took the proxy to 829 MB) could take the machine's memory. Past the
//! budget a request is answered with a 503 to retry shortly — refused before any of its body is
//! kept when it declares its length, as soon as it passes the budget when it does not; the rest
//! of the body is read and let go first, so the client, still writing, reads that answer.
//!
//! A tokio semaphore of one permit a byte: a body takes permits as it arrives and gives them
//! back when the request is done.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The budget every request's body draws on.
pub struct BodyBudget {
    permits: Arc<Semaphore>,
    total: usize,
}

impl BodyBudget {
    pub fn new(total: usize) -> Self {
        let total = total.min(Semaphore::MAX_PERMITS);
        Self {
            permits: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// The whole budget, in bytes.
    pub fn total(&self) -> usize {
        self.total
    }

    /// A share of `bytes` (the length a request declares; 0 when it declares none); `None`
    /// when the budget has not that much left now.
    pub fn hold(&self, bytes: usize) -> Option<Held> {
        let mut held = Held {
            permits: self.permits.clone(),
            permit: None,
            bytes: 0,
        };
        held.grow_to(bytes).then_some(held)
    }
}

/// One request's share of the budget, given back when dropped.
pub struct Held {
    permits: Arc<Semaphore>,
    permit: Option<OwnedSemaphorePermit>,
    bytes: usize,
}

impl Held {
    /// Makes the share at least `bytes`; false when the budget has not that much left.
    pub fn grow_to(&mut self, bytes: usize) -> bool {
        if bytes <= self.bytes {
            return true;
        }
        let Ok(more) = u32::try_from(bytes - self.bytes) else {
            return false;
        };
        let Ok(taken) = self.permits.clone().try_acquire_many_owned(more) else {
            return false;
        };
        match &mut self.permit {
            Some(permit) => permit.merge(taken),
            None => self.permit = Some(taken),
        }
        self.bytes = bytes;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_given_while_the_budget_lasts_and_given_back_when_done() {
        let budget = BodyBudget::new(100);
        let mut first = budget.hold(60).unwrap();
        assert!(budget.hold(41).is_none());
        let mut second = budget.hold(0).unwrap();
        assert!(second.grow_to(40));
        assert!(!second.grow_to(41));
        assert!(first.grow_to(60));
        drop(first);
        assert!(second.grow_to(100));
        drop(second);
        assert!(budget.hold(100).is_some());
    }
}
