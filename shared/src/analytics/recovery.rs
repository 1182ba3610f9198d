//! What the sink reads from the store before it writes: where each partition's files end, and
//! which cluster's offsets the file names hold.

use std::collections::HashMap;

use anyhow::Context;
use bytes::Bytes;

use super::layout::{Layout, parse_file_name};
use super::store::{Created, Store};

/// Per partition: the next offset not yet in a file of this `generation` (the largest end
/// offset + 1), from the file names below the topic's folder. A partition without files is
/// absent. On a local store, leftover staged uploads of a crash (`<name>#<n>`, never visible
/// through the store) are deleted.
pub async fn recover(
    store: &Store,
    layout: &Layout,
    topic: &str,
    generation: u32,
) -> anyhow::Result<HashMap<i32, i64>> {
    let prefix = layout.topic_prefix(topic);
    let mut next: HashMap<i32, i64> = HashMap::new();
    for path in store.list(&prefix).await? {
        let Some(range) = path
            .filename()
            .and_then(|name| parse_file_name(topic, name))
        else {
            continue;
        };
        if range.generation == generation {
            let entry = next.entry(range.partition).or_insert(0);
            *entry = (*entry).max(range.end + 1);
        }
    }
    if let Some(dir) = store.local_dir() {
        remove_staged_uploads(&dir.join(prefix.as_ref()))?;
    }
    Ok(next)
}

/// Deletes `…#<n>` files below `dir`: object_store's staged local uploads, left by a crash
/// between writing and linking.
fn remove_staged_uploads(dir: &std::path::Path) -> anyhow::Result<()> {
    for path in super::files_under(dir)? {
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.contains('#'))
        {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            tracing::info!(file = %path.display(), "removed a crash's staged upload");
        }
    }
    Ok(())
}

/// Ties the sink's files of `topic` to the cluster `identity` (the stamp object
/// `<topics.dir>/<topic>/_cluster`: "<generation> <identity>") and returns the generation to
/// write.
///
/// File names hold offsets, which mean something only on the cluster that assigned them: on a
/// new, empty broker (the embedded one after a restart) offsets start at 0 again, and the old
/// names would make the sink skip the new records as "already written". The files themselves
/// are facts and stay; a new cluster gets the next generation, whose names alone say where to
/// resume. Files without a stamp are treated as another cluster's (at worst rows are written
/// again, never lost).
pub async fn bind_to_cluster(
    store: &Store,
    layout: &Layout,
    topic: &str,
    identity: &str,
) -> anyhow::Result<u32> {
    let prefix = layout.topic_prefix(topic);
    let stamp = object_store::path::Path::from(format!("{prefix}/_cluster"));
    let recorded = match store.read(&stamp).await? {
        Some(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let (generation, recorded) = text
                .trim()
                .split_once(' ')
                .with_context(|| format!("{store}/{stamp}: expected \"<generation> <cluster>\""))?;
            let generation: u32 = generation
                .parse()
                .with_context(|| format!("{store}/{stamp}: bad generation"))?;
            Some((generation, recorded.to_owned()))
        }
        None => None,
    };
    let generation = match recorded {
        Some((generation, recorded)) if recorded == identity => return Ok(generation),
        Some((generation, recorded)) => {
            tracing::warn!(
                %store, topic,
                "the files of {topic} were written from {recorded}, but the broker is \
                 {identity}: they stay, and new files start generation {} (their offsets are \
                 this cluster's)",
                generation + 1
            );
            generation + 1
        }
        None => {
            let unstamped = store.list(&prefix).await?.iter().any(|p| {
                p.filename()
                    .and_then(|n| parse_file_name(topic, n))
                    .is_some()
            });
            if unstamped {
                tracing::warn!(
                    %store, topic,
                    "the files of {topic} do not say which cluster they came from: they stay, \
                     and new files start generation 1"
                );
            }
            u32::from(unstamped)
        }
    };
    let text = Bytes::from(format!("{generation} {identity}"));
    if generation == 0 {
        // The first stamp: create-if-absent, so two sink processes starting together agree.
        if store.create(&stamp, text).await? == Created::AlreadyThere {
            return Box::pin(bind_to_cluster(store, layout, topic, identity)).await;
        }
    } else {
        store.overwrite(&stamp, text).await?;
    }
    Ok(generation)
}

#[cfg(test)]
mod tests {
    use super::super::layout::FileRange;
    use super::*;

    async fn touch(store: &Store, layout: &Layout, topic: &str, range: FileRange) {
        let path = layout.file_path(topic, "date=2026-11-22/hour=7", range);
        store.create(&path, Bytes::from_static(b"x")).await.unwrap();
    }

    fn range(partition: i32, start: i64, end: i64, generation: u32) -> FileRange {
        FileRange {
            partition,
            start,
            end,
            generation,
        }
    }

    #[tokio::test]
    async fn recovery_reads_the_largest_end_offset_from_file_names_and_removes_staged_uploads() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(dir.path()).unwrap();
        let layout = Layout {
            topics_dir: "topics".into(),
            ..Layout::default()
        };
        for r in [range(3, 0, 9, 0), range(3, 10, 41, 0), range(4, 0, 99, 0)] {
            touch(&store, &layout, "t", r).await;
        }
        let hour = dir.path().join("topics/t/date=2026-11-22/hour=7");
        let staged = hour.join(format!("{}#1", layout.file_name("t", range(3, 42, 50, 0))));
        std::fs::write(&staged, b"partial").unwrap();
        touch(&store, &layout, "t2", range(3, 0, 500, 0)).await;
        let next = recover(&store, &layout, "t", 0).await.unwrap();
        assert_eq!(next, HashMap::from([(3, 42), (4, 100)]));
        assert!(!staged.exists(), "a crash's staged upload is removed");
        // Another cluster's generation starts from its own files only.
        touch(&store, &layout, "t", range(3, 0, 4, 1)).await;
        assert_eq!(
            recover(&store, &layout, "t", 1).await.unwrap(),
            HashMap::from([(3, 5)])
        );
        assert!(recover(&store, &layout, "t", 2).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_new_cluster_starts_a_new_generation_and_keeps_the_old_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::local(dir.path()).unwrap();
        let layout = Layout::default();
        let bind = |id: &'static str, topic: &'static str| {
            let (store, layout) = (store.clone(), layout.clone());
            async move { bind_to_cluster(&store, &layout, topic, id).await.unwrap() }
        };
        assert_eq!(bind("cluster A", "t").await, 0);
        assert_eq!(bind("cluster A", "t").await, 0, "same cluster");
        touch(&store, &layout, "t", range(0, 0, 9, 0)).await;
        assert_eq!(bind("cluster B", "t").await, 1);
        assert_eq!(
            recover(&store, &layout, "t", 0).await.unwrap()[&0],
            10,
            "facts stay"
        );
        assert_eq!(bind("cluster B", "t").await, 1);
        assert_eq!(bind("cluster A", "t").await, 2);
        // Files from before stamps: another generation, so nothing is skipped.
        touch(&store, &layout, "u", range(0, 0, 9, 0)).await;
        assert_eq!(bind("cluster A", "u").await, 1);
        assert_eq!(bind("cluster A", "v").await, 0);
    }
}
