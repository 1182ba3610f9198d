//! MyBank: transactions already in a database, brought to Kafka by a source connector; users set
//! alert thresholds in their app (sent as events); real-time alerts for large transactions,
//! delivered as in-app notifications and e-mail. See `mybank/README.md`.
//!
//! One file (or folder) per box of the architecture slide:
//!
//! | file                           | box on the slide                                             |
//! |--------------------------------|--------------------------------------------------------------|
//! | [`database`]                   | the bank's existing database (SQLite or PostgreSQL, sqlx)    |
//! | [`core_banking`]               | the bank's existing system, simulated: inserts transactions  |
//! | [`source_connector`]`/`        | DB → `bank_transactions`, JDBC-source style, exactly once    |
//! | [`app_threshold_service`]      | PUT/DELETE thresholds → `user_settings` events               |
//! | [`big_transaction_detector`]   | transactions ⋈ threshold history → `user_alerts` (streams)   |
//! | [`notification_service`]       | `user_alerts` → in-app notifications (+ SSE) and e-mail      |
//!
//! and around them: [`topics`] (every topic MyBank reads or writes), [`events`] (the records),
//! [`money`] (amounts in minor units), [`mailer`] (e-mail with lettre: SMTP or an `.eml`
//! outbox), [`app`] (MyBank on the service scaffold: the list of services, what they share),
//! [`commands`] (`core-banking`, `demo`, `bench`), [`live`] (its tile and page in
//! `casestudies up`). Not a box: [`bench`]`/` — the latency
//! benchmark behind `mybank bench`, and [`bench::smtp_server`], the real SMTP server (aiosmtpd)
//! it and the tests receive e-mail with.

pub mod app;
pub mod app_threshold_service;
pub mod bench;
pub mod big_transaction_detector;
pub mod commands;
pub mod core_banking;
pub mod database;
pub mod events;
pub mod live;
pub mod mailer;
pub mod money;
pub mod notification_service;
pub mod source_connector;
pub mod topics;
