//! **Core banking** (the bank's existing system, simulated): card payments and transfers written
//! to the `transactions` table — never to Kafka. Getting them to Kafka is the source
//! connector's job.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

use crate::database::{Database, NewTransaction};

const MERCHANTS: &[&str] = &[
    "Corner Grocery",
    "City Metro",
    "Coffee House",
    "Online Books",
    "Electronics Megastore",
    "Airline Tickets",
    "Furniture World",
    "Car Dealer",
    "Rent Transfer",
    "Jewellery Boutique",
];

/// What to simulate.
#[derive(Debug, Clone)]
pub struct CoreBankingOptions {
    pub users: usize,
    /// Transactions per second.
    pub rate: f64,
    pub seed: u64,
    /// Stop after this many transactions (default: until shutdown).
    pub limit: Option<u64>,
    /// Transactions per second read from a knob turned while it runs (`casestudies up`),
    /// instead of `rate`.
    pub live_rate: Option<shared::live::Knob>,
}

/// The `i`-th simulated customer (`user-007`) and their account.
pub fn user(i: usize) -> (String, String) {
    (format!("user-{i:03}"), format!("acct-{i:03}"))
}

/// A plausible transaction: mostly small, sometimes very large (heavy-tailed, in EUR cents).
pub fn random_transaction(rng: &mut StdRng, users: usize) -> NewTransaction {
    let (user_id, account_id) = user(rng.random_range(0..users.max(1)));
    let merchant = MERCHANTS[rng.random_range(0..MERCHANTS.len())];
    // 10^U(0.3, 4.2) euros: 2 € … 16,000 €, a few hundred on average.
    let euros = 10f64.powf(rng.random_range(0.3..4.2));
    NewTransaction {
        account_id,
        user_id,
        amount: (euros * 100.0).round() as i64,
        currency: "EUR".to_owned(),
        merchant: merchant.to_owned(),
        created_at: None,
    }
}

/// Inserts transactions at `rate` per second until `shutdown` (or `limit`); returns the count.
pub async fn run(
    db: &Database,
    options: &CoreBankingOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<u64> {
    let mut rng = StdRng::seed_from_u64(options.seed);
    let period = Duration::from_secs_f64(1.0 / options.rate.max(0.001));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut inserted = 0;
    tracing::info!(
        database = db.kind(),
        rate = options.rate,
        "core banking started"
    );
    while options.limit.is_none_or(|limit| inserted < limit) {
        let wait = async {
            match &options.live_rate {
                // A knob at 0 pauses the bank; it looks again four times a second.
                Some(knob) if knob.get() <= 0.0 => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    false
                }
                Some(knob) => {
                    tokio::time::sleep(Duration::from_secs_f64(1.0 / knob.get())).await;
                    true
                }
                None => {
                    ticker.tick().await;
                    true
                }
            }
        };
        let insert = tokio::select! {
            () = shutdown.cancelled() => break,
            insert = wait => insert,
        };
        if !insert {
            continue;
        }
        db.insert(&random_transaction(&mut rng, options.users))
            .await?;
        inserted += 1;
    }
    Ok(inserted)
}
