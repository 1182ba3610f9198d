//! Streams metrics, per application: on `/metrics` and readable in-process (tests, bench).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppLabels {
    application: String,
}

struct Families {
    processed: Family<AppLabels, Counter>,
    skipped: Family<AppLabels, Counter>,
    late_dropped: Family<AppLabels, Counter>,
    restored: Family<AppLabels, Counter>,
    batches: Family<AppLabels, Counter>,
    restore_micros: Family<AppLabels, Counter>,
    idle_micros: Family<AppLabels, Counter>,
    enforced: Family<AppLabels, Counter>,
    changelog_records: Family<AppLabels, Counter>,
    lag: Family<AppLabels, Gauge>,
    restore_remaining: Family<AppLabels, Gauge>,
}

fn families() -> &'static Families {
    static FAMILIES: OnceLock<Families> = OnceLock::new();
    FAMILIES.get_or_init(|| {
        let f = Families {
            processed: Family::default(),
            skipped: Family::default(),
            late_dropped: Family::default(),
            restored: Family::default(),
            batches: Family::default(),
            restore_micros: Family::default(),
            idle_micros: Family::default(),
            enforced: Family::default(),
            changelog_records: Family::default(),
            lag: Family::default(),
            restore_remaining: Family::default(),
        };
        crate::metrics::register("streams_records_processed", "Input records processed", f.processed.clone());
        crate::metrics::register(
            "streams_records_skipped",
            "Input records skipped because the state already contained them (after a crash or rebalance)",
            f.skipped.clone(),
        );
        crate::metrics::register(
            "streams_late_records_dropped",
            "Records dropped because their window had closed (after grace)",
            f.late_dropped.clone(),
        );
        crate::metrics::register("streams_restored_records", "Changelog records applied during restore", f.restored.clone());
        crate::metrics::register("streams_batches_committed", "Batches committed", f.batches.clone());
        crate::metrics::register(
            "streams_restore_microseconds",
            "Time spent restoring state from changelogs",
            f.restore_micros.clone(),
        );
        crate::metrics::register(
            "streams_task_idle_microseconds",
            "Time tasks with records buffered waited for an empty input, to process in time order",
            f.idle_micros.clone(),
        );
        crate::metrics::register(
            "streams_records_enforced",
            "Records processed while another input of their task had nothing buffered (after the idle wait)",
            f.enforced.clone(),
        );
        crate::metrics::register(
            "streams_changelog_records",
            "Changelog records written: one per key changed in a batch, however often it changed",
            f.changelog_records.clone(),
        );
        crate::metrics::register(
            "streams_consumer_lag",
            "Input records not yet processed by this instance (refreshed every 5 s)",
            f.lag.clone(),
        );
        crate::metrics::register(
            "streams_restore_remaining_records",
            "Changelog records still to read by the restore in progress",
            f.restore_remaining.clone(),
        );
        f
    })
}

/// One application's counters. Reads come from the atomics; `/metrics` from the families.
pub struct StreamsStats {
    pub processed: AppCounter,
    pub skipped: AppCounter,
    /// Dead letters acknowledged (on `/metrics` as `kafka_records_dead_lettered_total`, with
    /// every other runtime's: see [`crate::dlq`]).
    pub dead_lettered: AppCounter,
    pub late_dropped: AppCounter,
    pub restored: AppCounter,
    pub batches: AppCounter,
    /// Time spent restoring tasks from changelogs, in microseconds.
    pub restore_micros: AppCounter,
    /// Time tasks waited for an empty input (time order), in microseconds.
    pub idle_micros: AppCounter,
    /// Records processed while another input of their task had nothing buffered.
    pub enforced: AppCounter,
    /// Changelog records written (one per key changed in a batch).
    pub changelog_records: AppCounter,
    /// Input records behind, over this instance's partitions.
    pub lag: Gauge,
    /// Changelog records the running restore still has to read.
    pub restore_remaining: Gauge,
}

/// An atomic counter mirrored into a Prometheus counter.
pub struct AppCounter {
    value: AtomicU64,
    exported: Counter,
}

impl AppCounter {
    fn new(family: &Family<AppLabels, Counter>, application: &str) -> Self {
        let exported = family
            .get_or_create(&AppLabels {
                application: application.to_owned(),
            })
            .clone();
        AppCounter {
            value: AtomicU64::new(0),
            exported,
        }
    }

    /// A counter read in-process only (its Prometheus series is another metric's).
    fn local() -> Self {
        AppCounter {
            value: AtomicU64::new(0),
            exported: Counter::default(),
        }
    }

    pub fn fetch_add(&self, n: u64, ordering: Ordering) -> u64 {
        self.exported.inc_by(n);
        self.value.fetch_add(n, ordering)
    }

    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

impl StreamsStats {
    pub fn new(application: &str) -> Self {
        let f = families();
        StreamsStats {
            processed: AppCounter::new(&f.processed, application),
            skipped: AppCounter::new(&f.skipped, application),
            dead_lettered: AppCounter::local(),
            late_dropped: AppCounter::new(&f.late_dropped, application),
            restored: AppCounter::new(&f.restored, application),
            batches: AppCounter::new(&f.batches, application),
            restore_micros: AppCounter::new(&f.restore_micros, application),
            idle_micros: AppCounter::new(&f.idle_micros, application),
            enforced: AppCounter::new(&f.enforced, application),
            changelog_records: AppCounter::new(&f.changelog_records, application),
            lag: f
                .lag
                .get_or_create(&AppLabels {
                    application: application.to_owned(),
                })
                .clone(),
            restore_remaining: f
                .restore_remaining
                .get_or_create(&AppLabels {
                    application: application.to_owned(),
                })
                .clone(),
        }
    }
}
