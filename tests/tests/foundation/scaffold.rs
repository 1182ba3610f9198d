//! The service scaffold gives every case study the same command line and process — also one
//! whose services are only partly built: `all` provisions its topics, starts what it has and
//! serves the operational endpoints, through the same `cli::start` its binary calls.

use std::collections::HashSet;
use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use reqwest::StatusCode;
use shared::service::cli::{self, CaseStudyCli, ServeArgs};
use shared::testkit::TestKafka;
use shared::testkit::http::{client, get};

/// Every case study's clap command is well-formed (clap's own consistency checks) and offers
/// `all`, `run` and a subcommand per service.
#[test]
fn every_case_study_has_a_consistent_command_line() {
    fn check<C: CaseStudyCli>() {
        let command = cli::command::<C>();
        command.clone().debug_assert();
        let subcommands: Vec<&str> = command.get_subcommands().map(|c| c.get_name()).collect();
        for expected in ["all", "run"]
            .into_iter()
            .chain(C::case_study().service_names())
        {
            assert!(
                subcommands.contains(&expected),
                "{}: no `{expected}` in {subcommands:?}",
                C::case_study().name
            );
        }
        assert_eq!(
            command.get_about().map(|a| a.to_string()),
            Some(C::ABOUT.to_owned())
        );
    }
    check::<movieflix::app::MovieFlix>();
    check::<mybank::app::MyBank>();
    check::<gettaxi::app::GetTaxi>();
    check::<mysocialmedia::app::MySocialMedia>();
    check::<ingestion::app::Ingestion>();
    check::<logging::app::Logging>();
}

/// `<case study> all` with its default options: every service it lists runs,
/// its topics exist afterwards, and the process serves `/healthz`, `/readyz` and its
/// `/openapi.json`.
async fn starts_on_the_scaffold<C: CaseStudyCli>(kafka: &TestKafka)
where
    C::Options: Default,
{
    let dir = tempfile::tempdir().unwrap();
    let case_study = C::case_study();
    let (process, _dirs) = cli::start::<C>(
        kafka.kafka(),
        &[],
        &ServeArgs::for_tests(dir.path()),
        &<C::Options as Default>::default(),
    )
    .await
    .unwrap();
    assert_eq!(process.services, case_study.service_names());

    let admin: AdminClient<DefaultClientContext> = kafka.kafka().client_config().create().unwrap();
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    let topics: HashSet<&str> = metadata.topics().iter().map(|t| t.name()).collect();
    for spec in case_study.topics {
        let name = kafka.kafka().topic(spec);
        assert!(topics.contains(name.as_str()), "{name} was not provisioned");
    }

    let http = client();
    let url = process.url();
    assert_eq!(
        get(&http, &format!("{url}/healthz")).await.0,
        StatusCode::OK
    );
    assert_eq!(get(&http, &format!("{url}/readyz")).await.0, StatusCode::OK);
    let (status, openapi) = get(&http, &format!("{url}/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        openapi["info"]["title"]
            .as_str()
            .is_some_and(|t| t.eq_ignore_ascii_case(case_study.name)),
        "{}: {openapi}",
        case_study.name
    );
    let (status, body) = get(&http, &format!("{url}/v1/nothing-here")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].is_string(), "a JSON 404: {body}");
    process.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn case_studies_being_built_run_on_the_scaffold() {
    let kafka = TestKafka::start().await.unwrap();
    starts_on_the_scaffold::<logging::app::Logging>(&kafka).await;
}
