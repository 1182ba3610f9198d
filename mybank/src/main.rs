//! `mybank`: run MyBank's services (all, any selection, or one to scale it alone), the
//! simulated core-banking system, the demo, or the bench. See `mybank/README.md`; the command
//! line comes from the service scaffold (`shared::service::cli`) and [`mybank::app::MyBank`].

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shared::service::cli::main::<mybank::app::MyBank>().await
}
