//! `gettaxi`: run GetTaxi's services (all, any selection, or one to scale it alone). See
//! `gettaxi/README.md`; the command line comes from the service scaffold
//! (`shared::service::cli`) and [`gettaxi::app::GetTaxi`].

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shared::service::cli::main::<gettaxi::app::GetTaxi>().await
}
