//! `logging`: run Logging's services (all, any selection, or one to scale it alone). See
//! `logging/README.md`; the command line comes from the service scaffold
//! (`shared::service::cli`) and [`logging::app::Logging`].

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shared::service::cli::main::<logging::app::Logging>().await
}
