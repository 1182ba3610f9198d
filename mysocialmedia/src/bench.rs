//! (being written)

use shared::KafkaArgs;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {}

pub async fn run(_: BenchArgs, _: &KafkaArgs, _: CancellationToken) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
