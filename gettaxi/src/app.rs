//! GetTaxi on the service scaffold ([`shared::service`]): its services in start order, what they
//! share, its own commands (`simulate`, `demo`, `fare`), and the API every GetTaxi process
//! serves (`/openapi.json`). `main.rs` is `cli::main::<GetTaxi>()`; tests and the demo start
//! services with [`shared::service::cli::start`], the same way.

use std::time::Duration;

use axum::Router;
use shared::analytics::{Analytics, AnalyticsArgs};
use shared::service::CaseStudy;
use shared::service::cli::{CaseStudyCli, Dirs};
use shared::{Kafka, KafkaArgs};
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

use crate::surge_pricing::Model;
use crate::{
    analytics_sink, driver_matching, geo, ride_service, surge_pricing, taxi_cost_service,
    taxi_position_service, topics, user_position_service, weather_service,
};

/// GetTaxi, as the scaffold runs it.
pub struct GetTaxi;

/// What GetTaxi's services share in one process.
pub struct Resources {
    /// Driver matching's radius.
    pub radius_m: f64,
    pub surge_model: Model,
    /// The analytics store (a Parquet table per topic).
    pub analytics: Analytics,
    /// How long a quote's surge multiplier is honoured.
    pub quote_valid: Duration,
}

/// GetTaxi's options of every serving subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// No taxi further than this from the pickup is matched (metres, at most 5000).
    #[arg(long, env = "MATCH_RADIUS_M", default_value_t = driver_matching::DEFAULT_RADIUS_M)]
    pub match_radius_m: f64,
    #[command(flatten)]
    pub analytics: AnalyticsArgs,
    /// A quote's surge multiplier is honoured for rides that start within this of the request;
    /// a later start is charged at the multiplier in force then.
    #[arg(long, env = "QUOTE_VALID_FOR", default_value = "10m", value_parser = humantime::parse_duration)]
    pub quote_valid_for: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            match_radius_m: driver_matching::DEFAULT_RADIUS_M,
            analytics: AnalyticsArgs::default(),
            quote_valid_for: crate::fare::QUOTE_VALID,
        }
    }
}

impl CaseStudyCli for GetTaxi {
    type Resources = Resources;
    type Options = Options;
    type Command = crate::commands::Command;
    const ABOUT: &'static str = "GetTaxi: the nearest available driver, surge pricing per region, fares from the stored trace";

    fn case_study() -> CaseStudy<Resources> {
        CaseStudy {
            name: topics::CASE_STUDY,
            topics: topics::ALL,
            services: vec![
                Box::new(user_position_service::Service),
                Box::new(taxi_position_service::Service),
                Box::new(weather_service::Service),
                Box::new(ride_service::Service),
                Box::new(driver_matching::Service),
                Box::new(surge_pricing::Service),
                Box::new(taxi_cost_service::Service),
                Box::new(analytics_sink::Service),
            ],
            routes: |_| Router::new(),
            openapi: ApiDoc::openapi,
        }
    }

    async fn resources(_: &Kafka, dirs: &Dirs, options: &Options) -> anyhow::Result<Resources> {
        let radius = options.match_radius_m;
        anyhow::ensure!(
            radius.is_finite() && radius > 0.0 && radius <= geo::MAX_MATCH_RADIUS_M,
            "--match-radius-m {radius} must be in (0, {}]",
            geo::MAX_MATCH_RADIUS_M
        );
        Ok(Resources {
            radius_m: radius,
            surge_model: Model::default(),
            analytics: options.analytics.resolve(&dirs.data)?,
            quote_valid: options.quote_valid_for,
        })
    }

    async fn command(
        command: crate::commands::Command,
        kafka: &KafkaArgs,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        crate::commands::run(command, kafka, stop).await
    }
}

/// The HTTP API of every GetTaxi service, served at `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "GetTaxi",
        description = "Match riders with the nearest available driver, price rides by regional supply and demand, and compute fares from every position of a ride."
    ),
    paths(
        user_position_service::report_user_position,
        taxi_position_service::report_taxi_position,
        weather_service::report_weather,
        ride_service::request_ride,
        ride_service::get_ride,
        ride_service::ride_events,
        driver_matching::assignment,
        surge_pricing::region_surge,
        surge_pricing::all_surge,
    )
)]
pub struct ApiDoc;
