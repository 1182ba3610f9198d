/// `casestudies topics` prints `topics_table`: every topic of the six case studies is in it,
/// under the attendee's prefix, with its key and partitions.
#[test]
fn topics_table_lists_every_topic_of_the_case_studies() {
    let table = casestudies::topics_table("alice.");
    let expected = [
        ("movieflix.show_position", "user_id"),
        ("movieflix.recommendations", "user_id"),
        ("gettaxi.user_position", "user_id"),
        ("gettaxi.taxi_position", "taxi_id"),
        ("gettaxi.surge_pricing", "region"),
        ("mysocialmedia.posts", "user_id"),
        ("mysocialmedia.likes", "post_id"),
        ("mysocialmedia.comments", "post_id"),
        ("mysocialmedia.posts_with_counts", "post_id"),
        ("mysocialmedia.trending_posts", "window"),
        ("mybank.bank_transactions", "user_id"),
        ("mybank.user_settings", "user_id"),
        ("mybank.user_alerts", "user_id"),
        ("ingestion.raw_events", "actor"),
        ("ingestion.realtime_counts", "minute|source|event_type"),
        ("logging.application_logs", "application/host"),
        ("logging.parsed_logs", "application/host"),
        ("logging.application_metrics", "application/host"),
        ("logging.log_rollups", "service|minute"),
        ("logging.metric_rollups", "series|minute"),
        ("logging.alerts", "service"),
    ];
    for (topic, key) in expected {
        let row = table
            .lines()
            .find(|line| line.split_whitespace().next() == Some(&format!("alice.{topic}")))
            .unwrap_or_else(|| panic!("{topic} missing from:\n{table}"));
        assert!(row.contains(key), "{topic} should be keyed by {key}: {row}");
    }
    assert_eq!(
        table.lines().filter(|l| l.starts_with("alice.")).count(),
        casestudies::all_topics().len()
    );
    // High-volume topics follow the notes: more than 30 partitions.
    for topic in casestudies::all_topics().iter().filter(|t| {
        [
            "show_position",
            "user_position",
            "taxi_position",
            "posts",
            "likes",
            "comments",
        ]
        .contains(&t.name)
    }) {
        assert!(
            topic.partitions > 30,
            "{} has {}",
            topic.name,
            topic.partitions
        );
    }
}

/// Every workspace member depends on `workspace-hack` (cargo hakari), so every package
/// selection resolves the same features and shares one build of the dependencies.
#[test]
fn workspace_hack_is_a_dependency_of_every_member() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let workspace = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let members: Vec<&str> = workspace
        .split_once("members = [")
        .unwrap()
        .1
        .split_once(']')
        .unwrap()
        .0
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty() && *m != "workspace-hack")
        .collect();
    assert!(members.len() >= 8, "{members:?}");
    let root_package = workspace.split_once("[package]").unwrap().1;
    assert!(root_package.contains("workspace-hack"), "the root package");
    for member in members {
        let manifest = std::fs::read_to_string(root.join(member).join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains("workspace-hack = {"),
            "{member}/Cargo.toml: add workspace-hack (cargo hakari manage-deps)"
        );
    }
}
