//! Failed-login limit, kept in the API handler itself: more than `max` failures within
//! `window` from one client address or for one user name answer 429 until they age out.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct LoginLimiter {
    max: usize,
    window: Duration,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginLimiter {
    pub fn new(max: usize, window: Duration) -> Self {
        LoginLimiter {
            max,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The table's keys: the client address, and a digest of the user name (a name is the
    /// caller's to choose, up to the body limit: kept whole, each failure could hold
    /// megabytes until the table is pruned).
    fn keys(client: &str, user: &str) -> [String; 2] {
        [format!("client:{client}"), Self::user_key(user)]
    }

    fn user_key(user: &str) -> String {
        use sha2::Digest;
        let d = sha2::Sha256::digest(user.as_bytes());
        let mut key = String::with_capacity(5 + 32);
        key.push_str("user:");
        for b in &d[..16] {
            key.push_str(&format!("{b:02x}"));
        }
        key
    }

    /// How long until a login may be tried again, if it is blocked now.
    fn blocked_in(
        &self,
        map: &mut HashMap<String, VecDeque<Instant>>,
        client: &str,
        user: &str,
    ) -> Option<Duration> {
        let now = Instant::now();
        let mut wait = None;
        for k in Self::keys(client, user) {
            if let Some(q) = map.get_mut(&k) {
                while q
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > self.window)
                {
                    q.pop_front();
                }
                if q.len() >= self.max
                    && let Some(first) = q.front()
                {
                    let w = self.window.saturating_sub(now.duration_since(*first));
                    wait = Some(wait.map_or(w, |o: Duration| o.max(w)));
                }
            }
        }
        wait
    }

    /// Begin an attempt: blocked (how long to wait), or counted as a failure until it
    /// succeeds ([`LoginLimiter::succeeded`] takes it back). Counting it before the password
    /// is checked (which takes tens of milliseconds) keeps a burst of parallel attempts
    /// within the limit.
    pub fn attempt(&self, client: &str, user: &str) -> Result<(), Duration> {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(wait) = self.blocked_in(&mut map, client, user) {
            return Err(wait);
        }
        self.record(&mut map, client, user);
        Ok(())
    }

    fn record(&self, map: &mut HashMap<String, VecDeque<Instant>>, client: &str, user: &str) {
        let now = Instant::now();
        // Bound memory: forget idle entries when the table grows large.
        if map.len() > 10_000 {
            map.retain(|_, q| {
                q.back()
                    .is_some_and(|t| now.duration_since(*t) <= self.window)
            });
        }
        for k in Self::keys(client, user) {
            let q = map.entry(k).or_default();
            q.push_back(now);
            while q.len() > self.max + 1 {
                q.pop_front();
            }
        }
    }

    /// A successful login clears its user's failures, and takes back the one its attempt
    /// counted for the client (the client's others stay).
    pub fn succeeded(&self, client: &str, user: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&Self::user_key(user));
        if let Some(q) = map.get_mut(&format!("client:{client}")) {
            q.pop_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_attempts_are_counted_before_their_password_is_checked() {
        let l = LoginLimiter::new(10, Duration::from_secs(60));
        // 50 attempts at once: each is counted as it begins, so only 10 get to try.
        let allowed = (0..50)
            .filter(|_| l.attempt("10.0.0.1", "admin").is_ok())
            .count();
        assert_eq!(allowed, 10);
        // A success takes its own count back (the user's failures go too).
        let l = LoginLimiter::new(2, Duration::from_secs(60));
        for _ in 0..5 {
            assert!(l.attempt("10.0.0.9", "bob").is_ok());
            l.succeeded("10.0.0.9", "bob");
        }
    }

    #[test]
    fn a_long_user_name_costs_the_table_a_digest_not_its_length() {
        let l = LoginLimiter::new(2, Duration::from_secs(60));
        let huge = "x".repeat(1 << 20);
        assert!(l.attempt("10.0.0.1", &huge).is_ok());
        assert!(l.attempt("10.0.0.1", &huge).is_ok());
        assert!(
            l.attempt("10.0.0.2", &huge).is_err(),
            "still limited per user"
        );
        let held: usize = l.failures.lock().unwrap().keys().map(String::len).sum();
        assert!(held < 100, "{held} bytes of keys");
        l.succeeded("10.0.0.2", &huge);
        assert!(l.attempt("10.0.0.2", &huge).is_ok());
    }
}
