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
        ("ingestion.raw_events", "producer's choice"),
        ("logging.application_logs", "application/host"),
        ("logging.application_metrics", "application/host"),
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
