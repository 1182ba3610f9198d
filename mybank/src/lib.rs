//! MyBank: transactions already in a database, brought to Kafka by a source connector; users set
//! alert thresholds in their app (sent as events); real-time alerts for large transactions,
//! delivered as in-app notifications and e-mail.
//!
//! [`topics`] lists the topics; the services come one file per box of the architecture slide.

pub mod topics;
