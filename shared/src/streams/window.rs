//! Windows on event time, the way Kafka Streams defines them.
//!
//! * **Tumbling** windows of size `S`: `[k·S, (k+1)·S)`; every instant is in exactly one.
//! * **Hopping** windows of size `S` advancing by `A ≤ S`: `[k·A, k·A + S)`; an instant is in
//!   `S / A` of them (when `A` divides `S`).
//! * **Grace** `G`: a window `[s, e)` accepts records while *stream time* (the largest event time
//!   the task has seen) is `< e + G`; it is *closed* after that, and a record for it is late: it
//!   is dropped and counted (`streams_late_records_dropped_total`).
//! * **Retention**: a window's state is kept until stream time passes `e + retention`
//!   (`retention ≥ G`), then deleted.
//!
//! All times are milliseconds since the Unix epoch.

/// A window: `[start, end)` in epoch milliseconds.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

/// How records are grouped in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    pub size_ms: i64,
    pub advance_ms: i64,
    pub grace_ms: i64,
    pub retention_ms: i64,
}

impl Windows {
    /// Non-overlapping windows of `size_ms`, no grace.
    pub fn tumbling(size_ms: i64) -> Self {
        assert!(size_ms > 0, "window size must be positive");
        Windows {
            size_ms,
            advance_ms: size_ms,
            grace_ms: 0,
            retention_ms: 0,
        }
    }

    /// Windows of `size_ms` starting every `advance_ms` (`0 < advance_ms ≤ size_ms`), no grace.
    pub fn hopping(size_ms: i64, advance_ms: i64) -> Self {
        assert!(
            size_ms > 0 && advance_ms > 0 && advance_ms <= size_ms,
            "need 0 < advance <= size"
        );
        Windows {
            size_ms,
            advance_ms,
            grace_ms: 0,
            retention_ms: 0,
        }
    }

    /// How long after a window's end records are still accepted.
    pub fn grace(mut self, grace_ms: i64) -> Self {
        assert!(grace_ms >= 0);
        self.grace_ms = grace_ms;
        self.retention_ms = self.retention_ms.max(grace_ms);
        self
    }

    /// How long after a window's end its state is kept (at least the grace period).
    pub fn retention(mut self, retention_ms: i64) -> Self {
        self.retention_ms = retention_ms.max(self.grace_ms);
        self
    }

    /// Every window that contains `timestamp`, earliest first.
    pub fn windows_for(&self, timestamp: i64) -> Vec<Window> {
        // Window k contains t iff k·A <= t < k·A + S, i.e. (t - S)/A < k <= t/A.
        let last = timestamp.div_euclid(self.advance_ms);
        let first = (timestamp - self.size_ms).div_euclid(self.advance_ms) + 1;
        (first..=last)
            .map(|k| {
                let start = k * self.advance_ms;
                Window {
                    start,
                    end: start + self.size_ms,
                }
            })
            .collect()
    }

    /// Whether `window` no longer accepts records at `stream_time`.
    pub fn is_closed(&self, window: &Window, stream_time: i64) -> bool {
        stream_time >= window.end + self.grace_ms
    }

    /// Whether `window`'s state may be deleted at `stream_time`.
    pub fn is_expired(&self, window: &Window, stream_time: i64) -> bool {
        stream_time >= window.end + self.retention_ms
    }

    /// The windows a record at `timestamp` updates when stream time is `stream_time`, and how
    /// many of its windows were already closed (late: dropped).
    pub fn assign(&self, timestamp: i64, stream_time: i64) -> (Vec<Window>, usize) {
        let (open, closed): (Vec<Window>, Vec<Window>) = self
            .windows_for(timestamp)
            .into_iter()
            .partition(|w| !self.is_closed(w, stream_time.max(timestamp)));
        (open, closed.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(start: i64, end: i64) -> Window {
        Window { start, end }
    }

    #[test]
    fn tumbling_boundaries_are_start_inclusive_end_exclusive() {
        let windows = Windows::tumbling(1000);
        assert_eq!(windows.windows_for(0), vec![w(0, 1000)]);
        assert_eq!(windows.windows_for(999), vec![w(0, 1000)]);
        assert_eq!(windows.windows_for(1000), vec![w(1000, 2000)]);
        assert_eq!(
            windows.windows_for(-1),
            vec![w(-1000, 0)],
            "before the epoch too"
        );
    }

    #[test]
    fn hopping_windows_overlap() {
        let windows = Windows::hopping(1000, 250);
        assert_eq!(
            windows.windows_for(1100),
            vec![w(250, 1250), w(500, 1500), w(750, 1750), w(1000, 2000)]
        );
        assert_eq!(windows.windows_for(1000).len(), 4);
        assert_eq!(
            windows.windows_for(999),
            vec![w(0, 1000), w(250, 1250), w(500, 1500), w(750, 1750)]
        );
        // An hour-long window advancing every minute: 60 windows per record.
        assert_eq!(
            Windows::hopping(3_600_000, 60_000)
                .windows_for(123_456_789)
                .len(),
            60
        );
    }

    #[test]
    fn grace_keeps_a_window_open_after_its_end() {
        let windows = Windows::tumbling(1000).grace(200);
        let first = w(0, 1000);
        assert!(!windows.is_closed(&first, 1199));
        assert!(windows.is_closed(&first, 1200));
        // A record at 900 arriving when stream time is 1100: within grace, accepted.
        assert_eq!(windows.assign(900, 1100), (vec![first], 0));
    }

    #[test]
    fn records_after_grace_are_late_and_dropped() {
        let windows = Windows::tumbling(1000).grace(200);
        assert_eq!(windows.assign(900, 1200), (vec![], 1));
        // Hopping: the older windows of a record can be closed while newer ones are open.
        let hopping = Windows::hopping(1000, 500).grace(0);
        assert_eq!(hopping.assign(1200, 1600), (vec![w(1000, 2000)], 1));
    }

    #[test]
    fn retention_is_at_least_grace() {
        let windows = Windows::tumbling(1000).grace(500).retention(100);
        assert_eq!(windows.retention_ms, 500);
        assert!(!windows.is_expired(&w(0, 1000), 1499));
        assert!(windows.is_expired(&w(0, 1000), 1500));
    }
}
