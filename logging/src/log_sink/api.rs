//! `GET /v1/search`: the log sink's index, searched.
//!
//! `q` is tantivy's query syntax over the fields of [`super::index`] (`message` by default; terms
//! are ANDed): `payment declined`, `"order paid"`, `service:checkout AND level:error`,
//! `level:error OR level:critical`, `NOT host:web-1`. `from` and `to` (RFC 3339, inclusive)
//! bound `time`; `limit` is 1 to [`MAX_LIMIT`] (default [`DEFAULT_LIMIT`]). The answer counts
//! every match (`total`) and lists the newest `limit`, newest first. A bad query, a bad time,
//! `from` after `to` or a limit out of range → 400 `{"error": …}`.

use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use chrono::{DateTime, Utc};
use shared::http::{ApiError, Json};
use std::collections::HashMap;
use utoipa::IntoParams;

use super::index::{LogReader, Search, SearchError, SearchResult};

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// `GET /v1/search`'s parameters (documentation; they are read leniently, then checked, so a
/// bad one is a JSON 400 naming it).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct SearchQuery {
    /// tantivy query syntax; empty or absent: every record.
    q: Option<String>,
    /// RFC 3339, inclusive.
    from: Option<String>,
    /// RFC 3339, inclusive.
    to: Option<String>,
    /// 1 to 1000, default 100.
    limit: Option<usize>,
}

/// The parameters checked: a [`Search`], or why not.
pub fn parse(params: &HashMap<String, String>) -> Result<Search, String> {
    if let Some(unknown) = params
        .keys()
        .find(|k| !matches!(k.as_str(), "q" | "from" | "to" | "limit"))
    {
        return Err(format!(
            "unknown parameter {unknown:?} (q, from, to, limit)"
        ));
    }
    let time = |name: &str| -> Result<Option<DateTime<Utc>>, String> {
        params
            .get(name)
            .map(|v| {
                DateTime::parse_from_rfc3339(v.trim())
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|err| format!("{name} {v:?} is not an RFC 3339 time: {err}"))
            })
            .transpose()
    };
    let (from, to) = (time("from")?, time("to")?);
    if let (Some(from), Some(to)) = (from, to)
        && from > to
    {
        return Err(format!(
            "from ({}) is after to ({})",
            from.to_rfc3339(),
            to.to_rfc3339()
        ));
    }
    let limit = match params.get("limit") {
        None => DEFAULT_LIMIT,
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => return Err(format!("limit {v:?} must be 1 to {MAX_LIMIT}")),
        },
    };
    Ok(Search {
        query: params.get("q").cloned().unwrap_or_default(),
        from,
        to,
        limit,
    })
}

/// Runs `search` on `index` (CPU and mmap reads: off the async workers).
pub async fn run(index: LogReader, search: Search) -> Result<SearchResult, ApiError> {
    tokio::task::spawn_blocking(move || index.search(&search))
        .await
        .map_err(ApiError::internal)?
        .map_err(|err| match err {
            SearchError::Query(_) => ApiError::bad_request(err.to_string()),
            SearchError::Index(err) => ApiError::internal(err),
        })
}

/// Search the logs.
#[utoipa::path(
    get,
    path = "/v1/search",
    tag = "log sink",
    params(SearchQuery),
    responses(
        (status = 200, body = SearchResult, description = "Every match counted, the newest `limit` listed newest first"),
        (status = 400, description = "A bad query, time, range or limit: {\"error\": …}"),
    )
)]
pub async fn search(
    State(index): State<LogReader>,
    params: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SearchResult>, ApiError> {
    let Query(params) = params.map_err(|err| ApiError::bad_request(err.body_text()))?;
    let search = parse(&params).map_err(ApiError::bad_request)?;
    run(index, search).await.map(Json)
}

pub fn router(index: LogReader) -> Router {
    Router::new()
        .route("/v1/search", get(search))
        .with_state(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn bad_parameters_are_named() {
        for (pairs, expected) in [
            (&[("from", "yesterday")][..], "from \"yesterday\""),
            (&[("to", "2026-13-01T00:00:00Z")], "to \"2026"),
            (
                &[
                    ("from", "2026-03-02T00:00:00Z"),
                    ("to", "2026-03-01T00:00:00Z"),
                ],
                "is after to",
            ),
            (&[("limit", "0")], "limit \"0\""),
            (&[("limit", "1001")], "limit \"1001\""),
            (&[("limit", "ten")], "limit \"ten\""),
            (&[("query", "x")], "unknown parameter \"query\""),
        ] {
            let err = parse(&params(pairs)).unwrap_err();
            assert!(err.contains(expected), "{pairs:?}: {err}");
        }
        let ok = parse(&params(&[("q", "level:error"), ("limit", "1000")])).unwrap();
        assert_eq!((ok.query.as_str(), ok.limit), ("level:error", 1000));
        assert_eq!(parse(&params(&[])).unwrap().limit, DEFAULT_LIMIT);
    }
}
