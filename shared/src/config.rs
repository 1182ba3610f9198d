//! Configuration every binary shares: where the broker is, which topic prefix to use, and any
//! extra librdkafka property, taken from `KAFKA_<PROPERTY>` environment variables.
//!
//! `KAFKA_SASL_MECHANISMS=PLAIN` becomes `sasl.mechanisms=PLAIN`, so SASL/SSL clusters (Confluent
//! Cloud, MSK, Aiven…) work without a code change. Variables that are not librdkafka properties
//! (`KAFKA_HOME`, `KAFKA_TEST_IMAGE`, …) are ignored with a warning instead of failing start-up.

use rdkafka::ClientConfig;

/// Command-line / environment options every binary flattens into its own clap parser.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers (host:port,...). When absent, an embedded broker (librdkafka's mock
    /// cluster) is started in-process, so nothing needs to be installed.
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS", global = true)]
    pub bootstrap_servers: Option<String>,

    /// Prefix of every topic name (e.g. `alice.`), so a whole workshop can share one cluster.
    #[arg(long, env = "TOPIC_PREFIX", default_value = "", global = true)]
    pub topic_prefix: String,
}

/// Environment variables that start with `KAFKA_` but are not librdkafka properties.
const NOT_CLIENT_PROPERTIES: &[&str] = &["KAFKA_BOOTSTRAP_SERVERS", "KAFKA_TEST_IMAGE"];

/// librdkafka properties taken from `KAFKA_<PROPERTY>` variables of `vars` (normally
/// `std::env::vars()`), as `(property, value)` pairs. Names librdkafka does not know are skipped
/// with a warning, so an unrelated `KAFKA_HOME` never stops a service.
pub fn client_properties_from_env(
    vars: impl IntoIterator<Item = (String, String)>,
) -> Vec<(String, String)> {
    let mut properties: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(name, _)| name.starts_with("KAFKA_") && !NOT_CLIENT_PROPERTIES.contains(&name.as_str()))
        .filter_map(|(name, value)| {
            let property = name["KAFKA_".len()..].to_ascii_lowercase().replace('_', ".");
            if is_client_property(&property) {
                Some((property, value))
            } else {
                tracing::warn!(variable = %name, "ignored: `{property}` is not a librdkafka property");
                None
            }
        })
        .collect();
    properties.sort();
    properties
}

/// Whether librdkafka accepts `property` (checked by librdkafka itself, not a copied list).
fn is_client_property(property: &str) -> bool {
    // A throwaway native config: librdkafka rejects unknown names in `rd_kafka_conf_set`.
    // The value may still be invalid for this property; only the name is checked here.
    let probe = ClientConfig::new().set(property, "").create_native_config();
    match probe {
        Ok(_) => true,
        Err(err) => !err.to_string().contains("No such configuration property"),
    }
}

/// Whether a property's value must never appear in logs.
pub fn is_secret(property: &str) -> bool {
    const SECRET_WORDS: &[&str] = &[
        "password",
        "secret",
        "token",
        "oauthbearer.config",
        "key.pem",
    ];
    SECRET_WORDS.iter().any(|word| property.contains(word)) || property == "ssl.key.location"
}

/// `(property, value)` pairs ready for a log line: secrets are replaced by `***`.
pub fn redacted(properties: &[(String, String)]) -> Vec<(String, String)> {
    properties
        .iter()
        .map(|(k, v)| {
            let shown = if is_secret(k) {
                "***".to_owned()
            } else {
                v.clone()
            };
            (k.clone(), shown)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn kafka_variables_become_librdkafka_properties() {
        let props = client_properties_from_env(vars(&[
            ("KAFKA_SASL_MECHANISMS", "PLAIN"),
            ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("KAFKA_SASL_PASSWORD", "hunter2"),
            ("PATH", "/bin"),
        ]));
        assert_eq!(
            props,
            vars(&[
                ("sasl.mechanisms", "PLAIN"),
                ("sasl.password", "hunter2"),
                ("security.protocol", "SASL_SSL"),
            ])
        );
    }

    #[test]
    fn unrelated_kafka_variables_are_ignored() {
        let props = client_properties_from_env(vars(&[
            ("KAFKA_HOME", "/opt/kafka"),
            ("KAFKA_TEST_IMAGE", "tansu:0.6.0"),
            ("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"),
        ]));
        assert!(props.is_empty(), "{props:?}");
    }

    #[test]
    fn secrets_are_redacted() {
        let shown = redacted(&vars(&[
            ("sasl.password", "hunter2"),
            ("sasl.username", "alice"),
            ("ssl.key.password", "x"),
        ]));
        assert_eq!(shown[0].1, "***");
        assert_eq!(shown[1].1, "alice");
        assert_eq!(shown[2].1, "***");
    }
}
