//! MyBank in `casestudies up`: the core-banking system inserting transactions into its database
//! at the knob's rate (the source connector copies them to Kafka), thresholds set for the
//! simulated users, the big-transaction detector run twice (stop one, the other restores the
//! thresholds table), and a view of a few users' latest alerts and their e-mails.

use std::time::Duration;

use shared::Kafka;
use shared::live::{Knob, LiveCaseStudy, Panel, QueryParam, QuerySpec};
use shared::service::Process;
use shared::service::cli::{CaseStudyCli, Dirs};
use tokio_util::sync::CancellationToken;

use crate::app::{MyBank, Options};
use crate::core_banking::{self, CoreBankingOptions};
use crate::database::Database;
use crate::notification_service::Notification;

/// Simulated customers, each with a threshold of [`THRESHOLD_EUR`].
const USERS: usize = 50;
const THRESHOLD_EUR: u32 = 2000;
/// How many users the view follows.
const FOLLOWED: usize = 6;

impl LiveCaseStudy for MyBank {
    const TITLE: &'static str = "MyBank";
    const SUMMARY: &'static str = "Transactions from the bank's database through a source connector; users' thresholds as events; an alert in the app and by e-mail for every transaction above one.";
    const SPARE: Option<&'static str> = Some("big-transaction-detector");

    fn knob() -> Knob {
        Knob::new("transactions/s", 5.0, 0.0, 200.0)
    }

    fn queries() -> Vec<QuerySpec> {
        vec![
            QuerySpec {
                name: "alert threshold",
                path: "/v1/users/{user}/alert-threshold",
                params: vec![QueryParam {
                    name: "user",
                    example: core_banking::user(1).0,
                }],
            },
            QuerySpec {
                name: "notifications",
                path: "/v1/users/{user}/notifications",
                params: vec![QueryParam {
                    name: "user",
                    example: core_banking::user(1).0,
                }],
            },
        ]
    }

    async fn simulate(
        kafka: &Kafka,
        process: &Process,
        dirs: &Dirs,
        options: &Options,
        knob: Knob,
        stop: CancellationToken,
    ) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
        let bank_url = MyBank::resources(kafka, dirs, options).await?.bank_url();
        // Not `set_simulated_thresholds`: it waits for this process to own every partition,
        // and here the spare owns some of the detector's. The threshold service answers 503
        // until its partitions are assigned; `set_threshold` retries those.
        let http = reqwest::Client::new();
        for i in 0..USERS {
            let (user, _) = core_banking::user(i);
            crate::app::set_threshold(
                &http,
                &process.url(),
                &user,
                &THRESHOLD_EUR.to_string(),
                "EUR",
            )
            .await?;
        }
        let db = Database::connect(&bank_url).await?;
        let options = CoreBankingOptions {
            users: USERS,
            rate: knob.get(),
            seed: 7,
            limit: None,
            live_rate: Some(knob),
        };
        Ok(tokio::spawn(async move {
            core_banking::run(&db, &options, stop).await?;
            db.close().await;
            Ok(())
        }))
    }

    async fn view(api: String, http: reqwest::Client) -> Vec<Panel> {
        let mut rows = Vec::new();
        for i in 0..FOLLOWED {
            let (user, _) = core_banking::user(i);
            let request = http
                .get(format!("{api}/v1/users/{user}/notifications?limit=1"))
                .timeout(Duration::from_secs(2));
            let latest = match request.send().await.and_then(|r| r.error_for_status()) {
                Ok(response) => response
                    .json::<Vec<Notification>>()
                    .await
                    .ok()
                    .and_then(|n| n.into_iter().next()),
                Err(_) => None,
            };
            rows.push(match latest {
                Some(n) => vec![
                    user,
                    n.alert.amount.to_string(),
                    n.alert.merchant,
                    n.alert.threshold.to_string(),
                    format!("{:?}", n.email).to_lowercase(),
                    n.received_at.format("%H:%M:%S").to_string(),
                ],
                None => vec![
                    user,
                    "—".into(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                ],
            });
        }
        vec![Panel {
            title: "Users: their latest alert and its e-mail".into(),
            columns: vec![
                "user",
                "amount",
                "merchant",
                "threshold",
                "e-mail",
                "received",
            ],
            rows,
            map: None,
        }]
    }
}
