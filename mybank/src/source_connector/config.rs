//! The connector's properties: Kafka Connect's names in a `.properties` file, parsed and
//! validated.

use std::time::Duration;

use anyhow::bail;
use shared::properties::Properties;

/// How rows are found after the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `id > last id`: for append-only tables with an increasing id.
    Incrementing,
    /// `(created_at, id) > (last created_at, last id)`, skipping rows newer than
    /// `now - timestamp.delay.interval.ms` (let slow transactions commit first).
    TimestampIncrementing,
}

/// A connector's properties (Kafka Connect's names; unknown keys are an error, to catch typos).
#[derive(Debug, Clone)]
pub struct ConnectorConfig {
    pub name: String,
    pub connection_url: String,
    pub mode: Mode,
    pub table: String,
    pub incrementing_column: String,
    pub timestamp_column: Option<String>,
    pub topic_prefix: String,
    /// The column whose value becomes the record key (Connect: `ValueToKey` + `ExtractField`).
    pub key_column: String,
    pub poll_interval: Duration,
    pub batch_max_rows: i64,
    pub timestamp_delay: Duration,
    /// PostgreSQL only: LISTEN on this channel and poll as soon as it is notified.
    pub listen_channel: Option<String>,
}

const KNOWN_KEYS: &[&str] = &[
    "name",
    "connector.class",
    "tasks.max",
    "connection.url",
    "mode",
    "table.whitelist",
    "incrementing.column.name",
    "timestamp.column.name",
    "topic.prefix",
    "key.column.name",
    "poll.interval.ms",
    "batch.max.rows",
    "timestamp.delay.interval.ms",
    "listen.channel",
];

impl ConnectorConfig {
    /// Parses a Java-style properties file ([`Properties`]: `key=value`, `#`/`!` comments; a
    /// ` # …` after a value is a comment too, as in the course's examples).
    pub fn parse(text: &str) -> anyhow::Result<ConnectorConfig> {
        let props = Properties::parse(text, KNOWN_KEYS, &[])?;
        let get = |key: &str| props.get(key).map(str::to_owned);
        let require = |key: &str| props.require(key).map(str::to_owned);
        let millis = |key: &str, default: u64| props.millis(key, default);
        let mode = match require("mode")?.as_str() {
            "incrementing" => Mode::Incrementing,
            "timestamp+incrementing" => Mode::TimestampIncrementing,
            other => bail!(
                "mode={other:?} is not supported (incrementing or timestamp+incrementing; bulk and timestamp alone cannot promise no duplicates)"
            ),
        };
        let table = require("table.whitelist")?;
        if table.contains(',') {
            bail!("table.whitelist={table:?}: one table per connector here");
        }
        let config = ConnectorConfig {
            name: require("name")?,
            connection_url: require("connection.url")?,
            mode,
            incrementing_column: get("incrementing.column.name").unwrap_or_else(|| "id".into()),
            timestamp_column: get("timestamp.column.name"),
            topic_prefix: get("topic.prefix").unwrap_or_default(),
            key_column: require("key.column.name")?,
            poll_interval: millis("poll.interval.ms", 5000)?,
            batch_max_rows: props.parse_or("batch.max.rows", 100i64)?.max(1),
            timestamp_delay: millis("timestamp.delay.interval.ms", 0)?,
            listen_channel: get("listen.channel").filter(|c| !c.is_empty()),
            table,
        };
        for identifier in [
            Some(&config.table),
            Some(&config.incrementing_column),
            config.timestamp_column.as_ref(),
            Some(&config.key_column),
            config.listen_channel.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            // Names end up in SQL: plain identifiers only.
            let ok = identifier
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && identifier
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                bail!("{identifier:?} is not a plain SQL identifier");
            }
        }
        if config.mode == Mode::TimestampIncrementing && config.timestamp_column.is_none() {
            bail!("mode=timestamp+incrementing needs timestamp.column.name");
        }
        Ok(config)
    }

    /// `<topic.prefix><table>`: Connect's naming (`bank_` + `transactions` here).
    pub fn topic_name(&self) -> String {
        format!("{}{}", self.topic_prefix, self.table)
    }

    /// The key of this connector's entry in `connect_offsets` (Connect's format).
    pub fn offset_key(&self) -> String {
        serde_json::json!([self.name, { "table": self.table }]).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "
# the course's example, with our table and topic
name=transactions-source
connection.url=sqlite:bank.db
mode=timestamp+incrementing            # or incrementing
incrementing.column.name=id
timestamp.column.name=created_at
table.whitelist=transactions
topic.prefix=bank_
key.column.name=user_id
poll.interval.ms=50
batch.max.rows=500
";

    #[test]
    fn parses_a_connect_style_properties_file() {
        let config = ConnectorConfig::parse(EXAMPLE).unwrap();
        assert_eq!(config.mode, Mode::TimestampIncrementing);
        assert_eq!(config.topic_name(), "bank_transactions");
        assert_eq!(config.poll_interval, Duration::from_millis(50));
        assert_eq!(config.batch_max_rows, 500);
        assert_eq!(
            config.offset_key(),
            r#"["transactions-source",{"table":"transactions"}]"#
        );
    }

    #[test]
    fn rejects_typos_bad_modes_and_sql_in_names() {
        let with = |extra: &str| ConnectorConfig::parse(&format!("{EXAMPLE}\n{extra}"));
        assert!(with("poll.intervall.ms=5").is_err());
        assert!(with("mode=bulk").is_err());
        assert!(with("table.whitelist=transactions; DROP TABLE x").is_err());
        assert!(ConnectorConfig::parse("name=x").is_err());
    }
}
