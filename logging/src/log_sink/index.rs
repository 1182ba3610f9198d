//! The log sink's store: an embedded [tantivy](https://docs.rs/tantivy) index in a directory.
//!
//! | field | tantivy type | how it is searched |
//! |---|---|---|
//! | `id` | raw string, indexed, stored | the record's `event_id` (`<application_logs>/<partition>/<offset>` of its line): a repeat replaces the document |
//! | `time` | date, indexed, fast (milliseconds), stored | `from`/`to`, newest first; `time:[2026-03-01T12:00:00Z TO 2026-03-01T13:00:00Z]` |
//! | `host`, `service`, `level`, `format` | raw strings (one term each), stored | `service:checkout AND level:error` |
//! | `message` | text (tantivy's default tokenizer: split on non-alphanumerics, lower-cased, tokens over 40 bytes dropped), stored | the default field: `payment declined`, `"order paid"` |
//! | `partition`, `offset` | u64, stored | where the record is on `parsed_logs` |
//!
//! **Exactly once under at-least-once delivery.** [`LogIndex::write`] deletes the `id` term and
//! adds the document in the same commit, for every record of a batch, then commits: a record
//! delivered again — the sink's own re-read after a crash, or the parser's repeat of a line —
//! replaces itself. A batch is all or nothing: a failed commit is rolled back and the whole
//! batch written again.

use std::ops::Bound;
use std::path::Path;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, QueryParser, RangeQuery};
use tantivy::schema::{
    DateOptions, DateTimePrecision, Field, INDEXED, STORED, STRING, Schema, TEXT, Value,
};
use tantivy::{
    DateTime as TantivyTime, Index, IndexReader, IndexWriter, Order, ReloadPolicy, TantivyDocument,
    Term,
};
use utoipa::ToSchema;

use crate::events::LogRecord;

/// The writer's memory budget: tantivy flushes a segment when it is used up.
const WRITER_MEMORY: usize = 64 << 20;

/// One record to index, with where it is on `parsed_logs`.
#[derive(Debug, Clone)]
pub struct Indexed {
    pub record: LogRecord,
    pub partition: i32,
    pub offset: i64,
}

/// What a search asks: a query in tantivy's syntax (empty: everything), a time range, a limit.
#[derive(Debug, Clone, Default)]
pub struct Search {
    pub query: String,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub limit: usize,
}

/// One hit, as `GET /v1/search` answers it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, ToSchema)]
pub struct Hit {
    pub time: DateTime<Utc>,
    pub host: String,
    pub service: String,
    pub level: String,
    pub message: String,
    pub format: String,
    pub partition: i32,
    pub offset: i64,
}

/// The answer: how many documents match, and the newest `limit` of them, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, ToSchema)]
pub struct SearchResult {
    pub total: u64,
    pub hits: Vec<Hit>,
}

/// Why a search cannot run: the query does not parse (the caller's fault), or the index failed.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("q is not a valid query: {0}")]
    Query(String),
    #[error(transparent)]
    Index(#[from] tantivy::TantivyError),
}

#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    time: Field,
    host: Field,
    service: Field,
    level: Field,
    message: Field,
    format: Field,
    partition: Field,
    offset: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let time = DateOptions::default()
        .set_indexed()
        .set_stored()
        .set_fast()
        .set_precision(DateTimePrecision::Milliseconds);
    let fields = Fields {
        id: b.add_text_field("id", STRING | STORED),
        time: b.add_date_field("time", time),
        host: b.add_text_field("host", STRING | STORED),
        service: b.add_text_field("service", STRING | STORED),
        level: b.add_text_field("level", STRING | STORED),
        message: b.add_text_field("message", TEXT | STORED),
        format: b.add_text_field("format", STRING | STORED),
        partition: b.add_u64_field("partition", INDEXED | STORED),
        offset: b.add_u64_field("offset", INDEXED | STORED),
    };
    (b.build(), fields)
}

/// The index, searched: cheap to clone, and every clone sees each commit of the sink it came
/// from ([`LogIndex::reader`]), or the latest commit when [`LogReader::reload`]ed (read-only,
/// `logging search`).
#[derive(Clone)]
pub struct LogReader {
    index: Index,
    fields: Fields,
    reader: IndexReader,
}

/// The index, written by the sink: tantivy's lock file keeps a second writer out.
pub struct LogIndex {
    writer: IndexWriter,
    reader: LogReader,
}

impl LogReader {
    fn new(index: Index, fields: Fields) -> anyhow::Result<LogReader> {
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(LogReader {
            index,
            fields,
            reader,
        })
    }

    /// Opens an existing index in `dir` for searching only (next to a running sink).
    pub fn open(dir: &Path) -> anyhow::Result<LogReader> {
        let (_, fields) = schema();
        let index = Index::open_in_dir(dir)
            .with_context(|| format!("no log index in {}", dir.display()))?;
        LogReader::new(index, fields)
    }

    /// Sees the latest commit (for a read-only index next to a sink in another process).
    pub fn reload(&self) -> anyhow::Result<()> {
        Ok(self.reader.reload()?)
    }

    /// Documents in the index, as of the last commit.
    pub fn documents(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Runs a search: the query AND the time range, the newest `limit` hits first.
    pub fn search(&self, search: &Search) -> Result<SearchResult, SearchError> {
        let f = self.fields;
        let mut parser = QueryParser::for_index(&self.index, vec![f.message]);
        parser.set_conjunction_by_default();
        let text: Box<dyn Query> = if search.query.trim().is_empty() {
            Box::new(AllQuery)
        } else {
            parser
                .parse_query(&search.query)
                .map_err(|err| SearchError::Query(err.to_string()))?
        };
        let bound = |at: Option<DateTime<Utc>>, inclusive: bool| match at {
            None => Bound::Unbounded,
            Some(at) => {
                let term = Term::from_field_date(
                    f.time,
                    TantivyTime::from_timestamp_millis(at.timestamp_millis()),
                );
                if inclusive {
                    Bound::Included(term)
                } else {
                    Bound::Excluded(term)
                }
            }
        };
        let query: Box<dyn Query> = if search.from.is_none() && search.to.is_none() {
            text
        } else {
            let range = RangeQuery::new(bound(search.from, true), bound(search.to, true));
            Box::new(BooleanQuery::new(vec![
                (Occur::Must, text),
                (Occur::Must, Box::new(range)),
            ]))
        };
        let searcher = self.reader.searcher();
        let top = TopDocs::with_limit(search.limit.max(1))
            .order_by_fast_field::<TantivyTime>("time", Order::Desc);
        let (total, top) = searcher.search(&query, &(Count, top))?;
        let mut hits = Vec::with_capacity(top.len());
        for (_, address) in top.into_iter().take(search.limit) {
            let doc: TantivyDocument = searcher.doc(address)?;
            let text = |field| {
                doc.get_first(field)
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            };
            let number = |field| doc.get_first(field).and_then(|v| v.as_u64()).unwrap_or(0);
            let time = doc
                .get_first(f.time)
                .and_then(|v| v.as_datetime())
                .and_then(|t| DateTime::from_timestamp_millis(t.into_timestamp_millis()))
                .unwrap_or_default();
            hits.push(Hit {
                time,
                host: text(f.host),
                service: text(f.service),
                level: text(f.level),
                message: text(f.message),
                format: text(f.format),
                partition: number(f.partition) as i32,
                offset: number(f.offset) as i64,
            });
        }
        Ok(SearchResult {
            total: total as u64,
            hits,
        })
    }
}

impl LogIndex {
    /// Opens the index in `dir`, creating it (and `dir`) if absent, for writing.
    pub fn open(dir: &Path) -> anyhow::Result<LogIndex> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let (schema, fields) = schema();
        let directory = tantivy::directory::MmapDirectory::open(dir)
            .with_context(|| format!("opening the index in {}", dir.display()))?;
        let index = Index::open_or_create(directory, schema)
            .with_context(|| format!("opening the index in {}", dir.display()))?;
        let writer = index
            .writer_with_num_threads(1, WRITER_MEMORY)
            .with_context(|| format!("locking the index in {} for writing", dir.display()))?;
        Ok(LogIndex {
            writer,
            reader: LogReader::new(index, fields)?,
        })
    }

    /// A reader that sees every commit of this index.
    pub fn reader(&self) -> LogReader {
        self.reader.clone()
    }

    /// Writes a batch (each record replacing any document of the same id) and commits it
    /// durably; searches see it when this returns. On an error nothing of the batch is kept
    /// (rolled back): write it again. `before_commit` runs between the adds and the commit
    /// (the sink's test knob fails there).
    pub fn write(
        &mut self,
        batch: &[Indexed],
        before_commit: impl FnOnce() -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let f = self.reader.fields;
        let writer = &mut self.writer;
        let result = (|| -> anyhow::Result<()> {
            for item in batch {
                let r = &item.record;
                writer.delete_term(Term::from_field_text(f.id, &r.event_id));
                let mut doc = TantivyDocument::new();
                doc.add_text(f.id, &r.event_id);
                doc.add_date(
                    f.time,
                    TantivyTime::from_timestamp_millis(r.time.timestamp_millis()),
                );
                doc.add_text(f.host, &r.host);
                doc.add_text(f.service, &r.service);
                doc.add_text(f.level, r.level.as_str());
                doc.add_text(f.message, &r.message);
                doc.add_text(f.format, r.format.as_str());
                doc.add_u64(f.partition, item.partition as u64);
                doc.add_u64(f.offset, item.offset as u64);
                writer.add_document(doc)?;
            }
            before_commit()?;
            writer.commit()?;
            Ok(())
        })();
        if let Err(err) = result {
            writer
                .rollback()
                .context("rolling back after a failed write")?;
            return Err(err);
        }
        self.reader.reader.reload()?;
        Ok(())
    }

    /// Forgets what was written since the last commit (after a failure before the commit).
    pub fn rollback(&mut self) -> anyhow::Result<()> {
        self.writer.rollback()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Format, Level};

    fn record(id: &str, ms: i64, message: &str) -> Indexed {
        let time = DateTime::from_timestamp_millis(ms).unwrap();
        Indexed {
            record: LogRecord {
                event_id: id.into(),
                time,
                received_at: time,
                host: "web-1".into(),
                service: "checkout".into(),
                level: Level::Error,
                message: message.into(),
                fields: Default::default(),
                format: Format::Json,
                reason: None,
                notes: Vec::new(),
            },
            partition: 3,
            offset: 7,
        }
    }

    fn search(index: &LogIndex, q: &str) -> SearchResult {
        index
            .reader
            .search(&Search {
                query: q.into(),
                limit: 100,
                ..Search::default()
            })
            .unwrap()
    }

    #[test]
    fn a_repeated_id_replaces_its_document_within_and_across_batches() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = LogIndex::open(dir.path()).unwrap();
        let a = record("l/0/1", 1_000, "payment declined");
        index.write(&[a.clone(), a.clone()], || Ok(())).unwrap();
        index.write(std::slice::from_ref(&a), || Ok(())).unwrap();
        assert_eq!(search(&index, "declined").total, 1);
        assert_eq!(index.reader.documents(), 1);
        drop(index);
        // Reopened: the same, and a repeat after a restart still replaces.
        let mut index = LogIndex::open(dir.path()).unwrap();
        index.write(&[a], || Ok(())).unwrap();
        assert_eq!(search(&index, "declined").total, 1);
    }

    #[test]
    fn hits_are_newest_first_within_the_range_and_fields_are_searchable() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = LogIndex::open(dir.path()).unwrap();
        let batch: Vec<Indexed> = (0..5)
            .map(|i| record(&format!("l/0/{i}"), 1_000 * i, &format!("order {i} paid")))
            .collect();
        index.write(&batch, || Ok(())).unwrap();
        let all = search(&index, "paid");
        assert_eq!(all.total, 5);
        let times: Vec<i64> = all.hits.iter().map(|h| h.time.timestamp_millis()).collect();
        assert_eq!(times, [4000, 3000, 2000, 1000, 0]);
        assert_eq!(search(&index, "service:checkout AND level:error").total, 5);
        assert_eq!(search(&index, "service:payments").total, 0);
        assert_eq!(search(&index, "").total, 5);
        let ranged = index
            .reader
            .search(&Search {
                query: "paid".into(),
                from: DateTime::from_timestamp_millis(1_000),
                to: DateTime::from_timestamp_millis(3_000),
                limit: 2,
            })
            .unwrap();
        assert_eq!(ranged.total, 3);
        let times: Vec<i64> = ranged
            .hits
            .iter()
            .map(|h| h.time.timestamp_millis())
            .collect();
        assert_eq!(times, [3000, 2000]);
        assert!(matches!(
            index.reader.search(&Search {
                query: "message:(".into(),
                limit: 1,
                ..Search::default()
            }),
            Err(SearchError::Query(_))
        ));
    }

    #[test]
    fn a_failed_batch_is_rolled_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = LogIndex::open(dir.path()).unwrap();
        index
            .write(&[record("l/0/1", 0, "kept")], || Ok(()))
            .unwrap();
        // Added, then the commit fails: nothing of the batch stays.
        let failed = index.write(&[record("l/0/2", 0, "lost")], || anyhow::bail!("disk full"));
        assert!(failed.is_err());
        index
            .write(&[record("l/0/3", 0, "after")], || Ok(()))
            .unwrap();
        assert_eq!(search(&index, "lost").total, 0);
        assert_eq!(search(&index, "kept OR after").total, 2);
    }
}
