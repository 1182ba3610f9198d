//! GetTaxi: match a rider with a nearby available driver, regional surge pricing from supply and
//! demand, and every position before and during a ride kept for cost computation.
//!
//! [`topics`] lists the topics; [`app`] is the case study on the service scaffold; the services
//! come one file per box of the architecture slide (`README.md`).

pub mod app;
pub mod topics;
