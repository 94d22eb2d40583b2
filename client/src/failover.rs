//! Several endpoints of one counter API, such as the regions of a multi-region stack
//! (one DynamoDB global table behind them all): calls go to the first endpoint that is
//! up, move on at once to the next when it fails, and come back to it once it answers
//! again. Which endpoint answers does not matter to what it answers: the counters and
//! the idempotency keys are one.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::endpoint::Endpoint;
use crate::error::Error;

/// How often an endpoint that is down is asked again (in the background, while calls
/// are made) whether it answers.
pub(crate) const RECHECK: Duration = Duration::from_secs(1);

/// The endpoints of a client, in the order they are preferred, and what calls found.
#[derive(Debug)]
pub(crate) struct Endpoints {
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    endpoint: Endpoint,
    down: Mutex<Option<Down>>,
    /// Calls that failed here and were sent to another endpoint.
    moved_away: AtomicU64,
}

/// Why an endpoint is down, and when it was last asked again.
#[derive(Debug)]
struct Down {
    reason: String,
    checked: Instant,
    checking: bool,
}

/// One endpoint of a client and what its calls found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointState {
    /// Its base URL.
    pub url: String,
    /// What its last call failed with, while it is down; `None` while calls go to it.
    pub failure: Option<String>,
    /// Calls that failed there and were sent to the next endpoint.
    pub moved_away: u64,
}

impl EndpointState {
    /// Whether calls go to it: its last call or check answered.
    pub fn up(&self) -> bool {
        self.failure.is_none()
    }
}

impl Error {
    /// Whether a call that failed so goes to the next endpoint: no answer (a connection
    /// error or a timeout) or a server error. A refusal or throttling is the API's answer,
    /// which another region would give too.
    pub(crate) fn moves_on(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Service { status, .. } | Self::Unexpected { status, .. } => *status >= 500 && *status != 508,
            _ => false,
        }
    }
}

impl Endpoints {
    pub(crate) fn new(endpoints: Vec<Endpoint>) -> Self {
        let entries = endpoints
            .into_iter()
            .map(|endpoint| Entry { endpoint, down: Mutex::new(None), moved_away: AtomicU64::new(0) })
            .collect();
        Self { entries }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn endpoint(&self, index: usize) -> &Endpoint {
        &self.entries[index].endpoint
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Endpoint> {
        self.entries.iter().map(|entry| &entry.endpoint)
    }

    /// The order a call tries them in: those up, as preferred, then those down, as
    /// preferred (when all are down, every one is tried).
    pub(crate) fn order(&self) -> Vec<usize> {
        let (up, down): (Vec<usize>, Vec<usize>) = (0..self.entries.len()).partition(|&index| !self.is_down(index));
        up.into_iter().chain(down).collect()
    }

    /// The endpoints down and due to be asked again, each marked as being asked, so that
    /// one check runs at a time.
    pub(crate) fn due_checks(&self, now: Instant) -> Vec<usize> {
        let mut due = Vec::new();
        for (index, entry) in self.entries.iter().enumerate() {
            let mut down = entry.down.lock().expect("never poisoned");
            if let Some(down) = down.as_mut().filter(|down| !down.checking && now >= down.checked + RECHECK) {
                down.checking = true;
                due.push(index);
            }
        }
        due
    }

    /// A call to `index` failed with `error`; `moved` when another endpoint is tried next.
    pub(crate) fn failed(&self, index: usize, error: &Error, moved: bool) {
        let entry = &self.entries[index];
        *entry.down.lock().expect("never poisoned") =
            Some(Down { reason: error.to_string(), checked: Instant::now(), checking: false });
        if moved {
            entry.moved_away.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `index` answered.
    pub(crate) fn answered(&self, index: usize) {
        *self.entries[index].down.lock().expect("never poisoned") = None;
    }

    pub(crate) fn states(&self) -> Vec<EndpointState> {
        self.entries
            .iter()
            .map(|entry| {
                let failure = entry.down.lock().expect("never poisoned").as_ref().map(|down| down.reason.clone());
                EndpointState {
                    url: entry.endpoint.url().to_owned(),
                    failure,
                    moved_away: entry.moved_away.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    fn is_down(&self, index: usize) -> bool {
        self.entries[index].down.lock().expect("never poisoned").is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::Auth;

    fn endpoints(count: usize) -> Endpoints {
        let urls = (0..count).map(|port| Endpoint::new(&format!("http://127.0.0.1:{}", 9000 + port), Auth::None));
        Endpoints::new(urls.map(Result::unwrap).collect())
    }

    fn unreachable() -> Error {
        Error::Unreachable { url: "http://127.0.0.1:9000".into(), reason: "connection refused".into() }
    }

    #[test]
    fn calls_prefer_the_first_endpoint_up_and_try_those_down_last() {
        let endpoints = endpoints(3);
        assert_eq!(endpoints.order(), [0, 1, 2]);
        endpoints.failed(0, &unreachable(), true);
        assert_eq!(endpoints.order(), [1, 2, 0]);
        endpoints.failed(1, &unreachable(), true);
        assert_eq!(endpoints.order(), [2, 0, 1]);
        endpoints.answered(0);
        assert_eq!(endpoints.order(), [0, 2, 1], "the first is preferred again once it answers");
        let states = endpoints.states();
        assert_eq!((states[0].up(), states[0].moved_away), (true, 1));
        assert_eq!((states[1].up(), states[1].failure.is_some()), (false, true));
    }

    #[test]
    fn a_down_endpoint_is_checked_again_once_per_recheck_and_one_check_at_a_time() {
        let endpoints = endpoints(2);
        let start = Instant::now();
        assert!(endpoints.due_checks(start + RECHECK).is_empty(), "nothing is down");
        endpoints.failed(1, &unreachable(), false);
        assert!(endpoints.due_checks(Instant::now()).is_empty(), "just failed");
        let later = Instant::now() + RECHECK;
        assert_eq!(endpoints.due_checks(later), [1]);
        assert!(endpoints.due_checks(later).is_empty(), "its check is running");
        endpoints.failed(1, &unreachable(), false);
        assert_eq!(endpoints.due_checks(Instant::now() + RECHECK), [1], "the check failed: due again later");
    }

    #[test]
    fn only_no_answer_and_server_errors_move_a_call_on() {
        let service = |status: u16, code: &str| Error::Service {
            status,
            code: code.into(),
            description: String::new(),
            retry_after: None,
        };
        assert!(unreachable().moves_on());
        assert!(service(500, "error_incrementing_probably_database_error").moves_on());
        assert!(service(503, "upstream_unavailable").moves_on());
        let gateway = Error::Unexpected { url: String::new(), status: 504, body: "timed out".into() };
        assert!(gateway.moves_on());
        assert!(!service(429, "throttled").moves_on(), "throttling is an answer");
        assert!(!service(400, "invalid_count").moves_on());
        assert!(!service(409, "idempotency_key_in_progress").moves_on());
        assert!(!service(508, "upstream_loop").moves_on(), "a loop is the same everywhere");
        assert!(!Error::Forbidden { status: 403, message: "Forbidden".into() }.moves_on());
    }
}
