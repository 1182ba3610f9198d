use axum::body::Body;
use axum::http::{Request, StatusCode};
use shared::Kafka;
use shared::http::{Readiness, finish, ops_router};
use shared::testkit::TestKafka;
use tower::ServiceExt;

async fn get(kafka: &Kafka, path: &str) -> (StatusCode, String) {
    let app = finish(ops_router(Readiness::new(kafka).unwrap()));
    let response = app
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_answers_200_when_the_broker_answers_and_503_when_it_does_not() {
    let kafka = TestKafka::start().await.unwrap();
    let (status, body) = get(kafka.kafka(), "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("\"ready\""), "{body}");

    // Nothing listens on port 1: the check must give up after ~2 s with a JSON 503.
    let nowhere = Kafka::external("127.0.0.1:1", "", Vec::new());
    let (status, body) = get(&nowhere, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("broker unreachable"), "{body}");

    let (status, body) = get(kafka.kafka(), "/healthz").await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, r#"{"status":"ok"}"#)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_what_the_producer_published_in_prometheus_text_format() {
    let kafka = TestKafka::start().await.unwrap();
    kafka.provision(&[tests::PINGS]).await.unwrap();
    let topic = kafka.kafka().topic(&tests::PINGS);
    let producer = shared::EventProducer::new(kafka.kafka()).unwrap();
    for seq in 0..3 {
        producer
            .publish(&topic, "k", &tests::Ping::new(seq, "k"))
            .await
            .unwrap();
    }
    let (status, body) = get(kafka.kafka(), "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("# TYPE kafka_records_produced counter"),
        "{body}"
    );
    let series = format!("kafka_records_produced_total{{topic=\"{topic}\"}} 3");
    assert!(body.lines().any(|l| l == series), "{series} in:\n{body}");
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
}
