//! **Realtime API** (query side): the speed layer's results, from `realtime_counts` materialized
//! in this process ([`crate::realtime_model`]).
//!
//! * `GET /v1/realtime/counts?from=&to=&source=&event_type=` — the counts of every minute whose
//!   start is in `[from, to)` (RFC 3339; default: the last hour up to an hour ahead, since event
//!   times may run an hour ahead; at most [`MAX_SPAN_HOURS`] h), of one source and/or event
//!   type if given, in (minute, source, event type) order: `{"counts": [RealtimeCount…]}`;
//! * `GET /v1/realtime/latest` — for a dashboard: the newest minute with counts (still growing,
//!   usually) and the newest minute whose counts are all final, each with its rows and its
//!   total of events.
//!
//! A bad parameter is a 400 naming it.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use shared::http::{ApiError, Json};
use utoipa::{IntoParams, ToSchema};

use crate::events::{RealtimeCount, Source, validate_event_type};
use crate::realtime_model::RealtimeModel;

/// The longest range one query may ask for.
pub const MAX_SPAN_HOURS: i64 = 24;

/// `GET /v1/realtime/counts`' query.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CountsQuery {
    /// RFC 3339; minutes starting at or after it (default: an hour before now).
    pub from: Option<String>,
    /// RFC 3339; minutes starting before it (default: an hour after now).
    pub to: Option<String>,
    /// `web`, `mobile` or `iot`.
    pub source: Option<String>,
    pub event_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Counts {
    pub counts: Vec<RealtimeCount>,
}

/// One minute's counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MinuteCounts {
    pub minute: DateTime<Utc>,
    /// The sum of the rows' counts: every event of the minute.
    pub events: u64,
    pub counts: Vec<RealtimeCount>,
}

/// `GET /v1/realtime/latest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Latest {
    /// The newest minute with counts; absent before the first.
    pub newest: Option<MinuteCounts>,
    /// The newest minute closed on every partition: its counts will not change.
    pub newest_final: Option<MinuteCounts>,
}

pub struct RealtimeApi {
    model: Arc<RealtimeModel>,
}

fn parse_time(name: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|err| ApiError::bad_request(format!("{name} {value:?} is not RFC 3339: {err}")))
}

/// The validated query: `[from, to)` in ms, source, event type.
pub fn parse_query(
    query: &CountsQuery,
    now: DateTime<Utc>,
) -> Result<(i64, i64, Option<Source>, Option<String>), ApiError> {
    let from = match &query.from {
        Some(from) => parse_time("from", from)?,
        None => now - TimeDelta::hours(1),
    };
    let to = match &query.to {
        Some(to) => parse_time("to", to)?,
        None => now + TimeDelta::hours(1),
    };
    if from >= to {
        return Err(ApiError::bad_request(format!(
            "from ({}) must be before to ({})",
            from.to_rfc3339(),
            to.to_rfc3339()
        )));
    }
    if to - from > TimeDelta::hours(MAX_SPAN_HOURS) {
        return Err(ApiError::bad_request(format!(
            "from and to are more than {MAX_SPAN_HOURS}h apart"
        )));
    }
    let source = query
        .source
        .as_deref()
        .map(str::parse::<Source>)
        .transpose()
        .map_err(ApiError::bad_request)?;
    if let Some(event_type) = &query.event_type {
        validate_event_type(event_type).map_err(ApiError::bad_request)?;
    }
    Ok((
        from.timestamp_millis(),
        to.timestamp_millis(),
        source,
        query.event_type.clone(),
    ))
}

impl RealtimeApi {
    pub fn new(model: Arc<RealtimeModel>) -> Self {
        RealtimeApi { model }
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/v1/realtime/counts", get(counts))
            .route("/v1/realtime/latest", get(latest))
            .with_state(self)
    }

    fn minute(&self, minute: i64) -> MinuteCounts {
        let counts = self.model.range(minute, minute + 1, None, None);
        MinuteCounts {
            minute: DateTime::from_timestamp_millis(minute).unwrap_or_default(),
            events: counts.iter().map(|c| c.count).sum(),
            counts,
        }
    }
}

/// Per-minute counts and distinct actors per source and event type.
#[utoipa::path(
    get,
    path = "/v1/realtime/counts",
    tag = "realtime API",
    params(CountsQuery),
    responses(
        (status = 200, body = Counts),
        (status = 400, description = "Bad from, to, source or event_type (the message says which)"),
    )
)]
pub async fn counts(
    State(api): State<Arc<RealtimeApi>>,
    Query(query): Query<CountsQuery>,
) -> Result<Json<Counts>, ApiError> {
    let (from, to, source, event_type) = parse_query(&query, Utc::now())?;
    Ok(Json(Counts {
        counts: api.model.range(from, to, source, event_type.as_deref()),
    }))
}

/// The newest minute, and the newest final minute, for a dashboard.
#[utoipa::path(
    get,
    path = "/v1/realtime/latest",
    tag = "realtime API",
    responses((status = 200, body = Latest))
)]
pub async fn latest(State(api): State<Arc<RealtimeApi>>) -> Json<Latest> {
    let (newest, newest_final) = api.model.latest_minutes();
    Json(Latest {
        newest: newest.map(|m| api.minute(m)),
        newest_final: newest_final.map(|m| api.minute(m)),
    })
}

/// The realtime API on the scaffold.
pub struct Service;

#[async_trait::async_trait(?Send)]
impl shared::service::Service<crate::app::Resources> for Service {
    fn name(&self) -> &'static str {
        "realtime-api"
    }
    fn about(&self) -> &'static str {
        "realtime_counts → GET /v1/realtime/counts, GET /v1/realtime/latest."
    }
    async fn start(
        &self,
        ctx: &shared::service::Context,
        _resources: &crate::app::Resources,
    ) -> anyhow::Result<shared::service::Running> {
        let model = RealtimeModel::start(&ctx.kafka, ctx.shutdown.clone()).await?;
        let api = Arc::new(RealtimeApi::new(Arc::clone(&model)));
        Ok(shared::service::Running::new()
            .routes(Arc::clone(&api).router())
            .handle(Arc::clone(&model))
            .handle(api)
            .ready_check("realtime read model", move || {
                if model.is_caught_up() {
                    Ok(())
                } else {
                    Err("still reading realtime_counts".into())
                }
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(from: Option<&str>, to: Option<&str>, source: Option<&str>) -> CountsQuery {
        CountsQuery {
            from: from.map(Into::into),
            to: to.map(Into::into),
            source: source.map(Into::into),
            event_type: None,
        }
    }

    #[test]
    fn bad_parameters_are_named() {
        let now = Utc::now();
        let err = |q: CountsQuery| parse_query(&q, now).unwrap_err().error;
        assert!(err(query(Some("yesterday"), None, None)).contains("from"));
        assert!(
            err(query(
                Some("2026-01-01T01:00:00Z"),
                Some("2026-01-01T00:00:00Z"),
                None
            ))
            .contains("before")
        );
        assert!(
            err(query(
                Some("2026-01-01T00:00:00Z"),
                Some("2026-01-02T00:00:01Z"),
                None
            ))
            .contains("24h")
        );
        assert!(err(query(None, None, Some("tv"))).contains("web, mobile, iot"));
        let bad_type = CountsQuery {
            event_type: Some("Bad Type".into()),
            ..CountsQuery::default()
        };
        assert!(err(bad_type).contains("event_type"));
    }

    #[test]
    fn the_default_range_is_an_hour_each_side_of_now() {
        let now = Utc::now();
        let (from, to, source, _) = parse_query(&query(None, None, Some("iot")), now).unwrap();
        assert_eq!(to - from, 2 * 3_600_000);
        assert_eq!(from, (now - TimeDelta::hours(1)).timestamp_millis());
        assert_eq!(source, Some(Source::Iot));
    }
}
