//! Windowed aggregation on a state store: one aggregate per (window, key), updated as records
//! arrive, emitted on every update or once when the window closes, and deleted after retention.
//!
//! Store layout: `window start (8 bytes, big-endian, sign bit flipped) ++ key`, so entries sort
//! by window start and closed windows are a prefix of the store. One reserved key (sorting before
//! every window) remembers which windows were already emitted on close, so a restart or a
//! restore never emits a closed window twice. Event times must be ≥ 0 (after 1970).

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::context::ProcessorContext;
use super::window::{Window, Windows};

/// When results leave the aggregation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// Every update of a window's aggregate (low latency, many updates: "live counts").
    OnUpdate,
    /// Once per window, when stream time passes its end + grace (final results: "trending").
    OnClose,
}

const EMITTED_THROUGH: &[u8] = b"\x7femitted-through";

/// A windowed aggregation over one store.
#[derive(Debug, Clone, Copy)]
pub struct WindowedAggregation {
    pub store: &'static str,
    pub windows: Windows,
    pub emit: Emit,
}

fn encode_start(start: i64) -> [u8; 8] {
    ((start as u64) ^ (1 << 63)).to_be_bytes()
}

fn decode_start(bytes: &[u8]) -> i64 {
    (u64::from_be_bytes(bytes[..8].try_into().expect("8-byte window start")) ^ (1 << 63)) as i64
}

/// The store key of `key` in the window starting at `start`.
pub fn window_key(start: i64, key: &str) -> Vec<u8> {
    let mut out = encode_start(start).to_vec();
    out.extend_from_slice(key.as_bytes());
    out
}

impl WindowedAggregation {
    /// Folds a record at `timestamp` into the aggregate of each open window containing it.
    /// Late windows (closed at this stream time) are skipped and counted as dropped. Returns the
    /// updated `(window, aggregate)` pairs — emit them when `emit` is [`Emit::OnUpdate`].
    pub fn update<A>(
        &self,
        ctx: &mut ProcessorContext<'_>,
        key: &str,
        timestamp: i64,
        fold: impl Fn(&mut A),
    ) -> anyhow::Result<Vec<(Window, A)>>
    where
        A: Serialize + DeserializeOwned + Default,
    {
        anyhow::ensure!(timestamp >= 0, "event times before 1970 are not supported");
        let (open, late) = self.windows.assign(timestamp, ctx.stream_time_ms());
        if late > 0 {
            ctx.record_late_drop(late as u64);
        }
        let mut updated = Vec::with_capacity(open.len());
        for window in open {
            let store_key = window_key(window.start, key);
            let mut aggregate: A = ctx.get(self.store, &store_key)?.unwrap_or_default();
            fold(&mut aggregate);
            ctx.put(self.store, &store_key, &aggregate)?;
            updated.push((window, aggregate));
        }
        Ok(updated)
    }

    /// Windows closed at the current stream time that were not returned before, with every key's
    /// aggregate, oldest first — emit them when `emit` is [`Emit::OnClose`]. Also deletes windows
    /// past retention. Call it after `update` (or from `punctuate`).
    #[allow(clippy::type_complexity)]
    pub fn closed<A>(
        &self,
        ctx: &mut ProcessorContext<'_>,
    ) -> anyhow::Result<Vec<(Window, Vec<(String, A)>)>>
    where
        A: Serialize + DeserializeOwned,
    {
        let stream_time = ctx.stream_time_ms();
        let (size, grace) = (self.windows.size_ms, self.windows.grace_ms);
        // Window starting at s is closed iff s + size + grace <= stream time.
        let closed_through = stream_time - size - grace;
        let emitted_through: Option<i64> = ctx.get(self.store, EMITTED_THROUGH)?;
        let mut result: Vec<(Window, Vec<(String, A)>)> = Vec::new();
        if self.emit == Emit::OnClose {
            let from = emitted_through.map_or(encode_start(0), |s| encode_start(s + 1));
            let to = encode_start(closed_through + 1);
            if from < to {
                for (store_key, aggregate) in ctx.range::<A>(self.store, &from, Some(&to))? {
                    let start = decode_start(&store_key);
                    let key = String::from_utf8_lossy(&store_key[8..]).into_owned();
                    match result.last_mut() {
                        Some((window, entries)) if window.start == start => {
                            entries.push((key, aggregate))
                        }
                        _ => result.push((
                            Window {
                                start,
                                end: start + size,
                            },
                            vec![(key, aggregate)],
                        )),
                    }
                }
            }
            if let Some((last, _)) = result.last()
                && emitted_through.is_none_or(|e| last.start > e)
            {
                ctx.put(self.store, EMITTED_THROUGH, &last.start)?;
            }
        }
        // Retention: a window starting at s may go once s + size + retention <= stream time.
        let expired_through = stream_time - size - self.windows.retention_ms;
        let expired_end = encode_start(expired_through + 1);
        let first_window = encode_start(0);
        if first_window < expired_end {
            for (store_key, _) in
                ctx.range::<serde::de::IgnoredAny>(self.store, &first_window, Some(&expired_end))?
            {
                ctx.delete(self.store, &store_key)?;
            }
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::streams::context::RecordMeta;
    use crate::streams::state::{Overlay, StateDb};

    /// Runs `f` with a context on a real (temporary) RocksDB at the given stream time.
    fn with_ctx<R>(
        db: &StateDb,
        overlay: &mut Overlay,
        stream_time: i64,
        f: impl FnOnce(&mut ProcessorContext<'_>) -> R,
    ) -> (R, u64) {
        let stores = vec!["agg".to_owned()];
        let mut outputs = Vec::new();
        let mut ctx = ProcessorContext {
            application_id: "test",
            stores: &stores,
            db,
            global: None,
            overlay,
            outputs: &mut outputs,
            undo: Vec::new(),
            meta: RecordMeta {
                topic: "t".into(),
                partition: 0,
                offset: 0,
                timestamp_ms: Some(stream_time),
            },
            stream_time,
            emitted: 0,
            late_dropped: 0,
        };
        let result = f(&mut ctx);
        (result, ctx.late_dropped)
    }

    fn setup() -> (tempfile::TempDir, StateDb, Overlay) {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(dir.path(), &["agg".to_owned()]).unwrap();
        (dir, db, vec![BTreeMap::new()])
    }

    const T0: i64 = 1_700_000_000_000; // a multiple of 1000

    #[test]
    fn emit_on_update_returns_every_hopping_window_updated() {
        let (_dir, db, mut overlay) = setup();
        let agg = WindowedAggregation {
            store: "agg",
            windows: Windows::hopping(1000, 500),
            emit: Emit::OnUpdate,
        };
        let (updated, late) = with_ctx(&db, &mut overlay, T0 + 600, |ctx| {
            agg.update::<u64>(ctx, "post-1", T0 + 600, |n| *n += 1)
                .unwrap();
            agg.update::<u64>(ctx, "post-1", T0 + 600, |n| *n += 1)
                .unwrap()
        });
        assert_eq!(late, 0);
        assert_eq!(
            updated,
            vec![
                (
                    Window {
                        start: T0,
                        end: T0 + 1000
                    },
                    2
                ),
                (
                    Window {
                        start: T0 + 500,
                        end: T0 + 1500
                    },
                    2
                )
            ]
        );
    }

    #[test]
    fn late_records_are_dropped_and_counted() {
        let (_dir, db, mut overlay) = setup();
        let agg = WindowedAggregation {
            store: "agg",
            windows: Windows::tumbling(1000).grace(100),
            emit: Emit::OnClose,
        };
        let (updated, late) = with_ctx(&db, &mut overlay, T0 + 1100, |ctx| {
            agg.update::<u64>(ctx, "k", T0 + 10, |n| *n += 1).unwrap()
        });
        assert!(updated.is_empty());
        assert_eq!(late, 1);
    }

    #[test]
    fn emit_on_close_returns_each_closed_window_once_then_retention_deletes_it() {
        let (_dir, db, mut overlay) = setup();
        let windows = Windows::tumbling(1000).grace(100).retention(5000);
        let agg = WindowedAggregation {
            store: "agg",
            windows,
            emit: Emit::OnClose,
        };
        with_ctx(&db, &mut overlay, T0 + 999, |ctx| {
            agg.update::<u64>(ctx, "a", T0 + 10, |n| *n += 1).unwrap();
            agg.update::<u64>(ctx, "b", T0 + 20, |n| *n += 5).unwrap();
            agg.update::<u64>(ctx, "a", T0 + 1500, |n| *n += 1).unwrap();
            assert!(
                agg.closed::<u64>(ctx).unwrap().is_empty(),
                "nothing closed before end + grace"
            );
        });
        let (closed, _) = with_ctx(&db, &mut overlay, T0 + 1100, |ctx| {
            agg.closed::<u64>(ctx).unwrap()
        });
        assert_eq!(
            closed,
            vec![(
                Window {
                    start: T0,
                    end: T0 + 1000
                },
                vec![("a".to_owned(), 1), ("b".to_owned(), 5)]
            )]
        );
        let (again, _) = with_ctx(&db, &mut overlay, T0 + 1200, |ctx| {
            agg.closed::<u64>(ctx).unwrap()
        });
        assert!(again.is_empty(), "a closed window is emitted once");
        let (later, _) = with_ctx(&db, &mut overlay, T0 + 2100, |ctx| {
            agg.closed::<u64>(ctx).unwrap()
        });
        assert_eq!(
            later,
            vec![(
                Window {
                    start: T0 + 1000,
                    end: T0 + 2000
                },
                vec![("a".to_owned(), 1)]
            )]
        );
        // After retention (end + 5 s) the first window's entries are deleted.
        let remaining = overlay[0]
            .iter()
            .filter(|(k, v)| k.as_slice() != EMITTED_THROUGH && v.is_some())
            .count();
        assert_eq!(remaining, 3, "both windows still retained: a and b, then a");
        with_ctx(&db, &mut overlay, T0 + 6000, |ctx| {
            agg.closed::<u64>(ctx).unwrap()
        });
        let first_window_live = overlay[0]
            .iter()
            .any(|(k, v)| k.len() > 8 && decode_start(k) == T0 && v.is_some());
        assert!(!first_window_live, "expired window deleted");
    }

    #[test]
    fn window_keys_sort_by_start() {
        assert!(window_key(T0, "zzz") < window_key(T0 + 1, "aaa"));
        assert!(EMITTED_THROUGH < window_key(0, "").as_slice());
        assert_eq!(decode_start(&window_key(T0, "k")), T0);
    }
}
