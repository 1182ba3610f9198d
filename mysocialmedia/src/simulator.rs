//! (being written)

use shared::KafkaArgs;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args, Debug, Clone)]
pub struct SimulateArgs {}

pub async fn run(_: SimulateArgs, _: &KafkaArgs, _: CancellationToken) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
