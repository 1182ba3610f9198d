//! `ingestion`: run Ingestion's services (all, any selection, or one to scale it alone). See
//! `ingestion/README.md`; the command line comes from the service scaffold
//! (`shared::service::cli`) and [`ingestion::app::Ingestion`].

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shared::service::cli::main::<ingestion::app::Ingestion>().await
}
