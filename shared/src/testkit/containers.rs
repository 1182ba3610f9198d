//! `CASESTUDIES_TEST_KAFKA=testcontainers`: a broker in a container, via the `testcontainers`
//! crate.
//!
//! * By default the official `apache/kafka` image (testcontainers-modules' Kafka module).
//! * `KAFKA_TEST_IMAGE=name:tag` picks another image. An image whose name contains `tansu` is
//!   run as a tansu broker (entrypoint `/tansu`, see `.ci/tansu-image.sh`); any other is assumed
//!   to be an `apache/kafka`-compatible image.
//!
//! Kafka advertises the address clients must reconnect to, so it has to know the host port.
//! For tansu the container listens on the same port number the host maps, chosen free up front.

use std::time::Duration;

use anyhow::Context;
use testcontainers::core::ContainerPort;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, ContainerRequest, GenericImage, ImageExt};
use testcontainers_modules::kafka::apache;

pub enum KafkaContainer {
    Apache {
        _container: ContainerAsync<apache::Kafka>,
        bootstrap: String,
    },
    Tansu {
        _container: ContainerAsync<GenericImage>,
        bootstrap: String,
    },
}

impl KafkaContainer {
    pub async fn start() -> anyhow::Result<KafkaContainer> {
        match test_image() {
            Some(image) if image.contains("tansu") => Self::tansu(&image).await,
            Some(image) => Self::apache(Some(&image)).await,
            None => Self::apache(None).await,
        }
    }

    pub fn bootstrap(&self) -> &str {
        match self {
            KafkaContainer::Apache { bootstrap, .. } | KafkaContainer::Tansu { bootstrap, .. } => {
                bootstrap
            }
        }
    }

    async fn apache(image: Option<&str>) -> anyhow::Result<KafkaContainer> {
        let request = match image.map(split_image) {
            Some((name, tag)) => apache::Kafka::default().with_name(name).with_tag(tag),
            None => ContainerRequest::from(apache::Kafka::default()),
        };
        // The same broker settings as the `apache` process backend (see `apache.rs`): the
        // module's defaults leave transactions with a replication factor of 3 on one broker.
        // Every container is a new cluster, so it gets its own cluster id (the module's is a
        // constant): state tied to a cluster (`shared::cluster`) must see them as different.
        let cluster_id = super::apache::cluster_id();
        let container = request
            .with_env_var("CLUSTER_ID", cluster_id.clone())
            .with_env_var("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
            .with_env_var("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
            .with_env_var("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
            .with_env_var("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
            .with_env_var(
                "KAFKA_TRANSACTION_ABORT_TIMED_OUT_TRANSACTION_CLEANUP_INTERVAL_MS",
                "2000",
            )
            .with_startup_timeout(Duration::from_secs(120))
            .start()
            .await
            .with_context(|| match image {
                Some(image) => format!("cannot start the Kafka container {image} (cluster id {cluster_id})"),
                None => "cannot start the Kafka container apache/kafka (no image can be pulled here: set KAFKA_TEST_IMAGE to a local image)".to_owned(),
            })?;
        let port = container.get_host_port_ipv4(apache::KAFKA_PORT).await?;
        Ok(KafkaContainer::Apache {
            _container: container,
            bootstrap: format!("127.0.0.1:{port}"),
        })
    }

    async fn tansu(image: &str) -> anyhow::Result<KafkaContainer> {
        let (name, tag) = split_image(image);
        let port = super::free_port()?;
        let inside = format!("tcp://0.0.0.0:{port}");
        let advertised = format!("tcp://127.0.0.1:{port}");
        let container = GenericImage::new(name, tag)
            .with_exposed_port(ContainerPort::Tcp(port))
            .with_cmd([
                "broker",
                "--listener-url",
                &inside,
                "--advertised-listener-url",
                &advertised,
                "--storage-engine",
                "memory://tansu/",
            ])
            .with_mapped_port(port, ContainerPort::Tcp(port))
            .with_startup_timeout(Duration::from_secs(60))
            .start()
            .await
            .with_context(|| {
                format!("cannot start container {image} (build it with .ci/tansu-image.sh)")
            })?;
        Ok(KafkaContainer::Tansu {
            _container: container,
            bootstrap: format!("127.0.0.1:{port}"),
        })
    }
}

/// `KAFKA_TEST_IMAGE`, if set.
fn test_image() -> Option<String> {
    std::env::var("KAFKA_TEST_IMAGE")
        .ok()
        .filter(|s| !s.is_empty())
}

/// Whether `KAFKA_TEST_IMAGE` names a tansu image.
pub fn image_is_tansu() -> bool {
    test_image().is_some_and(|image| image.contains("tansu"))
}

/// `name:tag` → (`name`, `tag`), `latest` when no tag is given.
fn split_image(image: &str) -> (String, String) {
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name.to_owned(), tag.to_owned()),
        _ => (image.to_owned(), "latest".to_owned()),
    }
}
