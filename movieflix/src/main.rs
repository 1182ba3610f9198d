//! `movieflix`: run MovieFlix's services (all, any selection, or one to scale it alone), the
//! simulator, or the demo. See `movieflix/README.md`; the command line comes from the service
//! scaffold (`shared::service::cli`) and [`movieflix::app::MovieFlix`].

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shared::service::cli::main::<movieflix::app::MovieFlix>().await
}
