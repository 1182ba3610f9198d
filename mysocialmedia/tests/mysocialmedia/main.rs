//! MySocialMedia end to end, on the broker the testkit picks (`CASESTUDIES_TEST_KAFKA`): every
//! test drives the services through their HTTP API or their topics, and reads the results back
//! the way the website would.

mod commands;
mod counts;
mod dead_letters;
mod trending;

use std::path::Path;
use std::time::Duration;

use mysocialmedia::app::{MySocialMedia, Options};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use shared::service::Process;
use shared::service::cli::ServeArgs;
use shared::testkit::TestKafka;

pub use shared::testkit::eventually;
pub use shared::testkit::http::{client, get, post, send};

/// Starts the services named (every one when `services` is empty) on `kafka`, on a free port:
/// through the same entry point as the binary.
pub async fn spawn(kafka: &TestKafka, services: &[&str], dir: &Path) -> Process {
    spawn_with(kafka, services, dir, Options::default()).await
}

/// [`spawn`] with MySocialMedia's `options` (images under `dir`).
pub async fn spawn_with(
    kafka: &TestKafka,
    services: &[&str],
    dir: &Path,
    options: Options,
) -> Process {
    let names: Vec<String> = services.iter().map(|s| (*s).to_owned()).collect();
    let serve = ServeArgs {
        state_dir: Some(dir.join("state")),
        ..ServeArgs::for_tests(dir)
    };
    let options = Options {
        images_dir: Some(dir.join("images")),
        ..options
    };
    shared::service::cli::start::<MySocialMedia>(kafka.kafka(), &names, &serve, &options)
        .await
        .unwrap()
        .0
}

/// The post form: any of the three fields may be left out.
pub fn form(author: Option<&str>, caption: Option<&str>, image: Option<Vec<u8>>) -> Form {
    let mut form = Form::new();
    if let Some(author) = author {
        form = form.text("author", author.to_owned());
    }
    if let Some(caption) = caption {
        form = form.text("caption", caption.to_owned());
    }
    if let Some(image) = image {
        form = form.part("image", Part::bytes(image).file_name("photo"));
    }
    form
}

/// `POST /v1/posts` with `form`: the status and the JSON answer.
pub async fn post_form(http: &reqwest::Client, app: &str, form: Form) -> (StatusCode, Value) {
    send(http.post(format!("{app}/v1/posts")).multipart(form)).await
}

/// Publishes a post with a one-pixel image of `rgb` and insists it is accepted; its id.
pub async fn create_post(
    http: &reqwest::Client,
    app: &str,
    author: &str,
    caption: &str,
    rgb: [u8; 3],
) -> String {
    let image = mysocialmedia::images::tiny_gif(rgb);
    let (status, answer) =
        post_form(http, app, form(Some(author), Some(caption), Some(image))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    answer["post_id"].as_str().unwrap().to_owned()
}

/// Waits until the query side knows `post`; its view.
pub async fn visible(http: &reqwest::Client, app: &str, post: &str) -> Value {
    eventually(
        Duration::from_secs(90),
        &format!("{post} in the feed"),
        || async {
            let (status, view) = get(http, &format!("{app}/v1/posts/{post}")).await;
            (status == StatusCode::OK).then_some(view)
        },
    )
    .await
}

/// `PUT` (like) or `DELETE` (unlike) `post`'s like by `user`: the status.
pub async fn set_like(
    http: &reqwest::Client,
    app: &str,
    post: &str,
    user: &str,
    liked: bool,
) -> StatusCode {
    let url = format!("{app}/v1/posts/{post}/likes/{user}");
    let request = if liked {
        http.put(url)
    } else {
        http.delete(url)
    };
    send(request).await.0
}
