//! `mysocialmedia`: run MySocialMedia's services (all, any selection, or one to scale it alone). See
//! `mysocialmedia/README.md`; the command line comes from the service scaffold
//! (`shared::service::cli`) and [`mysocialmedia::app::MySocialMedia`].

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shared::service::cli::main::<mysocialmedia::app::MySocialMedia>().await
}
