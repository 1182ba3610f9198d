//! The connector's counters, labelled by connector and topic.

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectorLabels {
    connector: String,
    topic: String,
}

/// The connector's counters (also on `/metrics` as `source_connector_*_total`).
#[derive(Clone, Debug)]
pub struct ConnectorStats {
    /// Rows produced to Kafka.
    pub produced: Counter,
    /// Rows read again after a restart that Kafka already had (not produced twice).
    pub skipped_already_in_kafka: Counter,
    /// Offsets written to `connect_offsets`.
    pub offset_commits: Counter,
    /// Failed polls or produce batches (retried).
    pub errors: Counter,
}

impl ConnectorStats {
    pub(super) fn new(name: &str, topic: &str) -> ConnectorStats {
        static FAMILIES: OnceLock<[Family<ConnectorLabels, Counter>; 4]> = OnceLock::new();
        let families = FAMILIES.get_or_init(|| {
            let families: [Family<ConnectorLabels, Counter>; 4] = Default::default();
            for (family, (name, help)) in families.iter().zip([
                ("source_connector_records", "Rows produced to Kafka"),
                (
                    "source_connector_skipped",
                    "Rows re-read after a restart that Kafka already had",
                ),
                (
                    "source_connector_offset_commits",
                    "Source offsets written to connect_offsets",
                ),
                (
                    "source_connector_errors",
                    "Failed polls or batches (retried)",
                ),
            ]) {
                shared::metrics::register(name, help, family.clone());
            }
            families
        });
        let labels = ConnectorLabels {
            connector: name.to_owned(),
            topic: topic.to_owned(),
        };
        ConnectorStats {
            produced: families[0].get_or_create(&labels).clone(),
            skipped_already_in_kafka: families[1].get_or_create(&labels).clone(),
            offset_commits: families[2].get_or_create(&labels).clone(),
            errors: families[3].get_or_create(&labels).clone(),
        }
    }
}
