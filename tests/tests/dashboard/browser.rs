//! The dashboard in a real browser: Debian's `chromium`, driven through `chromedriver` (package
//! `chromium-driver`) with fantoccini. Runs on the embedded broker (the README's `up`); on the
//! other brokers the HTTP tests of `routes.rs` cover the dashboard.

use std::process::Stdio;
use std::time::Duration;

use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder, Locator};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};
use shared::testkit::eventually;

use crate::up;

/// `chromedriver` on a free port, killed when dropped.
struct Driver {
    child: tokio::process::Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn chromedriver() -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = tokio::process::Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect(
            "chromedriver runs (Debian: apt-get install chromium chromium-driver; .ci/run installs them)",
        );
    let url = format!("http://127.0.0.1:{port}");
    let status = format!("{url}/status");
    eventually(Duration::from_secs(30), "chromedriver answers", || {
        let request = reqwest::get(status.clone());
        async move { request.await.ok().filter(|r| r.status().is_success()) }
    })
    .await;
    Driver { child, url }
}

async fn browser(driver: &Driver) -> Client {
    let mut capabilities = Capabilities::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1440,1000"]}),
    );
    capabilities.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
    ClientBuilder::native()
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a browser session")
}

/// The text of the first element matching `selector` (SVG included), if there is one.
async fn text(client: &Client, selector: &str) -> Option<String> {
    client
        .execute(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
            vec![json!(selector)],
        )
        .await
        .ok()?
        .as_str()
        .map(str::to_owned)
}

async fn number(client: &Client, selector: &str) -> Option<f64> {
    text(client, selector)
        .await?
        .split_whitespace()
        .next()?
        .replace(',', "")
        .parse()
        .ok()
}

/// The browser console's errors since the last call (chromedriver's log of the page).
async fn console_errors(client: &Client) -> Vec<String> {
    let logs = client
        .issue_cmd(BrowserLog)
        .await
        .expect("chromedriver gives the browser's log");
    logs.as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|e| e["level"] == "SEVERE")
                .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// chromedriver's `POST /session/{id}/se/log` for the `browser` log (not in the W3C standard,
/// so not in fantoccini's API).
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_shows_the_case_studies_move_in_a_real_browser() {
    let up = up().await;
    if !up.kafka.is_embedded() {
        eprintln!("the browser test runs on the embedded broker (the README's `up`); skipped here");
        return;
    }
    let driver = chromedriver().await;
    let client = browser(&driver).await;
    let result = scenario(&client, up).await;
    let errors = console_errors(&client).await;
    let _ = client.close().await;
    result.unwrap();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}

async fn scenario(client: &Client, up: &crate::Up) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    // Overview: a tile per running case study.
    client.goto(&format!("{}/", up.url)).await?;
    for name in ["movieflix", "mybank", "logging"] {
        client
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css(&format!("[data-case-study='{name}']")))
            .await?;
    }
    // A topic's rate goes above zero and changes while the simulators run.
    let rate = "[data-case-study='movieflix'] [data-topic-rate='movieflix.show_position']";
    let first = eventually(Duration::from_secs(60), "a rate above zero", || async {
        number(client, rate).await.filter(|r| *r > 0.0)
    })
    .await;
    eventually(Duration::from_secs(60), "the rate changes", || async {
        number(client, rate).await.filter(|r| *r != first)
    })
    .await;
    let screenshot = client.screenshot().await?;
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-overview.png");
    std::fs::write(&path, screenshot)?;
    println!("screenshot of the overview: {}", path.display());

    // MovieFlix's page: click the topic, see a record the test produces in its tail.
    client.goto(&format!("{}/#/movieflix", up.url)).await?;
    let topic = "[data-topic='movieflix.show_position']";
    client
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css(topic))
        .await?
        .click()
        .await?;
    let key = format!("browser-{}", uuid::Uuid::new_v4());
    let key_filter = client
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("input[name='key']"))
        .await?;
    key_filter.send_keys(&key).await?;
    let producer: FutureProducer = up.kafka.producer_config().create()?;
    let full = format!("{}movieflix.show_position", up.kafka.prefix());
    producer
        .send(
            FutureRecord::to(&full)
                .key(&key)
                .payload(&json!({"from": "the browser test"}).to_string()),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(err, _)| err)?;
    eventually(
        Duration::from_secs(30),
        "the record in the page's tail",
        || async {
            text(client, "[data-record]")
                .await
                .filter(|row| row.contains(&key))
        },
    )
    .await;

    // The malformed-record control: the dead-letter count shown goes up.
    let dlq = "[data-dlq-count='movieflix.show_position']";
    let before = eventually(Duration::from_secs(30), "a DLQ count", || async {
        number(client, dlq).await
    })
    .await;
    client
        .find(Locator::Css("[data-malformed='movieflix.show_position']"))
        .await?
        .click()
        .await?;
    eventually(
        Duration::from_secs(60),
        "the DLQ count shown goes up",
        || async { number(client, dlq).await.filter(|n| *n > before) },
    )
    .await;
    // A service: its state stores and its metrics as charts.
    client
        .find(Locator::Css("[data-service='resuming-service']"))
        .await?
        .click()
        .await?;
    eventually(
        Duration::from_secs(30),
        "the service's stores and charts",
        || async {
            let stores = text(client, "[data-stores='resuming-service']").await?;
            let chart = text(client, "[data-series='streams records processed/s']").await?;
            (stores.contains("resume_points") && !chart.is_empty()).then_some(())
        },
    )
    .await;
    let screenshot = client.screenshot().await?;
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-movieflix.png");
    std::fs::write(&path, screenshot)?;
    println!("screenshot of MovieFlix's page: {}", path.display());

    // MyBank's page: an interactive query answers what the service's API answers.
    client.goto(&format!("{}/#/mybank", up.url)).await?;
    let form = client
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("form[data-query='alert threshold']"))
        .await?;
    let user = form.find(Locator::Css("input[name='user']")).await?;
    user.clear().await?;
    user.send_keys("user-002").await?;
    let (_, mybank) =
        shared::testkit::http::get(&http, &format!("{}/api/case-studies/mybank", up.url)).await;
    let direct: Value = eventually(Duration::from_secs(60), "the service's answer", || {
        let url = format!(
            "{}/v1/users/user-002/alert-threshold",
            mybank["api"].as_str().unwrap_or_default()
        );
        let http = http.clone();
        async move {
            let response = http.get(url).send().await.ok()?;
            if !response.status().is_success() {
                return None;
            }
            response.json().await.ok()
        }
    })
    .await;
    form.find(Locator::Css("button[type='submit'], button"))
        .await?
        .click()
        .await?;
    let shown = eventually(
        Duration::from_secs(30),
        "the query's answer in the page",
        || async {
            text(
                client,
                "form[data-query='alert threshold'] pre.query-result",
            )
            .await
            .filter(|t| t.contains('{'))
        },
    )
    .await;
    let json_start = shown.find('{').unwrap_or(0);
    let body: Value = serde_json::from_str(shown[json_start..].trim())
        .map_err(|err| anyhow::anyhow!("the page shows JSON ({err}): {shown}"))?;
    anyhow::ensure!(
        body == direct,
        "the page shows {body}, the API answers {direct}"
    );

    // GetTaxi's page: the map draws surge regions as hexagons and the taxis as dots, moving.
    client.goto(&format!("{}/#/gettaxi", up.url)).await?;
    let count = |selector: &'static str| async move {
        client
            .execute(
                "return document.querySelectorAll(arguments[0]).length;",
                vec![json!(selector)],
            )
            .await
            .ok()?
            .as_u64()
    };
    let dots = "svg.view-map circle.map-dot";
    eventually(
        Duration::from_secs(60),
        "hexagons and taxis on the map",
        || async {
            let hexagons = count("svg.view-map polygon.map-area").await?;
            let taxis = count(dots).await?;
            (hexagons > 0 && taxis > 0).then_some(())
        },
    )
    .await;
    let key = text(client, ".map-key").await.unwrap_or_default();
    anyhow::ensure!(
        key.contains("×3.0") && key.contains("taxi with a rider"),
        "the map's key: {key}"
    );
    let position = "return Array.from(document.querySelectorAll('svg.view-map circle.map-dot')) \
        .map((d) => d.getAttribute('cx') + ',' + d.getAttribute('cy')).join(' ');";
    let where_first = client.execute(position, vec![]).await?;
    eventually(
        Duration::from_secs(60),
        "a taxi moves on the map",
        || async {
            let now = client.execute(position, vec![]).await.ok()?;
            (now != where_first && now.as_str().is_some_and(|s| !s.is_empty())).then_some(())
        },
    )
    .await;
    client
        .execute(
            "document.querySelector('svg.view-map').scrollIntoView();",
            vec![],
        )
        .await?;
    let screenshot = client.screenshot().await?;
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-gettaxi.png");
    std::fs::write(&path, screenshot)?;
    println!("screenshot of GetTaxi's page: {}", path.display());

    // Logging's page: error rates per service in its view; the search box answers in the page
    // (hits, or the log sink's JSON reason when it refuses or does not run).
    client.goto(&format!("{}/#/logging", up.url)).await?;
    eventually(
        Duration::from_secs(90),
        "an error rate per service in Logging's view",
        || async {
            text(client, "#view")
                .await
                .filter(|t| t.contains("payments") && t.contains(" % of "))
        },
    )
    .await;
    let search = client
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("form[data-query='search logs']"))
        .await?;
    search
        .find(Locator::Css("button[type='submit'], button"))
        .await?
        .click()
        .await?;
    let shown = eventually(
        Duration::from_secs(30),
        "the search's answer in the page",
        || async {
            text(client, "form[data-query='search logs'] pre.query-result")
                .await
                .filter(|t| t.starts_with("status "))
        },
    )
    .await;
    anyhow::ensure!(
        shown.contains("\"hits\"") || shown.contains("\"error\""),
        "the search box shows {shown}"
    );
    let screenshot = client.screenshot().await?;
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-logging.png");
    std::fs::write(&path, screenshot)?;
    println!("screenshot of Logging's page: {}", path.display());
    Ok(())
}
