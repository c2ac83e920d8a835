//! Idle keep-alive connections per origin. A connection is either held by one request (which
//! drives it) or parked here unpolled; checking one out polls it once, which is when a
//! connection the upstream closed while it was parked is seen and thrown away.

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, Weak};
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::FutureExt;

use super::connect::{Driver, Sender};
use super::local_wake::LocalWake;

/// A connection with its driver: what a request holds while it uses it. Boxed once when
/// opened (hyper's connection state is most of a kilobyte) so that moving it between the
/// pool, the request and the reply body moves a pointer.
pub type Conn = Box<Connection>;

/// See [`Conn`].
pub struct Connection {
    pub sender: Sender,
    pub driver: Driver,
    /// The waker its futures are polled with (see `local_wake.rs`).
    pub wake: LocalWake,
    /// Whether it served a request before (a failure to send on it may then be retried).
    pub reused: bool,
}

/// A connection parked between requests.
struct Idle {
    conn: Conn,
    since: Instant,
}

/// How many idle connections are kept, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolLimits {
    /// Idle connections kept per origin (`UPSTREAM_POOL_MAX_IDLE_PER_HOST`); a connection
    /// released beyond it is closed.
    pub max_idle_per_origin: usize,
    /// How long a connection may sit idle before it is closed.
    pub idle_timeout: Duration,
}

/// The idle connections of one transport, by origin (`scheme://host:port`).
pub struct Pool {
    idle: Mutex<HashMap<Box<str>, Vec<Idle>>>,
    limits: PoolLimits,
}

impl Pool {
    /// An empty pool; a background task closes connections idle past the timeout.
    pub fn new(limits: PoolLimits) -> Arc<Self> {
        let pool = Arc::new(Self {
            idle: Mutex::new(HashMap::new()),
            limits,
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(reap(Arc::downgrade(&pool), limits.idle_timeout));
        }
        pool
    }

    /// A live idle connection to `origin`, most recently used first; connections that closed
    /// or aged out while parked are dropped on the way.
    pub async fn checkout(&self, origin: &str) -> Option<Conn> {
        loop {
            let idle = self.pop(origin)?;
            if idle.since.elapsed() >= self.limits.idle_timeout {
                continue;
            }
            let mut conn = idle.conn;
            if is_usable(&mut conn).await {
                conn.reused = true;
                return Some(conn);
            }
        }
    }

    fn pop(&self, origin: &str) -> Option<Idle> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.get_mut(origin).and_then(Vec::pop)
    }

    /// Parks `conn` for the next request to `origin`, unless the origin already has as many
    /// idle connections as allowed (then it is closed).
    pub fn release(&self, origin: &str, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let parked = match idle.get_mut(origin) {
            Some(parked) => parked,
            None => idle.entry(origin.into()).or_default(),
        };
        if parked.len() < self.limits.max_idle_per_origin {
            parked.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    /// Idle connections, for the tests and `/health/detailed`.
    pub fn idle_count(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.values().map(Vec::len).sum()
    }

    fn close_expired(&self) {
        let timeout = self.limits.idle_timeout;
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        for parked in idle.values_mut() {
            parked.retain(|i| i.since.elapsed() < timeout);
        }
        idle.retain(|_, parked| !parked.is_empty());
    }
}

/// Polls a parked connection once: a driver that finishes has seen the upstream close (or
/// fail); one still pending must also be ready for a request (idle, keep-alive kept).
async fn is_usable(conn: &mut Conn) -> bool {
    let Connection { driver, wake, .. } = &mut **conn;
    let finished = poll_fn(|cx| {
        let polled = wake.poll(cx, |cx| driver.poll_unpin(cx));
        Poll::Ready(polled.is_ready())
    })
    .await;
    !finished && conn.sender.is_ready()
}

/// Closes connections idle past `timeout`, every quarter of it, while the pool lives.
async fn reap(pool: Weak<Pool>, timeout: Duration) {
    let mut tick = tokio::time::interval((timeout / 4).max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match pool.upgrade() {
            Some(pool) => pool.close_expired(),
            None => return,
        }
    }
}
