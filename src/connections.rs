//! The open client connections: which are busy, which idle and for how long, and the cap.
//!
//! A connection is *busy* while at least one of its requests is being answered, and *idle*
//! otherwise: before its first request head is complete, while a head trickles in, and
//! between requests on a keep-alive connection. One rule covers silent, trickling and idle
//! clients alike, over HTTP/1.1 and HTTP/2: a connection idle for `client_timeout` is closed
//! ([`Connection::watchdog`]). Busy connections are never closed here; a stalled request body
//! is the proxy's to time out (it answers 408).
//!
//! At the cap ([`Connections::admit`]) a new connection takes the place of the one idle the
//! longest, so stalled clients cannot lock out new ones; when every connection is busy, the
//! new one is refused. This module never reads or writes the sockets itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
// tokio's clock, so tests can run the idle timeout on paused time.
use tokio::time::Instant;

/// Every open connection, for the cap and for eviction.
#[derive(Debug)]
pub struct Connections {
    max: usize,
    idle_timeout: Duration,
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Connection>>>,
}

/// One client connection's state, shared by its task, its requests and the registry.
#[derive(Debug)]
pub struct Connection {
    id: u64,
    epoch: Instant,
    /// Requests being answered now (several at once on HTTP/2).
    in_flight: AtomicUsize,
    /// When the connection last became idle, in milliseconds since `epoch`.
    idle_since_ms: AtomicU64,
    /// Wakes the watchdog to close the connection now (eviction).
    evict: Notify,
}

/// What [`Connections::admit`] decided for a new connection.
#[derive(Debug)]
pub enum Admission {
    /// Serve it.
    Admitted(Arc<Connection>),
    /// At the cap with every connection busy: close it.
    Refused,
}

impl Connections {
    /// A registry allowing `max` connections, each closed after `idle_timeout` idle.
    pub fn new(max: usize, idle_timeout: Duration) -> Connections {
        Connections {
            max,
            idle_timeout,
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Registers a new connection. At the cap, evicts the connection idle the longest to make
    /// room, or refuses the new one if every connection is busy.
    pub fn admit(&self) -> Admission {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.len() >= self.max {
            let longest_idle = open
                .values()
                .filter(|c| c.in_flight.load(Ordering::Acquire) == 0)
                // Millisecond clocks tie under a burst of connections: the older one (lower id)
                // goes first, never a random one out of the map's order.
                .min_by_key(|c| (c.idle_since_ms.load(Ordering::Acquire), c.id))
                .map(|c| c.id);
            let Some(id) = longest_idle else {
                return Admission::Refused;
            };
            if let Some(evicted) = open.remove(&id) {
                // `notify_one` keeps a permit if the watchdog is not waiting at this instant.
                evicted.evict.notify_one();
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection {
            id,
            epoch: self.epoch,
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            evict: Notify::new(),
        });
        connection.mark_idle();
        open.insert(id, connection.clone());
        Admission::Admitted(connection)
    }

    /// Forgets a closed connection.
    pub fn release(&self, connection: &Connection) {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&connection.id);
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.open.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Requests being answered now, over all connections.
    pub fn requests_in_flight(&self) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.values().map(|c| c.in_flight.load(Ordering::Acquire)).sum()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How long a connection may stay idle.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }
}

impl Connection {
    /// Marks a request in flight until the returned guard is dropped (answered, or abandoned
    /// by a client that went away).
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    /// Completes when the connection should be closed: idle for `timeout`, or evicted.
    pub async fn watchdog(&self, timeout: Duration) {
        loop {
            let wait = if self.in_flight.load(Ordering::Acquire) > 0 {
                timeout
            } else {
                let idle_for = self.now_ms().saturating_sub(self.idle_since_ms.load(Ordering::Acquire));
                let idle_for = Duration::from_millis(idle_for);
                if idle_for >= timeout {
                    return;
                }
                timeout - idle_for
            };
            tokio::select! {
                () = self.evict.notified() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn mark_idle(&self) {
        self.idle_since_ms.store(self.now_ms(), Ordering::Release);
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// A request in flight on a [`Connection`]; dropping it may make the connection idle.
#[derive(Debug)]
pub struct Busy(Arc<Connection>);

impl Drop for Busy {
    fn drop(&mut self) {
        // The idle clock starts when the last request in flight finishes.
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.mark_idle();
        }
    }
}

/// Accept errors (out of file descriptors and the like) logged at most once a second with a
/// count, with a growing pause so a persistent failure never spins a core.
#[derive(Debug)]
pub struct AcceptErrors {
    last_logged: Option<Instant>,
    unlogged: u64,
    backoff: Duration,
}

impl Default for AcceptErrors {
    fn default() -> Self {
        AcceptErrors {
            last_logged: None,
            unlogged: 0,
            backoff: AcceptErrors::FIRST_PAUSE,
        }
    }
}

impl AcceptErrors {
    const FIRST_PAUSE: Duration = Duration::from_millis(5);
    const LONGEST_PAUSE: Duration = Duration::from_secs(1);

    /// Counts a failure, logs it if a second has passed since the last log, and returns how
    /// long to pause before accepting again.
    pub fn failed(&mut self, what: &str, error: &dyn std::fmt::Display) -> Duration {
        self.unlogged += 1;
        if self.last_logged.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
            tracing::warn!(
                error = %error,
                count = self.unlogged,
                pause = ?self.backoff,
                "{what} (logged at most once a second)"
            );
            self.last_logged = Some(Instant::now());
            self.unlogged = 0;
        }
        let pause = self.backoff;
        self.backoff = (self.backoff * 2).min(Self::LONGEST_PAUSE);
        pause
    }

    /// An accept succeeded: the next failure pauses briefly again.
    pub fn succeeded(&mut self) {
        self.backoff = Self::FIRST_PAUSE;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(a: Admission) -> Arc<Connection> {
        match a {
            Admission::Admitted(c) => c,
            Admission::Refused => panic!("refused"),
        }
    }

    #[test]
    fn at_the_cap_the_longest_idle_connection_makes_room() {
        let connections = Connections::new(2, Duration::from_secs(30));
        let first = admitted(connections.admit());
        std::thread::sleep(Duration::from_millis(5));
        let second = admitted(connections.admit());
        let third = admitted(connections.admit());
        assert_eq!(connections.len(), 2);
        let open = connections.open.lock().unwrap();
        assert!(!open.contains_key(&first.id), "the oldest idle one was evicted");
        assert!(open.contains_key(&second.id) && open.contains_key(&third.id));
    }

    #[test]
    fn a_burst_within_one_millisecond_evicts_the_oldest_first() {
        // No sleeps: the connections share idle timestamps, as a burst of clients does.
        let connections = Connections::new(4, Duration::from_secs(30));
        let all: Vec<_> = (0..20).map(|_| admitted(connections.admit())).collect();
        let open = connections.open.lock().unwrap();
        let mut left: Vec<u64> = open.keys().copied().collect();
        left.sort_unstable();
        let newest: Vec<u64> = all[16..].iter().map(|c| c.id).collect();
        assert_eq!(left, newest, "the four newest remain");
    }

    #[test]
    fn busy_connections_are_never_evicted_and_a_full_house_refuses() {
        let connections = Connections::new(1, Duration::from_secs(30));
        let only = admitted(connections.admit());
        let busy = only.busy();
        assert!(matches!(connections.admit(), Admission::Refused));
        drop(busy);
        let _next = admitted(connections.admit());
        assert_eq!(connections.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_fires_after_the_idle_timeout_but_not_while_busy() {
        let connections = Connections::new(8, Duration::from_secs(30));
        let c = admitted(connections.admit());
        let busy = c.busy();
        let watchdog = c.watchdog(Duration::from_secs(30));
        tokio::pin!(watchdog);
        // Busy for two minutes: never fires.
        assert!(tokio::time::timeout(Duration::from_secs(120), &mut watchdog)
            .await
            .is_err());
        drop(busy);
        // Idle from now: fires after 30 s, not before.
        assert!(tokio::time::timeout(Duration::from_secs(29), &mut watchdog)
            .await
            .is_err());
        assert!(tokio::time::timeout(Duration::from_secs(2), &mut watchdog)
            .await
            .is_ok());
    }

    #[test]
    fn accept_errors_back_off_up_to_a_second() {
        let mut errors = AcceptErrors::default();
        let pauses: Vec<_> = (0..12).map(|_| errors.failed("accept failed", &"EMFILE")).collect();
        assert!(pauses.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(pauses.last(), Some(&Duration::from_secs(1)));
        errors.succeeded();
        assert_eq!(errors.failed("accept failed", &"EMFILE"), AcceptErrors::FIRST_PAUSE);
    }
}
