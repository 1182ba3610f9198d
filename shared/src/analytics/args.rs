//! The analytics store's options every case study with an analytics sink flattens into its
//! own: a local directory by default, or an S3 bucket.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{SinkConfig, Store};

/// Where the analytics tables go and how often files are committed.
#[derive(Debug, Clone, clap::Args)]
pub struct AnalyticsArgs {
    /// The analytics store, a local directory. Default: <data dir>/analytics.
    #[arg(long, env = "ANALYTICS_DIR")]
    pub analytics_dir: Option<PathBuf>,
    /// …or an S3 bucket instead: `s3://<bucket>`. Credentials and endpoint from the `AWS_*`
    /// variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`; `AWS_ENDPOINT`
    /// and `AWS_ALLOW_HTTP=true` for an S3-compatible server).
    #[arg(long, env = "ANALYTICS_URL", conflicts_with = "analytics_dir")]
    pub analytics_url: Option<String>,
    /// Commit a Parquet file at this many rows…
    #[arg(long, env = "SINK_MAX_ROWS", default_value_t = 50_000)]
    pub sink_max_rows: usize,
    /// …or when it has been open this long.
    #[arg(long, env = "SINK_MAX_AGE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub sink_max_age: Duration,
}

impl Default for AnalyticsArgs {
    fn default() -> Self {
        AnalyticsArgs {
            analytics_dir: None,
            analytics_url: None,
            sink_max_rows: 50_000,
            sink_max_age: Duration::from_secs(10),
        }
    }
}

impl AnalyticsArgs {
    /// A store in `dir` with these settings (tests).
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        AnalyticsArgs {
            analytics_dir: Some(dir.into()),
            ..AnalyticsArgs::default()
        }
    }

    /// The store (`<data>/analytics` by default) and the sink settings.
    pub fn resolve(&self, data: &Path) -> anyhow::Result<Analytics> {
        anyhow::ensure!(self.sink_max_rows > 0, "--sink-max-rows must be positive");
        anyhow::ensure!(
            !self.sink_max_age.is_zero(),
            "--sink-max-age must be positive"
        );
        let store = match (&self.analytics_url, &self.analytics_dir) {
            (Some(url), _) => Store::from_url(url)?,
            (None, Some(dir)) => Store::local(dir)?,
            (None, None) => Store::local(data.join("analytics"))?,
        };
        Ok(Analytics {
            store,
            max_rows: self.sink_max_rows,
            max_age: self.sink_max_age,
        })
    }
}

/// A resolved analytics store.
#[derive(Debug, Clone)]
pub struct Analytics {
    pub store: Store,
    pub max_rows: usize,
    pub max_age: Duration,
}

impl Analytics {
    /// A sink of `topic` in `group_id` into this store's table `table`:
    /// `<table>/date=…/hour=…/` by event time.
    pub fn sink_config(&self, group_id: String, topic: String, table: &str) -> SinkConfig {
        let mut config = SinkConfig::new(group_id, topic, self.store.clone());
        config.layout.folder = Some(table.to_owned());
        config.flush_size = self.max_rows;
        config.rotate_schedule_interval = Some(self.max_age);
        config
    }

    /// The local directory of a table, for a local store.
    pub fn table_dir(&self, table: &str) -> Option<PathBuf> {
        self.store.local_dir().map(|dir| dir.join(table))
    }
}
