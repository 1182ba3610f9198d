//! Streams runtime tests: restore from changelogs, exact counts across SIGKILLs, rebalances.

mod global_table;
mod join;
mod kill;
mod new_cluster;
mod punctuation;
mod queries;
mod rebalance;
mod restore;
mod time_order;

use std::collections::BTreeMap;
use std::time::Duration;

use shared::EventProducer;
use shared::streams::StoreReader;
use shared::testkit::TestKafka;
use tests::{COUNT_STORE, Ping, WORDS};

/// Publishes `n` pings over `keys` keys starting at `from`; returns how many each key got.
pub async fn produce(kafka: &TestKafka, from: u64, n: u64, keys: u64) -> BTreeMap<String, u64> {
    let producer = EventProducer::new(kafka.kafka()).unwrap();
    let topic = kafka.kafka().topic(&WORDS);
    let mut sent = BTreeMap::new();
    for seq in from..from + n {
        let key = format!("word-{}", seq % keys);
        producer
            .publish(&topic, &key, &Ping::new(seq, &key))
            .await
            .unwrap();
        *sent.entry(key).or_insert(0) += 1;
    }
    sent
}

pub use tests::eventually;

pub fn add(total: &mut BTreeMap<String, u64>, more: BTreeMap<String, u64>) {
    for (k, v) in more {
        *total.entry(k).or_insert(0) += v;
    }
}

/// Every key's committed count, as the instances behind `readers` see it together.
pub fn counts(readers: &[&StoreReader]) -> BTreeMap<String, u64> {
    let mut all = BTreeMap::new();
    for reader in readers {
        for (key, count) in reader.prefix::<u64>(COUNT_STORE, b"").unwrap() {
            let key = String::from_utf8(key).unwrap();
            let previous = all.insert(key.clone(), count);
            assert!(
                previous.is_none(),
                "{key} is in two tasks ({previous:?} and {count}); partitions {:?}",
                reader.partitions()
            );
        }
    }
    all
}

/// Waits until `readers` together hold exactly `expected`; on timeout shows the difference.
pub async fn wait_for_counts(
    readers: &[&StoreReader],
    expected: &BTreeMap<String, u64>,
    timeout: Duration,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let actual = counts(readers);
        if &actual == expected {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let wrong: Vec<String> = expected
                .iter()
                .filter(|(k, v)| actual.get(*k) != Some(v))
                .map(|(k, v)| format!("{k}: expected {v}, got {:?}", actual.get(k)))
                .collect();
            panic!("counts not exact after {timeout:?}: {wrong:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
